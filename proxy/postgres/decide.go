package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
	"github.com/interlock-dev/interlock/record"
)

// Messages of denials the policy did not word.
const (
	reviewUnavailable    = "this statement needs a human's review, and this gateway has no reviewer; denied"
	defaultDenialMessage = "statement denied by interlock policy"
	functionCallDenied   = "function call protocol is not allowed"
	multipleCommands     = "cannot insert multiple commands into a prepared statement"
	unrecorded           = "interlock cannot record this statement, so it does not run it"
)

// unreadable is the denial of SQL the gateway cannot classify (never
// forwarded: what the gateway cannot read, it cannot decide): what the
// client is told, with the SQLSTATE and error position.
type unreadable struct {
	decision policy.Decision
	code     string
	pos      int32
}

// response is the ErrorResponse the client gets for the SQL.
func (u *unreadable) response() *pgproto3.ErrorResponse {
	resp := denialResponse(u.decision, u.code, u.pos)
	if u.code == codeSyntaxError {
		resp.Detail = "interlock did not forward the statement: PostgreSQL's grammar rejects it"
	}
	return resp
}

// classify returns the statements of sql, or why the gateway cannot
// classify it. SQL that PostgreSQL's own grammar rejects gets the syntax
// error PostgreSQL would give (42601, its message and position); SQL the
// gateway refuses to parse (too deeply nested) a 42501.
func (c *session) classify(sql string) ([]sqlfacts.Statement, *unreadable) {
	stmts, err := c.h.classifier.Classify(sql)
	if err == nil {
		return stmts, nil
	}
	u := &unreadable{code: codeInsufficientPrivilege}
	var se *sqlfacts.SyntaxError
	switch {
	case errors.As(err, &se):
		u.decision.Message = se.Message
		u.code = codeSyntaxError
		u.pos = int32(se.Position)
	case errors.Is(err, sqlfacts.ErrSyntax):
		u.decision.Message = "interlock could not parse the statement: " + err.Error()
	default:
		c.log.Error("classifying SQL", "error", err)
		u.decision.Message = "interlock could not classify the statement: " + err.Error()
	}
	u.decision.Action = policy.Deny
	return nil, u
}

// decide asks the policy about one statement. Anything but allow is a
// denial, except review when the handler has a reviewer (the caller holds
// the statement); an unknown action fails closed.
func (c *session) decide(st sqlfacts.Statement) policy.Decision {
	if proxy.IdentityExpired(c.s.Caller, time.Now()) {
		// The session ends too (the gateway ends the workload's sessions
		// when its token expires); until then nothing more runs.
		c.cancel(proxy.ErrIdentityExpired)
		return policy.Decision{Action: policy.Deny, Message: proxy.ErrIdentityExpired.Error()}
	}
	if d, denied := lexingGuard(st); denied {
		return d
	}
	if name, long := longSQLName(st); long {
		return policy.Decision{Action: policy.Deny, Rule: GuardRule, Message: fmt.Sprintf(
			"interlock refuses prepared statement and cursor names longer than %d bytes (PostgreSQL cuts them in the session's encoding, where interlock cannot follow): %.80q…", maxNameLen, name)}
	}
	if c.decisions == nil {
		c.refreshPolicy()
	}
	d := c.decisions.Decide(SQLFacts(st, c.database, c.user))
	if d.Action == policy.Allow || d.Action == policy.Review {
		// Before a FETCH or EXECUTE is held for review: a cursor or
		// prepared statement the policy now denies is not run whatever a
		// reviewer says.
		if st.Command == "FETCH" || st.Command == "MOVE" {
			if pd := c.fetchedPortalDenial(st); pd != nil {
				return *pd
			}
			if cd, _ := c.cursorDenial(&st, "", false); cd != nil {
				return *cd
			}
		}
		if pd := c.preparedDenial(st); pd != nil {
			return *pd
		}
	}
	switch d.Action {
	case policy.Allow:
		return d
	case policy.Deny:
	case policy.Review:
		if c.h.reviewer != nil {
			return d // held by the caller: see hold
		}
		d = policy.Decision{Action: policy.Deny, Rule: d.Rule, Message: reviewUnavailable}
	default:
		c.log.Error("policy returned an unknown action; denying", "action", d.Action, "rule", d.Rule)
		d = policy.Decision{Action: policy.Deny, Rule: d.Rule, Message: fmt.Sprintf("interlock policy returned unknown action %q", d.Action)}
	}
	if d.Message == "" {
		d.Message = defaultDenialMessage
	}
	return d
}

// hold asks a human about a statement a review rule holds. The client is
// told with a NOTICE what it waits for; the session's client goroutine
// waits with it (the client waits for the statement's result anyway). A
// CancelRequest for the session ends the hold: the review is abandoned and
// the statement refused as PostgreSQL refuses a canceled one (57014). code
// is the SQLSTATE of a refusal.
func (c *session) hold(text string, st sqlfacts.Statement, d policy.Decision) (_ policy.Decision, _ *proxy.Verdict, code string) {
	// What the client pipelined before the held statement goes upstream
	// now, not after the review: a COMMIT ahead of it would otherwise keep
	// its transaction, and the locks it holds, open while a human decides.
	if err := c.up.flush(); err != nil {
		return policy.Decision{Action: policy.Deny, Rule: d.Rule, Message: "interlock could not hold the statement for review: " + err.Error()}, nil, codeInsufficientPrivilege
	}
	ctx, stop := c.watchClientGone()
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c.held.set(cancel)
	defer c.held.set(nil)
	v, err := c.h.reviewer.Hold(ctx, proxy.Held{Session: c.s, Decision: d, Command: text, Kind: st.Kind, Operation: st.Command},
		func(id, how string) {
			c.client.send(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000",
				Message: "interlock: rule " + d.Rule + " holds this statement for review as request " + id + "; " + how})
		})
	if err != nil && v.State == "" {
		c.log.Error("holding a statement for review", "error", err)
		return policy.Decision{Action: policy.Deny, Rule: d.Rule, Message: "interlock could not hold the statement for review: " + err.Error()}, nil, codeInsufficientPrivilege
	}
	c.log.Info("held statement decided", "request", v.RequestID, "state", v.State, "decider", v.Decider)
	d = v.Decision(d.Rule)
	if !v.Allowed && errors.Is(context.Cause(ctx), proxy.ErrCommandCanceled) {
		d.Message = "canceling statement due to user request (interlock review " + v.RequestID + " abandoned)"
		return d, &v, codeQueryCanceled
	}
	return d, &v, codeInsufficientPrivilege
}

// holdSlot is where a CancelRequest finds the session's held statement.
type holdSlot struct {
	mu     sync.Mutex
	cancel context.CancelCauseFunc // nil: nothing held
}

func (h *holdSlot) set(cancel context.CancelCauseFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cancel = cancel
}

// cancelHeld ends the hold of the statement held now, if any, and reports
// whether there was one.
func (h *holdSlot) cancelHeld() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cancel == nil {
		return false
	}
	h.cancel(proxy.ErrCommandCanceled)
	h.cancel = nil
	return true
}

// errClientGone ends a hold whose client closed its connection.
var errClientGone = errors.New("the client closed the connection")

// watchClientGone returns a context that ends when the client closes its
// connection while the client goroutine is not reading it (a held
// statement): without it, a client that gives up would leave its request
// pending until the review times out. Bytes the client sends meanwhile
// stay buffered for the client goroutine. stop must be called before the
// client goroutine reads again.
func (c *session) watchClientGone() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(c.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := c.cr.br.Peek(1); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			cancel(errClientGone)
		}
	}()
	return ctx, func() {
		c.clientConn.SetReadDeadline(time.Now()) // ends the Peek
		<-done
		c.clientConn.SetReadDeadline(time.Time{})
		cancel(nil)
	}
}

