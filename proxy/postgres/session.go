package postgres

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/record"
)

// session is one client connection being served.
type session struct {
	ctx    context.Context
	cancel context.CancelCauseFunc // ends the session with a reason
	h      *Handler
	s      *proxy.Session
	t      Target
	log    *slog.Logger

	clientConn net.Conn // the raw connection, or TLS over it
	cr         *clientReader
	client     *msgWriter // nil until the start-up packet is read

	// What the client asked for at start-up, and the parameters passed
	// upstream.
	user, database, appName string
	params                  map[string]string

	up *msgWriter // to upstream; the relay's
	// From upstream, the upstream goroutine's: fe is pgconn's reader,
	// used only for what it read ahead at login (then nil); ur reads the
	// rest from upReader, what fe reads from (pgconn's background reader
	// over the connection).
	fe       *pgproto3.Frontend
	ur       *serverReader
	upReader io.Reader

	base policy.Request // target, workload and identity of every request
	// decisions decides the session's statements (the client goroutine's).
	decisions *policy.SQLDecisions
	// textRewriter masks upstream's text outside results (maskText): the
	// rewriter of the policy in force, set by the client goroutine.
	textRewriter rewriterSlot
	// held is the statement held for review now, for a CancelRequest.
	held holdSlot
	rec  *record.Recorder
	cmds *proxy.SessionCommands // the client goroutine's; set at the first decision

	mu      sync.Mutex // guards the fields below, shared by both relay goroutines
	aborted bool
	upConn  net.Conn
	pending []*pending // what upstream still owes, oldest first
	// pendingArray is pending's array from its start: popping reslices
	// pending from the front, so an emptied queue restarts here instead
	// of allocating with every push.
	pendingArray []*pending
	txStatus     byte   // of the last ReadyForQuery from upstream
	ended        string // the side that ended the relay first
	// unvetted counts the pending Executes whose result the rewriter may
	// still refuse (pending.vetting); refusedInBatch: one of them was
	// refused since the last Sync went upstream. See awaitVetting.
	unvetted       int
	refusedInBatch bool
	// copyIn: a COPY FROM STDIN began; copyInAt is its entry's
	// pending.copyEnds, the mark of the Syncs upstream ignored during it.
	copyIn   bool
	copyInAt uint64
	// idleWanted: the client goroutine waits in awaitIdle for the
	// pending queue to empty; upstreamFailed: upstream failed the batch
	// and skips to its Sync (failedLocked).
	idleWanted     bool
	upstreamFailed bool
	// pendingBytes is what the pending queue holds (pending.size);
	// roomWanted: the client goroutine waits in awaitRoom for it to fall
	// to half of Handler.pendingLimit.
	pendingBytes int64
	roomWanted   bool
	// failedBatch is 1 + the batch (relayState.batch) upstream failed and
	// skips to its Sync, or whose result the relay refused (refuseResult),
	// 0 for none: the client goroutine skips the rest of that batch itself
	// (see fromClient). The upstream goroutine writes it.
	failedBatch atomic.Uint64
	// released: what upstream has removed (a Close or DEALLOCATE it
	// answered), for the client goroutine to drop from its view
	// (dropReleased); releasedN counts them, read without the lock.
	released  []release
	releasedN atomic.Int32
	// wake wakes the client goroutine waiting in awaitVetting or
	// awaitIdle (which check again: a wake-up may be for the other);
	// upEnded is closed when the upstream goroutine ends.
	wake    chan struct{}
	upEnded chan struct{}

	relay relayState
	meta  *metadataConn
}

func newSession(ctx context.Context, cancel context.CancelCauseFunc, h *Handler, s *proxy.Session, t Target) *session {
	log := s.Logger
	if log == nil {
		log = h.log
	}
	// Statements and their results are small messages each way: see
	// proxy.QuietConn.
	client := proxy.QuietConn(s.Client)
	return &session{
		ctx:        ctx,
		cancel:     cancel,
		h:          h,
		s:          s,
		t:          t,
		log:        log,
		clientConn: client,
		cr:         newClientReader(client),
		txStatus:   'I',
		base: policy.Request{
			Target:   policy.Target{Name: s.Target.Name, Protocol: "postgres", Address: s.Target.Address},
			Workload: policy.Workload{Name: s.Caller.Workload},
			Identity: policy.Identity{
				Subject: s.Caller.Identity.Subject,
				Groups:  slices.Clone(s.Caller.Identity.Groups),
				Issuer:  s.Caller.Identity.Issuer,
			},
		},
	}
}