// count feeds the command metrics with one decision.
func (c *session) count(d policy.Decision) {
	if c.cmds == nil {
		// Decisions come after start-up, when the caller's identity is
		// final (a token given as the password included).
		c.cmds = c.h.commands.Session("postgres", c.s.Target.Name, c.s.Caller)
	}
	c.cmds.Decided(d)
}

// denialResponse is the ErrorResponse of a denial.
func denialResponse(d policy.Decision, code string, pos int32) *pgproto3.ErrorResponse {
	resp := errorResponse("ERROR", code, d.Message, "")
	if d.Rule != "" {
		resp.Detail = "rule: " + d.Rule
	}
	resp.Position = pos
	return resp
}

// deniedCommand is the recording of a denial.
func deniedCommand(text string, st sqlfacts.Statement, d policy.Decision) record.Command {
	return record.Command{
		Text:     text,
		Command:  st.Command,
		Kind:     st.Kind,
		Decision: string(d.Action), // deny, or a held statement's rejected, expired, abandoned
		Rule:     d.Rule,
		Message:  d.Message,
	}
}

// query decides a simple Query. A Query's statements run as one implicit
// transaction (unless they hold transaction control themselves), so a
// Query with a denied statement is denied whole: running the others would
// change what the client's text means (a later statement relying on an
// earlier one, or a COMMIT in the middle), and PostgreSQL itself never
// runs part of a Query past an error.
func (c *session) query(m *pgproto3.Query) error {
	if d, err := c.settleLexing(m.String); err != nil {
		return err
	} else if d != nil {
		c.count(*d)
		return c.refuse(denialResponse(*d, codeFeatureNotSupported, 0), false, deniedCommand(m.String, sqlfacts.Statement{}, *d))
	}
	stmts, bad := c.classify(m.String)
	if bad != nil {
		c.count(bad.decision)
		return c.refuse(bad.response(), false, deniedCommand(m.String, sqlfacts.Statement{}, bad.decision))
	}
	if d, ok := c.refusableNotLast(stmts); !ok {
		c.count(d)
		return c.refuse(denialResponse(d, codeFeatureNotSupported, 0), false, deniedCommand(m.String, sqlfacts.Statement{}, d))
	}
	if size := retainable(stmts); size > 0 && !c.roomToRetain(size) {
		// Before a review would hold it.
		d := c.noRoomToRetain(size)
		c.count(d)
		var st sqlfacts.Statement
		if len(stmts) == 1 {
			st = stmts[0]
		}
		return c.refuse(noRoomResponse(d), false, deniedCommand(m.String, st, d))
	}
	ds := make([]decided, len(stmts))
	for i, st := range stmts {
		text := m.String
		if len(stmts) == 1 {
			text = st.Text
		}
		d := c.decide(st)
		var verdict *proxy.Verdict
		code := codeInsufficientPrivilege
		if d.Action == policy.Review {
			d, verdict, code = c.hold(text, st, d)
		}
		if !proxy.Allowed(d) {
			c.count(d)
			cmd := deniedCommand(text, st, d)
			if verdict != nil {
				cmd.Review, cmd.Decider = verdict.RequestID, verdict.Decider
			}
			return c.refuse(denialResponse(d, code, 0), false, cmd)
		}
		ds[i] = decided{stmt: st, decision: d, review: verdict}
	}
	for _, d := range ds {
		c.count(d.decision)
	}
	begun, err := c.begin(ds)
	if err != nil {
		return c.refuse(errorResponse("ERROR", codeSystemError, unrecorded, err.Error()), false, record.Command{})
	}
	c.relay.batch++
	var prepares []*prepared
	var releases []*release
	for i, d := range ds {
		ps, rel := c.track(d)
		if ps != nil {
			if prepares == nil {
				prepares = make([]*prepared, len(ds))
			}
			prepares[i] = ps
		}
		if rel != nil {
			if releases == nil {
				releases = make([]*release, len(ds))
			}
			releases[i] = rel
		}
	}
	return c.forward(&pending{kind: pendQuery, text: m.String, stmts: ds, prepares: prepares, releases: releases,
		begun: begun, rw: c.relay.rewriter}, m)
}

// settleLexing makes sure that the server reads text as the classifier
// does before it is decided and forwarded. The start-up pins and
// lexingGuard keep the settings that matter fixed against every statement
// the gateway can see changing them, but code running upstream (a DO
// block, a function, a procedure) can change them too, and a client may
// pipeline the next statement behind it: the server would read that one
// under the new settings before the gateway hears of them (PostgreSQL
// reports a changed setting with the next ReadyForQuery). Only a backslash
// reads differently under the settings the gateway refuses (it escapes a
// quote when standard_conforming_strings is off, and is the second byte
// of a character in the encodings that can hide one), so text without one
// goes on at once. Text with one waits until upstream has answered
// everything before it, whose ParameterStatus would have ended the
// session; inside an extended-protocol batch that has run something, the
// answer comes only at the batch's Sync, so the statement is denied
// instead (the client can send it after the Sync). It returns that
// denial, or nil.
func (c *session) settleLexing(text string) (*policy.Decision, error) {
	if !readsDifferently(text) {
		return nil, nil
	}
	if c.relay.ranInBatch {
		return &policy.Decision{Action: policy.Deny, Rule: GuardRule, Message: "interlock cannot forward a statement with a backslash behind statements run earlier in the same pipeline, which may have changed how the server reads it; send it after the Sync"}, nil
	}
	return nil, c.awaitIdle()
}