// abort ends the session because ctx is done: the client is told why with
// a FATAL 57P01, then both connections are closed, which ends whatever the
// session's goroutines are blocked in.
func (c *session) abort(cause error) {
	c.mu.Lock()
	if c.aborted {
		c.mu.Unlock()
		return
	}
	c.aborted = true
	up := c.upConn
	w := c.client
	conn := c.clientConn
	c.mu.Unlock()
	if w != nil {
		// A client that does not read must not hold the shutdown up.
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		w.send(errorResponse("FATAL", codeAdminShutdown, "interlock ended the session: "+causeText(cause), ""))
	}
	conn.Close()
	if up != nil {
		up.Close()
	}
}

func causeText(err error) string {
	if err == nil {
		return "session ended"
	}
	return err.Error()
}

// setUpstream makes conn the session's upstream connection, unless the
// session was aborted meanwhile.
func (c *session) setUpstream(conn net.Conn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted {
		conn.Close()
		return context.Cause(c.ctx)
	}
	c.upConn = conn
	return nil
}

// closeAll closes everything the session opened; the server closes the
// client connection itself, but a TLS layer over it is ours.
func (c *session) closeAll() {
	c.mu.Lock()
	up := c.upConn
	c.mu.Unlock()
	if up != nil {
		up.Close()
	}
	if c.meta != nil {
		c.meta.close()
	}
	c.clientConn.Close()
}

// fatal tells the client why the session ends.
func (c *session) fatal(code, message string) {
	if c.client == nil {
		return
	}
	c.clientConn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.client.send(errorResponse("FATAL", code, message, ""))
}

// run is the whole session.
func (c *session) run() error {
	st, err := c.startup()
	if err != nil {
		var se *startupError
		switch {
		case errors.As(err, &se):
			c.fatal(se.code, se.msg)
		case errors.Is(err, errProtocol):
			c.fatal(codeProtocolViolation, strings.TrimPrefix(err.Error(), errProtocol.Error()+": "))
		}
		if errors.Is(err, io.EOF) {
			return nil // a probe, or a client that gave up: nothing to record
		}
		return fmt.Errorf("postgres start-up: %w", err)
	}
	if st.cancel != nil {
		c.h.cancel(c.ctx, c.s, st.cancel, c.log)
		return nil
	}
	if err := c.proveIdentity(); err != nil {
		return err
	}
	if err := c.startRecording(st); err != nil {
		c.fatal(codeSystemError, "interlock cannot record this session, so it does not run it")
		return err
	}
	defer proxy.WatchRecording(c.rec, c.cancel, c.log)()
	end := record.End{}
	defer func() {
		if c.ctx.Err() != nil {
			end.Reason = causeText(context.Cause(c.ctx))
		}
		if err := c.rec.Close(end); err != nil {
			c.log.Error("closing the session recording", "error", err)
		}
	}()

	if st.replication {
		const msg = "replication connections are not allowed"
		c.fatal(codeInsufficientPrivilege, msg)
		end.Reason = msg
		return nil
	}
	var hello []encoder
	if st.negotiate != nil {
		hello = append(hello, st.negotiate)
	}
	hello = append(hello, &pgproto3.AuthenticationOk{})
	if err := c.client.send(hello...); err != nil {
		end.Reason = "client closed during start-up"
		return nil
	}

	c.params = st.params
	hc, err := c.login(st.params)
	if err != nil {
		if c.ctx.Err() != nil {
			return context.Cause(c.ctx)
		}
		c.log.Warn("upstream login failed", "error", err)
		resp := loginFailure(c.s.Target.Name, err)
		c.fatal(resp.Code, resp.Message)
		end.Reason = "upstream login failed: " + err.Error()
		return fmt.Errorf("logging in upstream: %w", err)
	}

	if name, value, bad := unsafeLexing(hc.ParameterStatuses); bad {
		// A role's or database's default the start-up packet did not
		// override (the client asked for no client_encoding).
		hc.Conn.Close()
		msg := fmt.Sprintf("the target's session starts with %s=%s, in which the server would read SQL differently from interlock; connect with client_encoding=UTF8", name, value)
		c.log.Warn("upstream session refused", "parameter", name, "value", value)
		c.fatal(codeFeatureNotSupported, msg)
		end.Reason = msg
		return fmt.Errorf("%w: upstream reports %s=%s at login", errUnsafeLexing, name, value)
	}

	key := c.h.cancels.add(cancelTarget{
		targetID: c.s.Target.ID,
		workload: c.s.Caller.Workload,
		address:  c.s.Destination.String(),
		tls:      hc.TLSConfig,
		pid:      hc.PID,
		secret:   slices.Clone(hc.SecretKey),
		held:     &c.held,
	})
	defer c.h.cancels.remove(key)

	var ready []encoder
	names := make([]string, 0, len(hc.ParameterStatuses))
	for n := range hc.ParameterStatuses {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		ready = append(ready, &pgproto3.ParameterStatus{Name: n, Value: hc.ParameterStatuses[n]})
	}
	ready = append(ready,
		&pgproto3.BackendKeyData{ProcessID: key.pid, SecretKey: key.secret[:]},
		&pgproto3.ReadyForQuery{TxStatus: hc.TxStatus})
	c.txStatus = hc.TxStatus
	if err := c.client.send(ready...); err != nil {
		end.Reason = "client closed during start-up"
		return nil
	}
	c.log.Info("postgres session ready", "database", c.database, "user", c.user, "upstream_pid", hc.PID)

	reason, err := c.runRelay(hc.Frontend)
	end.Reason = reason
	c.recordUnfinished(reason)
	return err
}

// proveIdentity asks a caller whose workload must log in with an OIDC
// token (and has not) for the token as its password, and binds it. Without
// a valid token the session ends before anything is recorded or reaches
// upstream.
func (c *session) proveIdentity() error {
	need := c.s.Caller.NeedsLogin
	if need == "" {
		return nil
	}
	how := fmt.Sprintf("workload %s must prove its identity with an OIDC token from %s: run interlock login, or give the token as the password", c.s.Caller.Workload, need)
	if c.h.login == nil {
		c.fatal(codeInvalidAuthorization, "interlock: "+how)
		return errors.New(how)
	}
	if err := c.client.send(&pgproto3.AuthenticationCleartextPassword{}); err != nil {
		return nil // the client went away
	}
	// The start-up's deadline covers the password too: a client that
	// never answers must not hold the session open.
	c.clientConn.SetReadDeadline(time.Now().Add(startupTimeout))
	token, err := c.cr.password()
	c.clientConn.SetReadDeadline(time.Time{})
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("the client gave no OIDC token: %s", how)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.fatal(codeInvalidAuthorization, "interlock: no OIDC token within the start-up time ("+how+")")
			return fmt.Errorf("the client gave no OIDC token in time: %w", err)
		}
		c.fatal(codeProtocolViolation, err.Error())
		return err
	}
	id, expires, err := c.h.login(c.ctx, c.s.Caller, token, "postgres password")
	if err != nil {
		c.fatal(codeInvalidPassword, "interlock refused the OIDC token: "+err.Error()+" ("+how+")")
		return fmt.Errorf("OIDC token refused: %w", err)
	}
	c.s.Caller.Identity, c.s.Caller.IdentityExpires, c.s.Caller.NeedsLogin = id, expires, ""
	c.base.Identity = policy.Identity{Subject: id.Subject, Groups: slices.Clone(id.Groups), Issuer: id.Issuer}
	c.log.Info("workload proved its identity with its password", "subject", id.Subject, "issuer", id.Issuer)
	return nil
}

// recordUnfinished records the statements upstream had been sent but not
// answered when the relay ended: they may have run (a client that closes
// its socket mid-statement does not stop an INSERT that commits), so the
// log must show them, with the reason their outcome is unknown.
func (c *session) recordUnfinished(reason string) {
	c.mu.Lock()
	left := c.pending
	c.pending, c.pendingArray, c.pendingBytes = nil, nil, 0
	c.mu.Unlock()
	for _, p := range left {
		if p.kind == pendDenied && p.deniedCmd != nil {
			c.record(*p.deniedCmd) // the client may not have heard; it never ran
			continue
		}
		c.recordOutcomeless(p, "no result, the session ended first ("+reason+"); the statement may have run", true)
	}
}

// recordOutcomeless records the allowed statements of p (a Query's from
// the one running on, or an Execute's) that will get no result, with why;
// timed: the first ran from p.started until now. With strict recording
// their commands are on disk already, and this is their result.
func (c *session) recordOutcomeless(p *pending, why string, timed bool) {
	var stmts []decided
	first := 0
	switch p.kind {
	case pendQuery:
		if p.idx < len(p.stmts) {
			stmts, first = p.stmts[p.idx:], p.idx
		}
	case pendExecute:
		stmts = []decided{p.current()}
	}
	for i, d := range stmts {
		if !proxy.Allowed(d.decision) {
			continue
		}
		cmd := d.command()
		cmd.Error = why
		if timed && i == 0 && !p.started.IsZero() {
			cmd.DurationMS = float64(time.Since(p.started).Microseconds()) / 1000
		}
		if seq := p.begunAt(first + i); seq != 0 {
			c.recordResult(record.Result{Of: seq, DurationMS: cmd.DurationMS, Error: cmd.Error})
			continue
		}
		c.record(cmd)
	}
}