// readsDifferently reports text that the settings lexingGuard pins could
// make the server read differently from the classifier: a backslash before
// a quote (standard_conforming_strings off makes it escape the quote), or
// after a byte of a multi-byte character (an encoding such as SJIS makes
// it that character's second byte, where the classifier sees an escape in
// an escape string, E'...'). Other backslashes (E'\n', LIKE 'a\_%') read
// the same under every setting.
func readsDifferently(text string) bool {
	for i := strings.IndexByte(text, '\\'); i >= 0; {
		if (i+1 < len(text) && text[i+1] == '\'') || (i > 0 && text[i-1] >= 0x80) {
			return true
		}
		j := strings.IndexByte(text[i+1:], '\\')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// refusableNotLast denies a Query in which a statement whose result the
// rewriter may refuse is followed by others. PostgreSQL runs a Query's
// statements as one implicit transaction and the gateway cannot fail it
// part-way: after a refused result the client would be told of an error,
// which in PostgreSQL ends the Query, while the statements after it still
// ran and committed. As the last statement (or alone) such a statement is
// fine. In the simple protocol results are text except a COPY's and a
// FETCH from a cursor declared BINARY, which the gateway cannot tell here.
func (c *session) refusableNotLast(stmts []sqlfacts.Statement) (policy.Decision, bool) {
	rw := c.relay.rewriter
	if rw == nil || len(stmts) < 2 {
		return policy.Decision{}, true
	}
	for _, st := range stmts[:len(stmts)-1] {
		var formats []int16
		if st.Command == "FETCH" {
			formats = []int16{1} // the cursor may be binary
		}
		if rw.MayRefuse(st, formats) {
			return policy.Decision{Action: policy.Deny, Rule: GuardRule, Message: fmt.Sprintf(
				"interlock may have to refuse the result of %s, and the statements after it in this query would still run; send it as a query of its own or as the query's last statement",
				st.Command)}, false
		}
	}
	return policy.Decision{}, true
}

// parse decides an extended-protocol statement when it is prepared: the
// statement's text is known only here, and every later Bind and Execute of
// it runs this text.
func (c *session) parse(m *pgproto3.Parse) error {
	r := &c.relay
	guard, err := c.settleLexing(m.Query)
	if err != nil {
		return err
	}
	var stmts []sqlfacts.Statement
	var bad *unreadable
	if guard == nil {
		stmts, bad = c.classify(m.Query)
	}
	// Allowed or denied, the view keeps the text (a denial to record the
	// next attempt): refused first when there is no room for it, before a
	// review would hold it. Its name keeps what it held, as upstream,
	// which never sees this Parse, does.
	var facts sqlfacts.Statement
	if len(stmts) == 1 {
		facts = stmts[0]
	}
	if size := retainedSize(m.Query, facts); !c.roomToRetain(size) {
		d := c.noRoomToRetain(size)
		c.count(d)
		return c.refuse(noRoomResponse(d), true, deniedCommand(m.Query, facts, d))
	}
	// The statement the Parse makes is a candidate for the name until
	// upstream answers (see lookup): PostgreSQL refuses a Parse of a named
	// statement that exists (42P05) and keeps what the name holds, and
	// only what runs under a name may decide, mask (a COPY's columns come
	// from its text) and be recorded for it.
	held := c.lookup(m.Name)
	var st sqlfacts.Statement
	var d policy.Decision
	var verdict *proxy.Verdict
	var resp *pgproto3.ErrorResponse
	code := codeInsufficientPrivilege
	switch {
	case guard != nil:
		d = *guard
		code = codeFeatureNotSupported
	case bad != nil:
		d = bad.decision
		resp = bad.response()
	case len(stmts) > 1:
		d = policy.Decision{Action: policy.Deny, Message: multipleCommands}
		code = codeSyntaxError
	case len(stmts) == 1:
		st = stmts[0]
		d = c.decide(st)
		if d.Action == policy.Review {
			// Held when prepared: an approval covers every execution of
			// this prepared statement.
			d, verdict, code = c.hold(st.Text, st, d)
		}
	default: // no statement: upstream answers with EmptyQueryResponse
		r.forgetDenied(m.Name)
		made := &prepared{empty: true, name: m.Name, parse: &parseOutcome{batch: r.batch}, prev: held, seq: r.nextSeq()}
		r.stmts[m.Name] = made
		r.hold(made, "")
		return c.forward(&pending{kind: pendParse, parsed: made}, m)
	}
	if !proxy.Allowed(d) {
		// An allowed statement is counted at each Execute: the metric
		// counts commands run, as the recording does.
		c.count(d)
		if resp == nil {
			resp = denialResponse(d, code, 0)
		}
		dn := &denial{
			resp:     resp,
			cmd:      deniedCommand(m.Query, st, d),
			decision: d,
		}
		if verdict != nil {
			dn.cmd.Review, dn.cmd.Decider = verdict.RequestID, verdict.Decider
		}
		// The name is denied from here on, even where upstream keeps a
		// statement under it: a client that binds it means the denied
		// one.
		r.keepDenied(m.Name, dn) // checked before r.stmts
		return c.refuse(dn.resp, true, dn.cmd)
	}
	r.forgetDenied(m.Name)
	made := &prepared{ds: []decided{{stmt: st, decision: d, review: verdict}}, pol: r.pol, name: m.Name,
		parse: &parseOutcome{batch: r.batch}, prev: held, seq: r.nextSeq()}
	r.stmts[m.Name] = made
	r.hold(made, m.Query) // st.Text is cut out of it
	return c.forward(&pending{kind: pendParse, parsed: made}, m)
}

// refuseDenied refuses a message naming a denied statement or portal: it
// is another attempt to run the statement, counted and recorded again.
func (c *session) refuseDenied(dn *denial) error {
	c.count(dn.decision)
	return c.refuse(dn.resp, true, dn.cmd)
}

func (c *session) bind(m *pgproto3.Bind) error {
	r := &c.relay
	if dn, ok := r.deniedStmts[m.PreparedStatement]; ok {
		c.denyPortal(m.DestinationPortal, dn)
		return c.refuseDenied(dn)
	}
	if size := c.portalGrowth(m); size > 0 && !c.roomToRetain(size) {
		// Before a review would hold it (see redecideName). The view is
		// left as it was: the Bind never reaches upstream, whose name
		// keeps the portal it held.
		d := c.noRoomToRetain(size)
		c.count(d)
		var st sqlfacts.Statement
		if ps := r.stmts[m.PreparedStatement]; ps != nil && len(ps.ds) == 1 {
			st = ps.ds[0].stmt
		}
		return c.refuse(noRoomResponse(d), true, deniedCommand(cmp.Or(st.Text, "(a Bind of the portal "+strconv.Quote(m.DestinationPortal)+")"), st, d))
	}
	r.forgetDeniedPortal(m.DestinationPortal)
	ps := c.lookup(m.PreparedStatement)
	// Prepared before a reload: decided here, not at the Execute, since
	// PostgreSQL plans at Bind, and planning runs what it can fold (an
	// immutable function over constants) before any Execute.
	if dn := c.redecideName(m.PreparedStatement, ps); dn != nil {
		c.denyPortal(m.DestinationPortal, dn)
		return c.refuseDenied(dn)
	}
	// A driver rebinds its unnamed portal for every statement: reuse it.
	pt := r.portals[m.DestinationPortal]
	if pt == nil {
		pt = r.newPortal()
		r.portals[m.DestinationPortal] = pt
	}
	held := ps
	if ps != nil && ps.unknown {
		ps = nil // prepared outside the relay's view
	}
	// A Bind that fails upstream (a named portal's while the name holds
	// one, any with a wrong parameter count, in an aborted transaction)
	// leaves the portal the name held, and a savepoint can keep the
	// transaction going: until upstream takes it, the name may hold
	// either (see portalInDoubt).
	bp := &pending{kind: pendBind}
	bp.bindOut.batch = r.batch
	bp.bindOf = &bp.bindOut
	pols := pt.pols
	if pols == nil {
		// A new portal: the policy alone, shared (see addPolicy) by the
		// portals bound under it, as a driver's unnamed portal is new
		// after every transaction's end (see dropEnded).
		if len(r.polAlone) == 0 || r.polAlone[0] != r.pol {
			r.polAlone = []*policy.Policy{r.pol}
		}
		pols = r.polAlone
	}
	pols = addPolicy(pols, r.pol)
	if d, ok := r.doubtful[m.DestinationPortal]; ok {
		for _, pol := range d.pols {
			pols = addPolicy(pols, pol)
		}
	}
	r.forgetDoubt(m.DestinationPortal)
	r.rebind(pt, portal{stmt: ps, held: held, name: m.PreparedStatement, formats: m.ResultFormatCodes, bind: bp.bindOf, pols: pols})
	err := c.forward(bp, m)
	pt.runs = r.runs // after its own Bind, which counts as a run
	return err
}

// portalGrowth is what a Bind adds to the view: a portal, or the change
// of one the name holds already. The unnamed portal is not refused for
// room: a session has one, which every Bind of it replaces, so it cannot
// make the view grow, and refusing it would refuse every statement of a
// driver that runs all through it (pgx, libpq) where the Parse that
// filled the budget was refused already, telling the client what to do.
func (c *session) portalGrowth(m *pgproto3.Bind) int64 {
	r := &c.relay
	if m.DestinationPortal == "" {
		return 0
	}
	size := portalCharge(m.ResultFormatCodes)
	if pt := r.portals[m.DestinationPortal]; pt != nil {
		size -= pt.charge
	} else if dp, ok := r.deniedPortals[m.DestinationPortal]; ok {
		size -= dp.charge
	}
	return size
}

func (c *session) describe(m *pgproto3.Describe) error {
	r := &c.relay
	if m.ObjectType == 'S' {
		if dn, ok := r.deniedStmts[m.Name]; ok {
			return c.refuseDenied(dn)
		}
		// Its description (columns, types) is the statement's too: one
		// a reload denies is not described either.
		if dn := c.redecideName(m.Name, c.lookup(m.Name)); dn != nil {
			return c.refuseDenied(dn)
		}
		return c.forward(&pending{kind: pendDescribe}, m)
	}
	if dp, ok := r.deniedPortals[m.Name]; ok {
		return c.refuseDenied(dp.dn)
	}
	res := &resultDesc{runs: r.runs}
	if p := r.portals[m.Name]; p != nil && p.runs == r.runs {
		res.formats = p.formats
		p.res = res
	} else {
		// A portal the gateway did not see bound, or one something may
		// have replaced since: its description says its formats.
		res.fromRD = true
		if p != nil {
			p.res = res
		}
	}
	return c.forward(&pending{kind: pendDescribe, res: res}, m)
}

// execute forwards an Execute. With a rewriter, the rows must be described
// to it with the formats in effect; unless the client described the portal
// itself, the relay asks upstream for the description first.
func (c *session) execute(m *pgproto3.Execute) error {
	r := &c.relay
	if dp, ok := r.deniedPortals[m.Portal]; ok {
		return c.refuseDenied(dp.dn)
	}
	p := r.portals[m.Portal]
	pols, inDoubt := c.portalInDoubt(m.Portal, p)
	if inDoubt {
		if slices.ContainsFunc(pols, func(pol *policy.Policy) bool { return pol != r.pol }) {
			d := portalDoubtDenial(m.Portal)
			c.count(d)
			return c.refuse(denialResponse(d, codeInsufficientPrivilege, 0), true,
				deniedCommand("(the portal "+m.Portal+")", sqlfacts.Statement{}, d))
		}
		// It may run what the relay did not see bound: decided as
		// unknown (a COPY through it is refused when masks need its
		// columns), and it may prepare names.
		p = nil
		c.unseenPrepares()
	}
	if p != nil {
		// Bound before a reload.
		if dn := c.redecideName(p.name, p.held); dn != nil {
			return c.refuseDenied(dn)
		}
	}
	{
		// A cursor declared in SQL, run by its portal's name (whatever
		// the relay saw bound under that name before).
		if cd, decl := c.cursorDenial(nil, m.Portal, p != nil); cd != nil {
			c.count(*cd)
			return c.refuse(denialResponse(*cd, codeInsufficientPrivilege, 0), true, deniedCommand(decl.Text, decl, *cd))
		}
	}
	ex := &pending{kind: pendExecute, rw: r.rewriter}
	// The formats a portal was bound with, and the description the client
	// asked for, hold only while nothing has run since: a statement may
	// have closed the portal and declared a cursor of the same name
	// (CLOSE p; DECLARE p CURSOR FOR ..., or a function opening one), or
	// the transaction that held it ended. Masking by a stale description
	// would mask the wrong columns, so the relay describes such a portal
	// itself, and until then assumes its rows may be binary.
	formats := mayBeBinary
	if p != nil {
		if p.runs == r.runs {
			formats = p.formats
		}
		if p.res != nil && p.res.runs == r.runs {
			ex.res = p.res
		}
		if p.stmt != nil && !p.stmt.empty {
			ex.stmts = p.stmt.ds
		}
		if c.unsettled(p.stmt) {
			// A candidate of an earlier batch still unanswered (see
			// lookup).
			ex.bound = p.stmt
		}
	}
	alternatives := c.alternatives(ex.bound)
	if c.runsUnseen(p, alternatives) {
		c.unseenPrepares()
	}
	if len(ex.stmts) == 1 {
		st := ex.stmts[0].stmt
		if size := retainable([]sqlfacts.Statement{st}); size > 0 && !c.roomToRetain(size) {
			d := c.noRoomToRetain(size)
			c.count(d)
			return c.refuse(noRoomResponse(d), true, deniedCommand(st.Text, st, d))
		}
	}
	if len(ex.stmts) == 1 {
		ps, rel := c.track(ex.stmts[0])
		switch {
		case len(alternatives) > 0 && ps != nil:
			// Another statement may run instead: upstream's answer
			// would not say which PREPARE it was.
			ps.parse.done, ps.parse.unknown = true, true
		case len(alternatives) > 0: // nor which DEALLOCATE
		default:
			if ps != nil {
				ex.prepares = []*prepared{ps}
			}
			if rel != nil {
				ex.releases = []*release{rel}
			}
		}
	}
	// A result the rewriter may refuse holds the batch's Sync (see sync):
	// the result of any statement the portal may run.
	ex.vetting = r.rewriter != nil && r.rewriter.MayRefuse(ex.current().stmt, formats)
	for _, st := range alternatives {
		ex.vetting = ex.vetting || (r.rewriter != nil && r.rewriter.MayRefuse(st, formats))
	}
	c.count(ex.current().decision)
	if len(ex.stmts) == 1 {
		recorded := ex.stmts
		if len(alternatives) > 0 {
			// On disk before upstream says which runs: name them all.
			d := ex.stmts[0]
			for _, st := range alternatives {
				d.stmt.Text += "\n-- or, if the Parse of this name is refused upstream, what it held: " + cmp.Or(st.Text, "(a statement prepared outside the gateway's view)")
			}
			recorded = []decided{d}
		}
		begun, err := c.begin(recorded)
		if err != nil {
			return c.refuse(errorResponse("ERROR", codeSystemError, unrecorded, err.Error()), true, record.Command{})
		}
		ex.begun = begun
	}
	if r.rewriter != nil && ex.res == nil {
		res := &resultDesc{runs: r.runs, fromRD: true}
		if p != nil {
			p.res = res
		}
		ex.res = res
		if err := c.forward(&pending{kind: pendInjectedDescribe, res: res}, &pgproto3.Describe{ObjectType: 'P', Name: m.Portal}); err != nil {
			return err
		}
	}
	return c.forward(ex, m)
}

// track keeps the relay's view of the session's prepared statements and
// cursors up to date with a statement it forwards (d, allowed). SQL's
// PREPARE shares its names with the protocol's Parse: `PREPARE s AS ...`
// makes a candidate for s, as a Parse does (see parse and lookup), which
// upstream's answer to the statement settles (endStatement; PREPARE is
// not undone by a rollback); track returns it, for the pending entry. The
// candidate holds the PREPARE, whose facts are its body's, so that after a
// reload a Bind or an SQL EXECUTE of s decides the body again
// (redecideChain, preparedDenial); it is unknown otherwise: a Bind of it
// runs a statement the relay did not see parsed, recorded as prepared
// outside its view, and a COPY through it is refused when masks need its
// columns. DEALLOCATE and DISCARD ALL, as a protocol Close, remove from the
// view what they name once upstream answers them (track returns that
// release; see dropReleased): upstream may skip them after an error, and
// until the answer a Bind of a name they removed fails upstream anyway. A
// DECLARE's facts are kept by cursor name until CLOSE or DISCARD ALL, so
// that a FETCH after a reload is decided by the new policy as the DECLARE
// would be (see cursorDenial).
func (c *session) track(d decided) (*prepared, *release) {
	r := &c.relay
	st := d.stmt
	if c.executesUnseen(st) {
		c.unseenPrepares()
	}
	switch st.Command {
	case "PREPARE", "DEALLOCATE", "DISCARD", "DECLARE", "CLOSE":
	default:
		return nil, nil
	}
	// st.Text is one statement sqlfacts already classified, so parsing it
	// again is safe.
	tree, err := pg_query.Parse(st.Text)
	if err != nil || len(tree.Stmts) != 1 {
		r.forgetStatements()
		r.forgetCursors()
		return nil, nil
	}
	// What the view keeps is copied out of the message (a Query of many
	// statements): it is charged for its own text (see retainedMemory).
	st.Text = strings.Clone(st.Text)
	d.stmt = st
	switch n := tree.Stmts[0].Stmt; {
	case n.GetPrepareStmt() != nil:
		name := n.GetPrepareStmt().Name
		r.forgetDenied(name)
		made := &prepared{ds: []decided{d}, pol: r.pol, name: name, unknown: true,
			parse: &parseOutcome{batch: r.batch}, prev: c.lookup(name), seq: r.nextSeq()}
		r.stmts[name] = made
		r.hold(made, st.Text)
		return made, nil
	case n.GetDeallocateStmt() != nil:
		// Once upstream answers it (see release).
		if n.GetDeallocateStmt().Isall {
			return nil, &release{all: true, seq: r.seq}
		}
		if ps := r.stmts[n.GetDeallocateStmt().Name]; ps != nil {
			return nil, &release{ps: ps}
		}
	case n.GetDeclareCursorStmt() != nil:
		if len(r.cursors) >= maxCursors {
			// Most are cursors a transaction's end closed already; those
			// it did not are decided again after a reload as unknown.
			r.forgetCursors()
			r.cursorsForgotten = r.pol
		}
		name := n.GetDeclareCursorStmt().Portalname
		cu := &cursor{stmts: []sqlfacts.Statement{st}, pol: r.pol}
		if old := r.cursors[name]; old != nil {
			// A DECLARE of an open cursor's name fails, and one whose
			// transaction ended since succeeds: the relay does not know
			// which, and holds both queries (the first and the last few).
			keep := old.stmts
			if len(keep) >= maxCursorQueries {
				keep = append(keep[:1:1], keep[len(keep)-maxCursorQueries+2:]...)
			}
			cu.stmts = append(slices.Clone(keep), st)
		}
		r.keepCursor(name, cu)
		// The name is the cursor's now, once upstream takes it.
		rel := c.doubtPortal(name)
		r.dropPortal(name)
		return nil, rel
	case n.GetClosePortalStmt() != nil:
		if name := n.GetClosePortalStmt().Portalname; name != "" {
			r.forgetCursor(name)
			rel := c.doubtPortal(name)
			r.dropPortal(name)
			return nil, rel
		} else { // CLOSE ALL
			r.forgetCursors()
		}
	case n.GetDiscardStmt() != nil && n.GetDiscardStmt().Target == pg_query.DiscardMode_DISCARD_ALL:
		r.forgetCursors()
		return nil, &release{all: true, seq: r.seq}
	}
	// DISCARD PLANS, SEQUENCES, TEMP: nothing the view holds.
	return nil, nil
}

// maxCursors bounds the cursors a session's relay remembers. The relay
// does not see a transaction's end close its cursors, so names a session
// never CLOSEs stay until this many are known; then all are forgotten, and
// a cursor declared WITH HOLD before that is no longer decided again after
// a reload.
const maxCursors = 256

// maxCursorQueries bounds the DECLAREs a cursor name holds (see track).
const maxCursorQueries = 4

// cursor is a cursor the client declared through the gateway.
type cursor struct {
	// stmts are the DECLAREs of the name, whose facts are their queries':
	// the one that runs is among them.
	stmts  []sqlfacts.Statement
	pol    *policy.Policy // that last allowed them
	charge int64          // see relayState.keepCursor
}

// cursorDenial decides again, by the policy in force, the cursor a FETCH
// or MOVE reads (named in st) or an Execute runs (named portal), when a
// policy before a reload allowed it: the rows a cursor returns are its
// DECLARE's query's, which that policy decided. It returns the denial and
// the DECLARE, or nil when the cursor is allowed, unknown or decided by
// this policy. bound says the relay knows portal as a protocol portal:
// only a name it does not know may be a cursor it forgot.
func (c *session) cursorDenial(st *sqlfacts.Statement, portal string, bound bool) (*policy.Decision, sqlfacts.Statement) {
	r := &c.relay
	if len(r.cursors) == 0 && r.cursorsForgotten == nil {
		return nil, sqlfacts.Statement{}
	}
	stale := r.cursorsForgotten != nil && r.cursorsForgotten != r.pol
	for _, cu := range r.cursors {
		if stale {
			break
		}
		stale = cu.pol != r.pol
	}
	if !stale {
		return nil, sqlfacts.Statement{}
	}
	if st != nil {
		tree, err := pg_query.Parse(st.Text)
		if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetFetchStmt() == nil {
			return nil, sqlfacts.Statement{}
		}
		portal = tree.Stmts[0].Stmt.GetFetchStmt().Portalname
	}
	cu := r.cursors[portal]
	if cu == nil {
		if !bound && r.cursorsForgotten != nil && r.cursorsForgotten != r.pol {
			// Forgotten with the others (maxCursors) before a reload:
			// its query is unknown, so it is not run.
			d := policy.Decision{Action: policy.Deny, Rule: GuardRule, Message: "interlock no longer knows the query of cursor " + portal + " (the session declared too many), and the policy changed since: declare it again"}
			return &d, sqlfacts.Statement{Command: "FETCH", Text: "(the cursor " + portal + ")"}
		}
		return nil, sqlfacts.Statement{}
	}
	if cu.pol == r.pol {
		return nil, sqlfacts.Statement{}
	}
	var d policy.Decision
	var decl sqlfacts.Statement
	for _, st := range cu.stmts {
		d, decl = c.decisions.Decide(SQLFacts(st, c.database, c.user)), st
		if d.Action != policy.Allow {
			break
		}
	}
	if d.Action == policy.Allow {
		cu.pol = r.pol
		return nil, sqlfacts.Statement{}
	}
	if d.Action == policy.Review {
		// A FETCH is not held: the cursor's query would have been.
		d = policy.Decision{Action: policy.Deny, Rule: d.Rule, Message: "the cursor " + portal + " was declared before a policy reload, and its query now needs a review: declare it again"}
	}
	if d.Message == "" {
		d.Message = defaultDenialMessage
	}
	return &d, decl
}

// preparedDenial decides again, by the policy in force, the prepared
// statement an SQL EXECUTE runs (alone, under EXPLAIN or in CREATE TABLE
// AS), when a policy before a reload decided it: what runs is the
// statement's, not the EXECUTE's, and a driver's Bind of the name is
// decided again the same way (redecideChain). Every statement the name may
// hold is decided (see mayHold), and so is the statement an EXECUTE it
// holds runs in turn. It returns the denial, or nil when allowed or
// unknown (a name the relay never saw prepared, such as one a function
// prepared). A review is a denial here, as for a cursor: the statement
// would have been held when prepared.
func (c *session) preparedDenial(st sqlfacts.Statement) *policy.Decision {
	if len(c.relay.stmts) == 0 && c.relay.unseenPol == nil {
		return nil // nothing to decide again, nor names it cannot vouch for
	}
	return c.executedDenial(st, map[string]bool{})
}

// executedDenial is preparedDenial for st, following each name once (seen):
// a client can make a name hold many statements at once (Parses of it
// pipelined), each an EXECUTE of it. A statement counts as decided by the
// policy in force only once what it EXECUTEs in turn is allowed too.
func (c *session) executedDenial(st sqlfacts.Statement, seen map[string]bool) *policy.Decision {
	r := &c.relay
	if st.Command != "EXPLAIN" && !slices.Contains(st.Commands, "EXECUTE") {
		return nil
	}
	name, ok := executedName(st.Text)
	if !ok || seen[name] {
		return nil
	}
	if len(seen) == maxExecuteDepth {
		d := policy.Decision{Action: policy.Deny, Rule: GuardRule, Message: fmt.Sprintf(
			"interlock follows prepared statements that EXECUTE others %d deep at most", maxExecuteDepth)}
		return &d
	}
	seen[name] = true
	ps := c.lookup(name)
	if c.suspect(name, ps) {
		return &c.unseenDenial(name).decision
	}
	for q := range c.mayHold(ps) {
		if len(q.ds) != 1 {
			continue
		}
		held := q.ds[0].stmt
		stale := q.pol != r.pol
		var d policy.Decision
		if stale {
			d = c.decisions.Decide(SQLFacts(held, c.database, c.user))
			if d.Action != policy.Allow {
				if d.Action == policy.Review {
					d = policy.Decision{Action: policy.Deny, Rule: d.Rule, Message: "the prepared statement " + name + " was prepared before a policy reload, and its statement now needs a review: DEALLOCATE it and prepare it again"}
				}
				d.Message = cmp.Or(d.Message, defaultDenialMessage)
				return &d
			}
		}
		// A prepared EXECUTE of another prepared statement.
		if dn := c.executedDenial(held, seen); dn != nil {
			return dn
		}
		if stale {
			c.mu.Lock() // resolveRan may read it
			q.ds = []decided{{stmt: held, decision: d}}
			c.mu.Unlock()
			q.pol = r.pol
		}
	}
	return nil
}

// maxExecuteDepth bounds the names preparedDenial follows from one
// EXECUTE through prepared EXECUTEs; a deeper chain is refused.
const maxExecuteDepth = 8

// longSQLName reports a statement naming a prepared statement or a cursor
// (PREPARE, EXECUTE, DEALLOCATE, DECLARE, FETCH, MOVE, CLOSE) with an
// identifier longer than maxNameLen bytes: PostgreSQL cuts a name at that
// many bytes of the server's encoding, the parser the relay uses at a
// character of UTF-8, so two names the relay tells apart could be one
// upstream (or the other way round). Any long identifier in such a
// statement counts; a quoted one by its text between the quotes.
func longSQLName(st sqlfacts.Statement) (string, bool) {
	if len(st.Text) <= maxNameLen {
		return "", false
	}
	switch st.Command {
	case "PREPARE", "EXECUTE", "DEALLOCATE", "DECLARE", "FETCH", "MOVE", "CLOSE", "EXPLAIN":
	default:
		if !slices.Contains(st.Commands, "EXECUTE") {
			return "", false
		}
	}
	scan, err := pg_query.Scan(st.Text)
	if err != nil {
		return "", false // it was classified, so it scans
	}
	for _, tok := range scan.Tokens {
		if tok.Token != pg_query.Token_IDENT && tok.Token != pg_query.Token_UIDENT {
			continue
		}
		word := st.Text[tok.Start:tok.End]
		inner := strings.TrimPrefix(strings.TrimPrefix(word, "U&"), "u&")
		if len(inner) >= 2 && inner[0] == '"' {
			inner = strings.ReplaceAll(inner[1:len(inner)-1], `""`, `"`)
		}
		if len(inner) > maxNameLen {
			return word, true
		}
	}
	return "", false
}

// executedName is the prepared statement a statement EXECUTEs, if it is an
// EXECUTE, or EXPLAIN or CREATE TABLE AS of one.
func executedName(text string) (string, bool) {
	tree, err := pg_query.Parse(text)
	if err != nil || len(tree.Stmts) != 1 {
		return "", false
	}
	for n := tree.Stmts[0].Stmt; n != nil; {
		switch {
		case n.GetExplainStmt() != nil:
			n = n.GetExplainStmt().Query
		case n.GetCreateTableAsStmt() != nil:
			n = n.GetCreateTableAsStmt().Query
		case n.GetExecuteStmt() != nil:
			return n.GetExecuteStmt().Name, true
		default:
			return "", false
		}
	}
	return "", false
}

// tooLong refuses a Query or Parse whose SQL the gateway did not read
// (statementTooLong), as a denial of the statement it does not know.
func (c *session) tooLong(tl *statementTooLong) error {
	if c.relay.discard {
		return nil // a Parse after an error of its batch
	}
	d := policy.Decision{Action: policy.Deny, Rule: GuardRule, Message: tl.Error()}
	c.count(d)
	return c.refuse(denialResponse(d, codeProgramLimitExceeded, 0), tl.kind == 'P',
		deniedCommand(fmt.Sprintf("(a statement of %d bytes, not read)", tl.size), sqlfacts.Statement{}, d))
}

// noRoom refuses a client message that the handler's memory for large
// messages had no room for (read past, not kept), as a statement refused
// before it ran; the session goes on. Only statements and their
// parameters are that large: any other such message ends the session.
func (c *session) noRoom(tl *tooLarge) error {
	var extended bool
	var what string
	switch tl.kind {
	case 'Q':
		what = "statement"
	case 'F':
		what = "function call"
	case 'P':
		what, extended = "statement (Parse)", true
	case 'B':
		what, extended = "Bind", true
	default:
		c.fatal(codeOutOfMemory, "interlock ended the session: "+tl.Error())
		return tl
	}
	if c.relay.discard {
		return nil // after an error of its batch, upstream ignores it too
	}
	d := policy.Decision{Action: policy.Deny, Rule: GuardRule, Message: tl.Error()}
	c.count(d)
	return c.refuse(errorResponse("ERROR", codeOutOfMemory, tl.Error(), ""), extended,
		deniedCommand(fmt.Sprintf("(a %s of %d bytes, not read)", what, tl.size), sqlfacts.Statement{}, d))
}

// mayBeBinary are the result formats of a portal whose formats the relay
// does not know (read only).
var mayBeBinary = []int16{1}

// functionCall refuses the function call sub-protocol: it calls a function
// by OID with no SQL for the policy to decide.
func (c *session) functionCall(m *pgproto3.FunctionCall) error {
	d := policy.Decision{Action: policy.Deny, Message: functionCallDenied}
	c.count(d)
	return c.refuse(denialResponse(d, codeInsufficientPrivilege, 0), false, deniedCommand(
		fmt.Sprintf("function call, function oid %d", m.Function), sqlfacts.Statement{Command: "FUNCTION CALL"}, d))
}

// refuse answers a denied message, keeping client and upstream in
// agreement about the transaction:
//
//   - Nothing pending, no extended-protocol batch open upstream, and no
//     transaction block open ('I', or 'E' where upstream has failed
//     already): the client is answered here and upstream never hears of
//     the statement.
//   - Inside a transaction block ('T'), or with responses still on their
//     way: upstream is sent a statement that always fails (failingSQL) in
//     the denied one's place, and its ErrorResponse is replaced by the
//     denial. Upstream's transaction fails exactly as the client is told
//     it did (both report 'E'; a later COMMIT rolls back on both), an
//     extended-protocol pipeline is aborted up to its Sync as it would
//     be, and the denial reaches the client in order.
//
// extended is true for Parse, Bind, Describe and Execute: then the client's
// messages are discarded up to the next Sync, as PostgreSQL does after an
// error, and that Sync is answered with ReadyForQuery.
//
// cmd is the denial's recording (none when its Text is empty). It is
// recorded when the client is told: at once when answered here, or when
// the stand-in's answer comes, so that the session log lists the
// statements in the order the client sent them — statements ahead of it
// are recorded when their results come. (With strict recording every
// command is on disk before it goes upstream, in that order already.)
func (c *session) refuse(resp *pgproto3.ErrorResponse, extended bool, cmd record.Command) error {
	c.mu.Lock()
	local := len(c.pending) == 0 && c.txStatus != 'T' && !c.relay.inBatch
	status := c.txStatus
	if !local {
		p := &pending{kind: pendDenied, denial: resp, simple: !extended}
		if cmd.Text != "" && !c.rec.Strict() {
			later := cmd
			p.deniedCmd, cmd = &later, record.Command{}
		}
		c.pushLocked(p)
	}
	c.mu.Unlock()
	if cmd.Text != "" {
		c.record(cmd)
	}
	if extended {
		c.relay.discard = true
		c.relay.localSync = local
	}
	switch {
	case local && extended:
		return c.client.send(resp)
	case local:
		return c.client.send(resp, &pgproto3.ReadyForQuery{TxStatus: status})
	case extended:
		return c.forward(nil, &pgproto3.Parse{Name: deniedStatementName, Query: failingSQL})
	default:
		return c.forward(nil, &pgproto3.Query{String: failingSQL})
	}
}

// refreshPolicy makes the policy in force decide and mask from here on: a
// reload replaces it, and the session follows at its next Query, Parse,
// Bind, Describe or Execute (never between a message's statements, so that
// what is decided and how its results are masked come from one policy). It
// returns that policy.
func (c *session) refreshPolicy() *policy.Policy {
	r := &c.relay
	if c.decisions == nil {
		// c.base is final once the relay runs (a password login sets its
		// identity during start-up).
		c.decisions = c.h.policy.SQLDecisions(c.base)
	}
	p := c.decisions.Refresh()
	if p != r.pol {
		r.pol = p
		if c.h.rewriter != nil {
			r.rewriter = c.h.rewriter(c.s, p.Masker(c.base), c.meta)
			c.textRewriter.Store(r.rewriter)
		}
	}
	return p
}

// lookup returns the statement a name holds in the relay's view, settling
// the candidates Parses made (see parse) whose answers came: a Parse
// upstream took replaces what the name held (upstream takes a named Parse
// only of a free name, so that was gone); one it refused or skipped leaves
// what the name held, except that a refused unnamed Parse empties it (the
// server drops the unnamed statement first); one whose answer the relay
// dropped (after refusing a result in its batch) leaves the name unknown.
// A candidate still unanswered is returned as it is: a Bind of it in the
// same batch is skipped upstream if the Parse fails, and for one in a
// later batch the upstream goroutine settles which statement ran when its
// results come (resolveRan).
func (c *session) lookup(name string) *prepared {
	r := &c.relay
	for {
		ps := r.stmts[name]
		if ps == nil || ps.parse == nil {
			return ps
		}
		c.mu.Lock()
		o := *ps.parse
		var replaced *prepared
		if o.done && o.ok {
			replaced = ps.prev
			ps.parse, ps.prev = nil, nil
		}
		c.mu.Unlock()
		r.let(replaced) // upstream's name holds ps only
		switch {
		case !o.done, o.ok:
			return ps
		case o.unknown:
			c.forgetName(name)
			return r.stmts[name]
		}
		held := ps.prev
		if o.refused && name == "" {
			held = nil // the unnamed statement's, dropped with ps
		}
		if held == nil {
			delete(r.stmts, name)
		} else {
			keep(held)
			r.stmts[name] = held
		}
		r.let(ps) // a portal may keep it, and what it held with it
	}
}

// alternatives are the statements an Execute bound to ps, a candidate
// still unanswered (pending.bound), may run instead: what the name held
// before, up to a statement upstream took (see lookup). nil for a
// settled statement.
func (c *session) alternatives(ps *prepared) []sqlfacts.Statement {
	if ps == nil {
		return nil
	}
	var out []sqlfacts.Statement
	c.mu.Lock()
	defer c.mu.Unlock()
	for q := ps; c.unsettledLocked(q) && q.prev != nil; {
		q = q.prev
		if q.unknown || q.empty || len(q.ds) != 1 {
			out = append(out, sqlfacts.Statement{})
		} else {
			out = append(out, q.ds[0].stmt)
		}
	}
	return out
}

// unsettled reports a candidate whose Parse is unanswered or failed and
// was sent in an earlier batch: the statement a Bind of its name runs may
// be what the name held before. (In the Parse's own batch a Bind runs the
// candidate or nothing.)
func (c *session) unsettled(ps *prepared) bool {
	if ps == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unsettledLocked(ps)
}

func (c *session) unsettledLocked(ps *prepared) bool {
	return ps.parse != nil && !(ps.parse.done && ps.parse.ok) && ps.parse.batch != c.relay.batch
}

// redecideChain decides again, when policy changed since, every statement
// a name may hold upstream: ps, and while ps is a candidate still
// unanswered or a name the relay does not know, what the name held
// before. It returns the first denial.
func (c *session) redecideChain(ps *prepared) *denial {
	r := &c.relay
	for q := range c.mayHold(ps) {
		if len(q.ds) == 1 && q.pol != r.pol {
			if dn := c.redecide(q); dn != nil {
				return dn
			}
		}
	}
	return nil
}

// mayHold yields what a name may hold upstream, from ps, what the relay's
// view holds for it: ps, and while ps is a candidate still unanswered (or
// refused, until lookup settles it) or a name the relay does not know at
// all, what the name held before.
func (c *session) mayHold(ps *prepared) iter.Seq[*prepared] {
	return func(yield func(*prepared) bool) {
		for q := ps; q != nil; {
			if !yield(q) {
				return
			}
			c.mu.Lock()
			var next *prepared
			if (q.unknown && len(q.ds) == 0) || c.unsettledLocked(q) {
				next = q.prev
			}
			c.mu.Unlock()
			q = next
		}
	}
}

// forgetName makes a name one the relay does not know, keeping what it
// held as what it may hold besides (for redecideChain).
func (c *session) forgetName(name string) {
	r := &c.relay
	old := r.stmts[name]
	was := old // the name's reference moves to made
	if old != nil && old.unknown && len(old.ds) == 0 {
		old = old.prev // one unknown is enough
	}
	seq := r.nextSeq()
	if old != nil {
		seq = old.seq // it holds what was made then, or before
	}
	made := &prepared{name: name, unknown: true, prev: old, seq: seq}
	keep(old)
	r.stmts[name] = made
	r.hold(made, "")
	r.let(was)
}

// fetchedPortalDenial decides again, at an SQL FETCH or MOVE, a protocol
// portal of the name it reads, as an Execute of it would be (see
// execute): one bound before a reload, or in doubt (see portalInDoubt)
// with a policy no longer in force. A cursor declared in SQL is
// cursorDenial's.
func (c *session) fetchedPortalDenial(st sqlfacts.Statement) *policy.Decision {
	r := &c.relay
	if len(r.doubtful) == 0 && (len(r.portals) == 0 || (len(r.portals) == 1 && r.portals[""] != nil)) {
		return nil // no named portal a FETCH could read
	}
	tree, err := pg_query.Parse(st.Text)
	if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetFetchStmt() == nil {
		return nil
	}
	name := tree.Stmts[0].Stmt.GetFetchStmt().Portalname
	p := r.portals[name]
	if pols, inDoubt := c.portalInDoubt(name, p); inDoubt {
		if slices.ContainsFunc(pols, func(pol *policy.Policy) bool { return pol != r.pol }) {
			d := portalDoubtDenial(name)
			return &d
		}
		return nil
	}
	if p != nil {
		if dn := c.redecideName(p.name, p.held); dn != nil {
			return &dn.decision
		}
	}
	return nil
}

// portalDoubtDenial refuses a portal in doubt after a reload.
func portalDoubtDenial(name string) policy.Decision {
	return policy.Decision{Action: policy.Deny, Rule: GuardRule, Message: fmt.Sprintf(
		"interlock cannot tell what the portal %q runs (a Bind, Close or DECLARE of the name may not have taken effect upstream), and the policy changed since: bind it again", name)}
}

// doubtPortal notes that a Close, CLOSE or DECLARE of the portal name goes
// upstream (the caller then forgets the portal): until upstream takes it,
// the name may still hold its portal, which a skipped or refused one
// leaves. It returns the release that ends the doubt once taken, or nil
// when the view holds no portal of the name to doubt.
func (c *session) doubtPortal(name string) *release {
	r := &c.relay
	p := r.portals[name]
	d, doubted := r.doubtful[name]
	if p == nil && !doubted {
		return nil // no protocol portal it could leave (cursors are cursorDenial's)
	}
	pols := []*policy.Policy{r.pol}
	if p != nil {
		pols = addPolicy(p.pols, r.pol)
	}
	for _, pol := range d.pols {
		pols = addPolicy(pols, pol)
	}
	gen := r.nextSeq()
	charge := d.charge
	if !doubted {
		// In the portal's place, which the caller forgets: no growth to
		// refuse.
		charge = portalOverhead
		r.retained.add(charge)
	}
	r.doubtful[name] = doubt{gen: gen, batch: r.batch, pols: pols, charge: charge}
	return &release{doubt: name, doubtGen: gen}
}

// portalInDoubt reports, at an Execute of portal name (p in the view), a
// binding the relay cannot vouch for: its Bind unanswered from an earlier
// batch, or refused or skipped (upstream then keeps the portal the name
// held), or a Close, CLOSE or DECLARE of the name sent in
// an earlier batch and not yet taken. (In its own batch a failed one
// makes upstream skip the Execute too.) It returns the policies in force
// when the portals the name may hold were bound.
func (c *session) portalInDoubt(name string, p *portal) ([]*policy.Policy, bool) {
	r := &c.relay
	if p != nil && p.bind != nil {
		c.mu.Lock()
		unsure := !(p.bind.done && p.bind.ok) && p.bind.batch != r.batch
		c.mu.Unlock()
		if unsure {
			return p.pols, true
		}
	}
	if d, ok := r.doubtful[name]; ok && p == nil && d.batch != r.batch {
		return d.pols, true
	}
	return nil, false
}

// maxPortalPolicies bounds portal.pols; past it the name counts as bound
// under a policy no longer in force.
const maxPortalPolicies = 4

// addPolicy is pols with pol, without changing pols (portals share
// them); past maxPortalPolicies it is a set with nil, which no policy in
// force equals.
func addPolicy(pols []*policy.Policy, pol *policy.Policy) []*policy.Policy {
	switch {
	case slices.Contains(pols, pol):
		return pols
	case len(pols) >= maxPortalPolicies:
		return []*policy.Policy{nil}
	}
	return append(slices.Clip(pols), pol)
}

// redecideName decides again what a Bind, Describe or Execute of the
// prepared statement name (ps in the view) may run: refused when the relay
// cannot vouch for the name (see suspect), else as redecideChain.
func (c *session) redecideName(name string, ps *prepared) *denial {
	if c.suspect(name, ps) {
		return c.unseenDenial(name)
	}
	if ps == nil {
		return nil
	}
	return c.redecideChain(ps)
}

// suspect reports a prepared statement name the relay cannot vouch for
// after a reload: a statement it could not follow ran under an earlier
// policy (see unseenPrepares) and may have prepared the name behind its
// back — a PREPARE of a name upstream holds already fails, so what the
// view holds for a name made before then (or no entry at all) may not be
// what upstream runs. A name made again since is known.
func (c *session) suspect(name string, ps *prepared) bool {
	r := &c.relay
	return name != "" && r.unseenPol != nil && r.unseenPol != r.pol && (ps == nil || ps.seq <= r.unseenSeq)
}

// unseenPrepares notes that a statement the relay cannot follow is
// forwarded: it may prepare names (see suspect). A note from an earlier
// policy stays: the names it makes suspect are more.
func (c *session) unseenPrepares() {
	r := &c.relay
	if r.unseenPol == nil || r.unseenPol == r.pol {
		r.unseenPol = r.pol
	}
	r.unseenSeq = r.seq
}

// unseenDenial refuses a suspect name.
func (c *session) unseenDenial(name string) *denial {
	d := policy.Decision{Action: policy.Deny, Rule: GuardRule, Message: fmt.Sprintf(
		"interlock cannot tell what the prepared statement %q holds: a statement it could not follow may have prepared it before the policy changed; deallocate it and prepare it again", name)}
	return &denial{resp: denialResponse(d, codeInsufficientPrivilege, 0), decision: d,
		cmd: deniedCommand("(the prepared statement "+name+")", sqlfacts.Statement{}, d)}
}

// runsUnseen reports an Execute of portal p that may run a statement
// preparing a name the relay does not see made: a PREPARE, or an EXECUTE
// (of a protocol statement that may be a PREPARE), that is not the one
// statement the relay tracks for the portal (alternatives: others it may
// run instead).
func (c *session) runsUnseen(p *portal, alternatives []sqlfacts.Statement) bool {
	if p == nil || p.held == nil {
		return false // a name the relay never saw made: a function's, whose body cannot prepare
	}
	tracked := p.stmt != nil && len(alternatives) == 0
	for q := range c.mayHold(p.held) {
		if (tracked && q == p.stmt) || len(q.ds) != 1 || q.unknown {
			continue // tracked; what an unknown holds follows; an SQL PREPARE's body cannot prepare
		}
		if preparesNames(q.ds[0].stmt) {
			return true
		}
	}
	for _, st := range alternatives {
		if st.Text == "" || preparesNames(st) {
			return true
		}
	}
	return false
}

// executesUnseen reports a statement that EXECUTEs a name which may hold a
// statement preparing names (a PREPARE, or an EXECUTE, made with the
// protocol's Parse): what that prepares the relay does not see.
func (c *session) executesUnseen(st sqlfacts.Statement) bool {
	if !slices.Contains(st.Commands, "EXECUTE") || len(c.relay.stmts) == 0 {
		return false
	}
	name, ok := executedName(st.Text)
	if !ok {
		return false
	}
	for q := range c.mayHold(c.lookup(name)) {
		if len(q.ds) == 1 && !q.unknown && preparesNames(q.ds[0].stmt) {
			return true
		}
	}
	return false
}

// preparesNames reports a statement that may prepare a statement name.
func preparesNames(st sqlfacts.Statement) bool {
	return st.Command == "PREPARE" || slices.Contains(st.Commands, "EXECUTE")
}

// resolveRan settles, when an Execute's results come, which statement its
// portal runs, if the portal was bound to a candidate whose Parse upstream
// refused or skipped (see lookup): the statement the name held before, or
// none the relay knows. The upstream goroutine's; the answers to the Parse
// came before the results.
func (c *session) resolveRan(p *pending) {
	if p.bound == nil {
		return
	}
	bound := p.bound // what stmts hold
	ps := bound
	p.bound = nil
	c.mu.Lock()
	for ps != nil && ps.parse != nil && ps.parse.done && !ps.parse.ok {
		if ps.parse.unknown || (ps.parse.refused && ps.name == "") {
			ps = nil
			break
		}
		ps = ps.prev
	}
	var ds []decided
	if ps != nil {
		ds = ps.ds
	}
	c.mu.Unlock()
	if ps == bound {
		return
	}
	if ps == nil || ps.empty || ps.unknown {
		p.stmts = nil
		return
	}
	p.stmts = ds
}

// redecide decides again, when the client binds or executes it, a
// prepared statement an earlier policy decided (at its Parse, before a
// reload), so that a reload that denies a statement also holds for a
// driver that prepared it before. It returns the denial when the policy in
// force does not allow it, for the caller to refuse (refuseDenied). The
// statement stays prepared, and is decided again at every Bind and Execute
// until a policy allows it: a driver that caches its prepared statements
// (pgx does) keeps using the one it has, and a later reload that allows it
// again must not find it denied for good.
func (c *session) redecide(ps *prepared) *denial {
	r := &c.relay
	st := ps.ds[0].stmt
	d := c.decide(st)
	var verdict *proxy.Verdict
	code := codeInsufficientPrivilege
	if d.Action == policy.Review {
		d, verdict, code = c.hold(st.Text, st, d)
	}
	if proxy.Allowed(d) {
		c.mu.Lock() // resolveRan may read it
		ps.ds = []decided{{stmt: st, decision: d, review: verdict}}
		c.mu.Unlock()
		ps.pol = r.pol
		return nil
	}
	dn := &denial{resp: denialResponse(d, code, 0), cmd: deniedCommand(st.Text, st, d), decision: d}
	if verdict != nil {
		dn.cmd.Review, dn.cmd.Decider = verdict.RequestID, verdict.Decider
	}
	return dn
}

// rewriterSlot holds a ResultRewriter for the other goroutine.
type rewriterSlot struct {
	v atomic.Pointer[ResultRewriter]
}

func (s *rewriterSlot) Load() ResultRewriter {
	if p := s.v.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *rewriterSlot) Store(rw ResultRewriter) { s.v.Store(&rw) }