// startup is what the start-up phase found.
type startup struct {
	cancel      *pgproto3.CancelRequest // a cancel connection
	params      map[string]string       // to send upstream
	replication bool
	negotiate   *pgproto3.NegotiateProtocolVersion
	ignored     []string // parameters not passed upstream
}

// forwardedParams are the start-up parameters passed upstream (lower-case;
// PostgreSQL's names are case-insensitive). A start-up parameter is a
// setting applied before any statement, so passing every one would let a
// client set what policy decides for SET statements (role, options with
// -c ...); these are the client conveniences drivers send.
var forwardedParams = map[string]bool{
	"application_name":                    true,
	"client_encoding":                     true,
	"datestyle":                           true,
	"timezone":                            true,
	"intervalstyle":                       true,
	"extra_float_digits":                  true,
	"search_path":                         true,
	"bytea_output":                        true,
	"lc_monetary":                         true,
	"lc_numeric":                          true,
	"lc_time":                             true,
	"statement_timeout":                   true,
	"lock_timeout":                        true,
	"idle_in_transaction_session_timeout": true,
	"standard_conforming_strings":         true,
	"default_transaction_isolation":       true,
	"default_transaction_read_only":       true,
}

// startupTimeout bounds the start-up phase, as PostgreSQL's
// authentication_timeout does: a connection that never says who it is must
// not hold a session open.
const startupTimeout = time.Minute

// startup runs the start-up phase: SSL and GSS negotiation, then the
// start-up packet (or a cancel request).
func (c *session) startup() (startup, error) {
	c.clientConn.SetDeadline(time.Now().Add(startupTimeout))
	defer func() { c.clientConn.SetDeadline(time.Time{}) }()
	tlsDone := false
	for range 4 {
		if !tlsDone && c.t.AgentTLS {
			// PostgreSQL 17's direct TLS: a TLS ClientHello instead of an
			// SSLRequest.
			first, err := c.cr.br.Peek(1)
			if err != nil {
				return startup{}, err
			}
			if first[0] == 0x16 {
				if err := c.startTLS(true); err != nil {
					return startup{}, err
				}
				tlsDone = true
				continue
			}
		}
		body, err := c.cr.startupPacket()
		if err != nil {
			return startup{}, err
		}
		code := binary.BigEndian.Uint32(body)
		switch code {
		case sslRequestCode:
			if tlsDone || !c.t.AgentTLS {
				if _, err := c.clientConn.Write([]byte{'N'}); err != nil {
					return startup{}, err
				}
				continue
			}
			if c.cr.buffered() > 0 {
				return startup{}, fmt.Errorf("%w: received unencrypted data after SSL request", errProtocol)
			}
			if _, err := c.clientConn.Write([]byte{'S'}); err != nil {
				return startup{}, err
			}
			if err := c.startTLS(false); err != nil {
				return startup{}, err
			}
			tlsDone = true
		case gssEncRequestCode:
			if _, err := c.clientConn.Write([]byte{'N'}); err != nil {
				return startup{}, err
			}
		case cancelRequestCode:
			req := &pgproto3.CancelRequest{}
			if err := req.Decode(body); err != nil {
				return startup{}, fmt.Errorf("%w: %w", errProtocol, err)
			}
			return startup{cancel: req}, nil
		default:
			c.mu.Lock() // abort reads it
			c.client = newMsgWriter(c.clientConn, errClientWrite)
			c.mu.Unlock()
			return c.startupMessage(code, body[4:])
		}
	}
	return startup{}, fmt.Errorf("%w: too many start-up requests", errProtocol)
}

// startTLS terminates the agent's TLS with a certificate for the address
// it dialled.
func (c *session) startTLS(direct bool) error {
	cfg := c.h.ca.ServerConfig(c.s.Destination.Addr().Unmap().String())
	if direct {
		cfg = cfg.Clone()
		cfg.NextProtos = []string{"postgresql"}
	}
	// Read through the start-up reader: after a Peek for direct TLS it
	// holds the start of the ClientHello.
	conn := tls.Server(bufferedConn{Conn: c.clientConn, r: c.cr.br}, cfg)
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("agent TLS handshake: %w", err)
	}
	c.mu.Lock() // abort reads it
	c.clientConn = conn
	c.mu.Unlock()
	c.cr = newClientReader(conn)
	return nil
}

// bufferedConn reads through a reader that may hold bytes already read
// from Conn.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (b bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// startupMessage reads the parameters of a start-up packet.
func (c *session) startupMessage(version uint32, body []byte) (startup, error) {
	major, minor := version>>16, version&0xffff
	if major != 3 {
		return startup{}, &startupError{code: codeFeatureNotSupported,
			msg: fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0 to 3.0", major, minor)}
	}
	raw, err := parseStartupParams(body)
	if err != nil {
		return startup{}, err
	}
	st := startup{params: map[string]string{}}
	var unrecognized []string
	for k, v := range raw {
		switch lk := strings.ToLower(k); {
		case k == "user":
			c.user = v
		case k == "database":
			c.database = v
		case k == "replication":
			switch strings.ToLower(v) {
			case "false", "off", "no", "0":
			default:
				st.replication = true
			}
		case strings.HasPrefix(k, "_pq_."):
			unrecognized = append(unrecognized, k)
		case forwardedParams[lk]:
			// Kept under the lower-case name PostgreSQL reads it as, so
			// that pinLexingParams sees every spelling of a setting; two
			// spellings of one name would leave upstream to pick either.
			if _, dup := st.params[lk]; dup {
				return startup{}, &startupError{code: codeProtocolViolation,
					msg: fmt.Sprintf("start-up parameter %q given more than once", lk)}
			}
			st.params[lk] = v
			if lk == "application_name" {
				c.appName = v
			}
		default:
			st.ignored = append(st.ignored, k)
		}
	}
	if c.user == "" {
		return startup{}, &startupError{code: codeInvalidAuthorization, msg: "no PostgreSQL user name specified in startup packet"}
	}
	c.database = StartupDatabase(c.database, c.user)
	if minor > 0 || len(unrecognized) > 0 {
		slices.Sort(unrecognized)
		st.negotiate = &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unrecognized}
	}
	slices.Sort(st.ignored)
	if len(st.ignored) > 0 {
		c.log.Info("start-up parameters not passed upstream", "parameters", st.ignored)
	}
	return st, nil
}

// startupError is a start-up packet the session refuses, with the
// SQLSTATE the client is told.
type startupError struct {
	code, msg string
}

func (e *startupError) Error() string { return e.msg }

// parseStartupParams reads the name/value pairs of a start-up packet: NUL
// terminated strings, ended by an empty name.
func parseStartupParams(b []byte) (map[string]string, error) {
	params := map[string]string{}
	for {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return nil, fmt.Errorf("%w: invalid startup packet layout: expected terminator as last byte", errProtocol)
		}
		if i == 0 {
			if len(b) != 1 {
				return nil, fmt.Errorf("%w: invalid startup packet layout: expected terminator as last byte", errProtocol)
			}
			return params, nil
		}
		name := string(b[:i])
		b = b[i+1:]
		j := bytes.IndexByte(b, 0)
		if j < 0 {
			return nil, fmt.Errorf("%w: invalid startup packet layout: expected terminator as last byte", errProtocol)
		}
		params[name] = string(b[:j])
		b = b[j+1:]
	}
}

// startRecording creates the session's event log.
func (c *session) startRecording(st startup) error {
	attrs := map[string]string{"database": c.database, "user": c.user}
	if c.appName != "" {
		attrs["application_name"] = c.appName
	}
	if len(st.ignored) > 0 {
		attrs["ignored_parameters"] = strings.Join(st.ignored, ",")
	}
	start := proxy.RecordStart(c.s, "postgres", attrs)
	rec, err := c.h.recordings.Create(c.s.ID, start, time.Now())
	if err != nil {
		c.log.Error("cannot record the session; refusing it", "error", err)
		return fmt.Errorf("starting the session recording: %w", err)
	}
	c.rec = rec
	return nil
}

// recordResult appends the outcome of a command recorded with Begin.
func (c *session) recordResult(r record.Result) {
	if err := c.rec.Result(r); err != nil {
		c.log.Error("recording a result", "error", err)
	}
}

// begin records, with strict recording, the commands about to be
// forwarded, each on disk before it runs; it returns their Seqs (nil
// without strict recording, where commands are recorded when they end).
// An error means they must not run.
func (c *session) begin(ds []decided) ([]uint64, error) {
	if !c.rec.Strict() {
		return nil, nil
	}
	seqs := make([]uint64, len(ds))
	for i, d := range ds {
		seq, err := c.rec.Begin(d.command())
		if err != nil {
			return nil, err
		}
		seqs[i] = seq
	}
	return seqs, nil
}

// record appends a command event. A failure is logged here; the session
// ends through watchRecording.
func (c *session) record(cmd record.Command) {
	if err := c.rec.Command(cmd); err != nil {
		c.log.Error("recording a command", "error", err, "command", cmd.Command)
	}
}
