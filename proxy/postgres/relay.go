package postgres

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
	"github.com/interlock-dev/interlock/record"
)

// The relay runs two goroutines per session. The client goroutine reads the
// client's messages, decides them and forwards them upstream, or answers a
// denial. The upstream goroutine reads upstream's messages, rewrites
// results and relays them to the client. What upstream still owes is the
// pending queue: the client goroutine pushes an entry for every forwarded
// message that gets a response, the upstream goroutine pops it when the
// response is complete. The queue lets the upstream goroutine know which
// statement a result belongs to (for the recording and the rewriter), and
// it lets the client goroutine know when a denial may be answered directly:
// only when nothing is pending, so the answer cannot overtake a response
// still on its way.

var (
	// errTerminate: the client sent Terminate.
	errTerminate = errors.New("client terminated the session")
	// errUpstreamProtocol: upstream sent what the relay cannot place.
	errUpstreamProtocol = errors.New("unexpected message from upstream")
	// errUpstreamWrite marks a client-goroutine failure that is upstream's.
	errUpstreamWrite = errors.New("writing upstream")
	// errClientWrite marks an upstream-goroutine failure that is the
	// client's.
	errClientWrite = errors.New("writing to the client")
)

// failingSQL stands in upstream for a denied statement when upstream must
// see an error (see session.refuse): a syntax error, so it never runs,
// whatever state the session is in.
const failingSQL = "/* interlock: statement denied by policy */ interlock denied"

// deniedStatementName is the name the stand-in Parse uses, so that it never
// replaces the client's unnamed statement (a Parse that fails stores
// nothing under a name).
const deniedStatementName = "interlock_denied"

// pendingKind is what a forwarded message waits for.
type pendingKind uint8

const (
	pendQuery            pendingKind = iota // simple Query: its results, then ReadyForQuery
	pendParse                               // ParseComplete
	pendBind                                // BindComplete
	pendDescribe                            // [ParameterDescription,] RowDescription or NoData
	pendInjectedDescribe                    // the relay's own Describe of a portal; swallowed
	pendExecute                             // rows, then CommandComplete, EmptyQueryResponse or PortalSuspended
	pendClose                               // CloseComplete
	pendSync                                // ReadyForQuery
	pendDenied                              // an ErrorResponse, replaced by the denial
)

func (k pendingKind) String() string {
	return [...]string{"Query", "Parse", "Bind", "Describe", "Describe (for masking)", "Execute", "Close", "Sync", "denial"}[k]
}

// pending is one response upstream owes.
type pending struct {
	kind pendingKind
	// pendDenied: what the client is told instead of upstream's error,
	// whether it stood in for a Query (ReadyForQuery follows) or for an
	// extended-protocol message, and the denial's recording, made when
	// the entry leaves the queue (see refuse).
	denial    *pgproto3.ErrorResponse
	simple    bool
	deniedCmd *record.Command
	// pendQuery: the text and its statements; pendExecute: the portal's
	// statement (none when the gateway does not know it).
	text  string
	stmts []decided
	idx   int // pendQuery: the statement running now
	// parsed (pendParse) is the statement the Parse makes; bindOf
	// (pendBind) the outcome of the Bind (bindOut, in the entry the Bind
	// allocates anyway).
	parsed  *prepared
	bindOf  *parseOutcome
	bindOut parseOutcome
	// prepares (pendQuery, pendExecute) are the candidates the statements
	// that are SQL PREPAREs make, by statement index (nil: not one), which
	// upstream's answer to each settles as a Parse's (see session.track);
	// releases, by the same index (pendClose: [0]), what a Close,
	// DEALLOCATE or DISCARD ALL removes from the view once upstream
	// answers it.
	prepares []*prepared
	releases []*release
	// bound (pendExecute) is the candidate statement the portal was bound
	// to (stmts are its), until resolveRan settled what ran.
	bound *prepared
	// rw (pendQuery, pendExecute) masks the results: the rewriter of the
	// policy that decided the statements, so that a reload while they run
	// does not change how their results are checked and masked.
	rw ResultRewriter
	// pendDescribe of a portal, pendInjectedDescribe, pendExecute: the
	// portal's result description.
	res *resultDesc
	// begun: with strict recording, the Seq of each statement's command
	// event, written before it was forwarded (pendQuery: by index;
	// pendExecute: one).
	begun []uint64
	// vetting: a pendExecute whose result the rewriter may refuse and
	// has not accepted or refused yet (session.unvetted counts them).
	vetting bool
	// copyEnds is relayState.copyEnds when the entry was forwarded.
	copyEnds uint64
	// batch is relayState.batch when the entry was pushed: a Sync's or
	// Query's counts itself, so what was bound before it is of an earlier
	// batch (see readyForQuery).
	batch uint64
	// size is what the entry counts in session.pendingBytes.
	size int64

	// The outcome of the statement running now.
	started    time.Time
	rows       int64
	masked     map[string]int
	described  bool   // pendExecute: the rewriter was told about res
	refused    bool   // pendQuery: the rewriter refused this result; swallow it
	refusalErr string // why
}

// release is what upstream's answer to a Close, DEALLOCATE or DISCARD ALL
// removes from the relay's view: the entry the name held when it was
// forwarded (a Parse or PREPARE of the name forwarded after it made a new
// one, which stays), or with all, every entry made up to seq.
type release struct {
	ps  *prepared
	all bool
	seq uint64
	// doubt: a Close, CLOSE or DECLARE of the portal name doubt (at
	// doubtGen) that upstream took: the portal is gone, or a cursor.
	doubt    string
	doubtGen uint64
}

// doubt is a doubtful portal name's: gen numbers it (relayState.seq),
// batch is relayState.batch when the message went upstream, pols the
// policies in force when the portals the name may hold were bound; charge
// is what the view is charged for it (the portal's, which it replaces).
type doubt struct {
	gen, batch uint64
	pols       []*policy.Policy
	charge     int64
}

// nextSeq numbers a statement made in the view.
func (r *relayState) nextSeq() uint64 {
	r.seq++
	return r.seq
}

// decided is a statement with its decision, and the review that let it
// run, if one held it.
type decided struct {
	stmt     sqlfacts.Statement
	decision policy.Decision
	review   *proxy.Verdict
}

// command is the recording of the statement, without its outcome.
func (d decided) command() record.Command {
	text := d.stmt.Text
	if text == "" {
		text = "(a statement prepared outside the gateway's view)"
	}
	cmd := record.Command{
		Text:     text,
		Command:  d.stmt.Command,
		Kind:     d.stmt.Kind,
		Decision: string(d.decision.Action),
		Rule:     d.decision.Rule,
	}
	if v := d.review; v != nil {
		cmd.Review, cmd.Decider = v.RequestID, v.Decider
	}
	return cmd
}

// resultDesc is what the rows of a portal look like.
type resultDesc struct {
	rd      *pgproto3.RowDescription
	formats []int16 // nil with fromRD: rd's own format codes
	// runs is relayState.runs when the Describe went upstream: the
	// description is trusted for an Execute only while nothing has run
	// since (see execute).
	runs uint64
	// fromRD: the formats are rd's (a Describe of a portal reports the
	// formats its rows come in), not a Bind's.
	fromRD bool
}

// resultFormats are the formats the rows come in.
func (r *resultDesc) resultFormats() []int16 {
	if r.fromRD && r.formats == nil && r.rd != nil {
		r.formats = fieldFormats(r.rd)
	}
	return r.formats
}

// relayState is the client goroutine's, except dropUntilReady, lastRD,
// received and frame (the upstream goroutine's) and txEnded (shared).
type relayState struct {
	stmts   map[string]*prepared // allowed statements by name
	portals map[string]*portal
	cursors map[string]*cursor // declared in SQL, by name (see track)
	// batch counts the batches forwarded (each Sync, each Query).
	batch uint64
	// cursorsForgotten is the policy in force when cursors last
	// overflowed (nil: never): after a reload, a cursor it does not know
	// may be one of those.
	cursorsForgotten *policy.Policy
	// doubtful are the portal names a Close, CLOSE or DECLARE was
	// forwarded for and upstream has not yet answered (or refused): the
	// name may still hold its protocol portal. See session.portalInDoubt.
	// What is in doubt is that protocol portal, which its transaction's
	// end drops as surely as the Close would (a cursor the DECLARE makes
	// is cursors'), so a doubt goes with the portals (dropEnded).
	doubtful map[string]doubt
	// seq numbers the statements the view holds as they are made
	// (prepared.seq); unseenSeq is seq, and unseenPol the policy in
	// force, when a statement the relay could not follow may have
	// prepared names behind its back (nil: never; see session.suspect).
	seq           uint64
	unseenSeq     uint64
	unseenPol     *policy.Policy
	deniedStmts   map[string]*denial
	deniedPortals map[string]deniedPortal
	// txEnded is pending.batch of the last ReadyForQuery that found
	// upstream idle: the portals bound in an earlier batch are gone
	// upstream. The upstream goroutine writes it, the client goroutine
	// drops them (dropEnded), as with releases: an atomic load per
	// message. portalsFrom is at most the batch of every portal, denied
	// portal and doubt in the view, so that a transaction's end that
	// drops none costs no look at them; spare is the last portal struct
	// dropped (see newPortal).
	txEnded     atomic.Uint64
	portalsFrom uint64
	spare       *portal
	// polAlone is pol alone, the pols of a portal bound anew (see bind).
	polAlone []*policy.Policy
	// retained is what stmts (with what their names may hold besides),
	// deniedStmts, cursors, portals (with the statements they keep),
	// deniedPortals and doubtful hold, against the session's budget.
	retained retainedMemory
	// discard: an extended-protocol message was denied; everything up to
	// the next Sync is discarded, as PostgreSQL does after an error.
	discard bool
	// localSync: that Sync is answered here, nothing having gone upstream.
	localSync bool
	// inBatch: extended-protocol messages went upstream since the last
	// Sync. Upstream is then inside the batch (its implicit transaction
	// open, or failed and skipping to Sync) even when it owes nothing.
	inBatch bool
	// ranInBatch: a Bind or Execute went upstream since the last Sync, so
	// code may have run whose effects upstream reports only at the Sync's
	// ReadyForQuery (see settleLexing).
	ranInBatch bool
	// runs counts the messages forwarded that may run code (Query, Bind,
	// Execute, Sync), which may replace a portal behind the relay's back
	// (CLOSE and DECLARE of the same name, in SQL or in a function).
	runs uint64
	// copyEnds counts the CopyDone and CopyFail messages forwarded: a Sync
	// forwarded between a COPY FROM STDIN's Execute and its end reaches
	// upstream in copy-in mode, which ignores it (libpq sends one right
	// after the Execute), so it gets no ReadyForQuery of its own.
	copyEnds uint64
	// pol is the policy that decides and masks the client's messages now
	// (session.refreshPolicy), and rewriter its masks' rewriter. A
	// pending statement keeps the rewriter of the policy that decided
	// it (pending.rw).
	pol      *policy.Policy
	rewriter ResultRewriter

	// dropUntilReady: the client was sent an error in the extended
	// protocol, so it expects nothing but ReadyForQuery; upstream's
	// responses up to it are dropped. dropWhy is what became of the
	// Executes still pending then, for the recording; dropSkipped, the
	// error was upstream's, which skips the rest of the batch (else the
	// relay refused a result, and upstream ran the rest).
	dropUntilReady bool
	dropWhy        string
	dropSkipped    bool
	// lastRD: the last result description kept (keepRowDescription).
	lastRD *pgproto3.RowDescription
	// received is the upstream message being handled, and frame the bytes
	// it arrived in (nil when pgproto3 read it); see pass.
	received pgproto3.BackendMessage
	frame    []byte
}

type prepared struct {
	// ds is the statement, a slice of one so that every Execute of it
	// shares it (pending.stmts) instead of copying it; replaced, never
	// changed in place.
	ds    []decided
	empty bool // no statement at all
	// pol is the policy that decided it: after a reload its next Execute
	// decides it again (session.redecide).
	pol  *policy.Policy
	name string
	// unknown: the name holds a statement the relay did not see made (a
	// Parse whose answer it dropped, a PREPARE a function ran), or one an
	// SQL PREPARE made, whose ds is that PREPARE (its facts are its
	// body's), decided again after a reload but not the text that runs;
	// prev is what it may hold besides, decided again after a reload
	// (redecideChain).
	unknown bool
	// parse is upstream's answer to the Parse that made it, a candidate
	// for the name until then, and prev what the name held before; both
	// nil once settled (see session.lookup). Guarded by session.mu, as is
	// ds once the statement is in the view.
	parse *parseOutcome
	prev  *prepared
	// seq is when it was made (relayState.seq), for suspect.
	seq uint64
	// charge is what the view is charged for it while it is in it (see
	// relayState.hold); 0 once given back. refs counts what in the view
	// points to it (see relayState.let); the client goroutine's.
	charge int64
	refs   int32
}

// parseOutcome is what became of a forwarded Parse: done once its entry
// left the queue; ok, upstream took it; refused, upstream answered it with
// an error; unknown, the relay dropped the answer (it had refused a result
// earlier in the batch); done alone: skipped after an error in its batch.
type parseOutcome struct {
	done, ok, refused, unknown bool
	// batch is relayState.batch when it was sent: a Bind in the same
	// batch runs it or nothing (upstream skips the rest of a batch after
	// a failed Parse).
	batch uint64
}

type portal struct {
	stmt *prepared // nil: not prepared through the gateway
	// held is what the relay's view held for the name at the Bind, known
	// or not: decided again at an Execute after a reload; name is the
	// statement's name.
	held *prepared
	name string
	// bind is upstream's answer to the portal's Bind (one that fails
	// leaves the portal the name held); pols are the policies in force at
	// the Binds whose portal the name may hold. See
	// session.portalInDoubt.
	bind    *parseOutcome
	pols    []*policy.Policy
	formats []int16
	res     *resultDesc
	runs    uint64 // relayState.runs when it was bound
	charge  int64  // see relayState.rebind
}

// deniedPortal is a portal name whose Bind was denied: batch is
// relayState.batch at the Bind, charge what the view is charged for it
// (see session.denyPortal).
type deniedPortal struct {
	dn     *denial
	batch  uint64
	charge int64
}

// denial is a denied statement remembered by name.
type denial struct {
	resp     *pgproto3.ErrorResponse
	cmd      record.Command
	decision policy.Decision
	charge   int64 // in deniedStmts (see relayState.keepDenied)
}

// runRelay relays until either side ends; it returns why for the
// recording, and an error when the end was not a normal one.
func (c *session) runRelay(fe *pgproto3.Frontend) (string, error) {
	c.relay = relayState{
		stmts:         map[string]*prepared{},
		portals:       map[string]*portal{},
		cursors:       map[string]*cursor{},
		doubtful:      map[string]doubt{},
		deniedStmts:   map[string]*denial{},
		deniedPortals: map[string]deniedPortal{},
		retained:      retainedMemory{limit: c.h.retainedLimit},
	}
	c.mu.Lock()
	c.up = newMsgWriter(c.upConn, errUpstreamWrite)
	c.mu.Unlock()
	c.fe = fe
	c.ur = newServerReader(c.upReader)
	for _, f := range []*frameReader{&c.cr.frames, &c.ur.frames} {
		f.mem, f.ctx = c.h.mem, c.ctx
	}
	if c.h.rewriter != nil {
		c.meta = c.newMetadataConn(c.params)
	}
	c.refreshPolicy()

	c.mu.Lock()
	upConn := c.upConn
	c.mu.Unlock()
	upDone := make(chan error, 1)
	c.wake, c.upEnded = make(chan struct{}, 1), make(chan struct{})
	go func() {
		err := c.upstreamLoop()
		if why, code := gatewayEnded(err); why != "" {
			// The gateway ends the session itself: the client is told
			// why instead of finding its connection closed.
			c.client.queue(errorResponse("FATAL", code, "interlock ended the session: "+why, ""))
		}
		c.endedBy("upstream")
		// Upstream's last words (e.g. a FATAL) go out before the client
		// goroutine, which may wait for upEnded, closes the connection;
		// bounded, as the client may have stopped reading.
		c.clientConn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.client.flush()
		close(c.upEnded)
		// Closing both ends whatever the client goroutine is blocked in;
		// nobody reads upstream any more, so a write there could block
		// for ever.
		c.clientConn.Close()
		upConn.Close()
		upDone <- err
	}()
	cerr := c.clientLoop()
	c.endedBy("client")
	if !errors.Is(cerr, errTerminate) {
		upConn.SetWriteDeadline(time.Now().Add(time.Second))
		c.up.send(&pgproto3.Terminate{})
	}
	upConn.Close()
	// The upstream goroutine may be blocked writing to a client that
	// stopped reading.
	c.clientConn.Close()
	uerr := <-upDone
	c.cr.frames.release()
	c.ur.frames.release()

	if c.ctx.Err() != nil {
		return causeText(context.Cause(c.ctx)), context.Cause(c.ctx)
	}
	c.mu.Lock()
	first := c.ended
	c.mu.Unlock()
	if first == "upstream" && errors.Is(uerr, errClientWrite) && errors.Is(cerr, errUpstreamWrite) {
		// The client went away while the client goroutine waited for
		// upstream (awaitUpstream) or wrote to it: it saw only the upstream
		// goroutine end, on the client's account.
		cerr = uerr
	}
	if (first == "upstream" && !errors.Is(uerr, errClientWrite)) || errors.Is(cerr, errUpstreamWrite) {
		// The side that ended first says why: the upstream goroutine
		// closes the client connection itself, so cerr is an EOF then
		// whatever really happened.
		why := uerr
		if first != "upstream" || why == nil {
			why = cerr
		}
		if eof(why) {
			return "upstream closed the connection", fmt.Errorf("upstream closed the connection: %w", io.EOF)
		}
		return "upstream: " + why.Error(), fmt.Errorf("relaying from upstream: %w", why)
	}
	switch {
	case errors.Is(cerr, errTerminate):
		return "client terminated the session", nil
	case eof(cerr):
		return "client closed the connection", nil
	}
	return "client: " + cerr.Error(), fmt.Errorf("relaying from the client: %w", cerr)
}

// gatewayEnded is why the upstream goroutine's error ends the session on
// the gateway's own account (not a peer's), and the SQLSTATE to tell the
// client; "" when it does not. A result the handler's memory for large
// messages had no room for ends the session: it cannot be skipped without
// the client and upstream disagreeing on what ran.
func gatewayEnded(err error) (string, string) {
	var tl *tooLarge
	switch {
	case errors.Is(err, errUnsafeLexing):
		return errUnsafeLexing.Error(), codeProtocolViolation
	case errors.Is(err, errUpstreamProtocol):
		return "the target sent a message the gateway cannot place", codeProtocolViolation
	case errors.As(err, &tl):
		return fmt.Sprintf("the target sent a message of %d bytes, and interlock's memory for large messages (%d MiB, shared by every session) had no room for it",
			tl.size, tl.limit>>20), codeOutOfMemory
	}
	return "", ""
}

// eof reports an error that only says the peer went away.
func eof(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// endedBy notes which side ended the relay first.
func (c *session) endedBy(side string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended == "" {
		c.ended = side
	}
}

// clientLoop reads and handles the client's messages until an error or
// Terminate.
func (c *session) clientLoop() error {
	for {
		msg, err := c.cr.message()
		if err == nil {
			if err = c.fromClient(msg); err == nil && c.h.handled != nil {
				c.h.handled(c, msg)
			}
		} else if tl, ok := err.(*statementTooLong); ok {
			err = c.tooLong(tl)
		} else if tl, ok := err.(*tooLarge); ok {
			err = c.noRoom(tl)
		} else if cd, ok := err.(*copyDataStream); ok {
			err = c.streamCopyData(cd)
		} else if errors.Is(err, errProtocol) {
			c.fatal(codeProtocolViolation, strings.TrimPrefix(err.Error(), errProtocol.Error()+": "))
		}
		if err != nil {
			return err
		}
		if c.pendingFull() {
			// A large message's share of the memory every session draws on
			// is not kept while waiting: upstream's answers to what came
			// before it may need it.
			c.cr.release()
			if err := c.awaitRoom(); err != nil {
				return err
			}
		}
		// Forward once the client pauses (or a lot is buffered): a
		// pipeline goes upstream in one write, an interactive client's
		// message at once.
		if c.cr.buffered() == 0 || c.up.pending() > flushThreshold {
			if err := c.up.flush(); err != nil {
				return err
			}
		}
	}
}

// upstreamLoop reads and relays upstream's messages until an error.
func (c *session) upstreamLoop() error {
	for {
		msg, err := c.upstreamMessage()
		if err != nil {
			return err
		}
		if err := c.fromUpstream(msg); err != nil {
			return err
		}
		if c.upstreamBuffered() == 0 || c.client.pending() > flushThreshold {
			if err := c.client.flush(); err != nil {
				return err
			}
		}
	}
}

// upstreamMessage reads upstream's next message: first whatever pgconn
// had read ahead when it logged in (through its pgproto3.Frontend), then
// through the relay's own reader, which keeps each message's frame.
func (c *session) upstreamMessage() (pgproto3.BackendMessage, error) {
	c.relay.received, c.relay.frame = nil, nil
	if c.fe != nil {
		if c.fe.ReadBufferLen() > 0 {
			return c.fe.Receive()
		}
		c.fe = nil
	}
	msg, frame, err := c.ur.message()
	if err != nil {
		return nil, err
	}
	c.relay.received, c.relay.frame = msg, frame
	return msg, nil
}

// upstreamBuffered is how much of upstream's output has arrived unread.
func (c *session) upstreamBuffered() int {
	if c.fe != nil {
		return c.fe.ReadBufferLen()
	}
	return c.ur.buffered()
}

// pass queues m for the client. The upstream message being handled goes
// as the bytes it arrived in, not encoded again; anything else (the
// gateway's own messages, a row a mask rewrote: see rewritten) is encoded.
func (c *session) pass(m encoder) error {
	if c.relay.frame != nil && m == encoder(c.relay.received) {
		return c.client.queueFrame(c.relay.frame)
	}
	return c.client.queue(m)
}

// rewritten notes that the upstream message being handled was changed in
// place: its frame no longer says what it holds.
func (c *session) rewritten() { c.relay.frame = nil }

// push appends to the pending queue.
func (c *session) push(p *pending) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pushLocked(p)
}

func (c *session) pushLocked(p *pending) {
	if len(c.pending) == 0 {
		p.startClock()
		if cap(c.pendingArray) > maxKeptPending {
			c.pendingArray = nil // a long pipeline's: not pinned by an idle session
		}
		c.pending = c.pendingArray[:0]
	}
	if p.vetting {
		c.unvetted++
	}
	p.batch = c.relay.batch // the client goroutine's, which pushes
	p.size = pendingOverhead + int64(len(p.text))
	if p.deniedCmd != nil {
		p.size += int64(len(p.deniedCmd.Text))
	}
	c.pendingBytes += p.size
	grows := len(c.pending) == cap(c.pending)
	c.pending = append(c.pending, p)
	if grows {
		c.pendingArray = c.pending
	}
}

// maxKeptPending bounds the pending queue's array kept once it is empty.
const maxKeptPending = 64

// defaultPendingLimit bounds what a session's pending queue holds, and
// pendingOverhead is what an entry counts besides the text it keeps (the
// struct with its slices, about 400 bytes). Every response upstream owes
// has an entry, and a client that pipelines without reading the answers
// (or a slow upstream) would otherwise grow the queue of the one gateway
// process every agent shares; past the limit the client goroutine stops
// reading the client until upstream has answered half of it (awaitRoom),
// as PostgreSQL itself stops reading while it cannot write its answers.
// 64 MiB is about 130,000 entries, more than a driver's pipeline keeps in
// flight before it reads (pgx reads while it writes a large batch).
const (
	defaultPendingLimit = 64 << 20
	pendingOverhead     = 512
)

// head is the oldest pending entry, or nil.
func (c *session) head() *pending {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return nil
	}
	return c.pending[0]
}

// relayAndPop queues m for the client and then removes the oldest pending
// entry. In this order: once the queue is empty the client goroutine may
// answer a denial itself, and its answer must come after m.
func (c *session) relayAndPop(m encoder) error {
	err := c.pass(m)
	c.pop()
	return err
}

// pop removes the oldest pending entry.
func (c *session) pop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.popLocked()
}

func (c *session) popLocked() *pending {
	if len(c.pending) == 0 {
		return nil
	}
	p := c.pending[0]
	c.pending[0] = nil
	c.pending = c.pending[1:]
	c.pendingBytes -= p.size
	if c.roomWanted && c.pendingBytes <= c.h.pendingLimit/2 {
		c.roomWanted = false
		c.wakeLocked()
	}
	if p.parsed != nil {
		p.parsed.parse.done = true
	}
	if p.bindOf != nil {
		p.bindOf.done = true
	}
	for _, ps := range p.prepares {
		if ps != nil {
			ps.parse.done = true
		}
	}
	if p.deniedCmd != nil {
		c.record(*p.deniedCmd)
		p.deniedCmd = nil
	}
	if len(c.pending) > 0 {
		c.pending[0].startClock()
	} else if c.idleWanted {
		c.idleWanted = false
		c.wakeLocked()
	}
	return p
}

// startClock notes that upstream is working on p now, for the duration of
// a statement. Only statements are timed: a clock read costs tens of ns on
// a virtual machine, and a pipelined statement is several entries.
func (p *pending) startClock() {
	if p.kind == pendQuery || p.kind == pendExecute {
		p.started = time.Now()
	}
}

// forward queues msgs upstream, pushing p first when it is not nil.
func (c *session) forward(p *pending, msgs ...encoder) error {
	if p != nil {
		p.copyEnds = c.relay.copyEnds
		c.push(p)
	}
	for _, m := range msgs {
		switch m.(type) {
		case *pgproto3.Execute:
			c.relay.inBatch, c.relay.ranInBatch = true, true
			c.relay.runs++
		case *pgproto3.Bind:
			// Planning at Bind may run code too (an IMMUTABLE function
			// folded into the plan).
			c.relay.inBatch, c.relay.ranInBatch = true, true
			c.relay.runs++
		case *pgproto3.Parse, *pgproto3.Describe, *pgproto3.Close:
			c.relay.inBatch = true
		case *pgproto3.Sync:
			c.relay.inBatch, c.relay.ranInBatch = false, false
			c.relay.runs++
		case *pgproto3.Query:
			c.relay.runs++
		case *pgproto3.CopyDone, *pgproto3.CopyFail:
			c.relay.copyEnds++
		}
	}
	return c.up.queue(msgs...)
}

// fromClient handles one client message.
func (c *session) fromClient(msg pgproto3.FrontendMessage) error {
	r := &c.relay
	c.dropReleased()
	if f := c.failedBatch.Load(); f != 0 && f-1 == r.batch && !r.discard {
		// Upstream failed this batch and skips the rest of it, answering
		// nothing up to its Sync: forwarded, each message would wait in
		// the pending queue, which a client that sends no Sync would make
		// grow without end (an entry of hundreds of bytes, a Query's whole
		// text, for an Execute of ten).
		r.discard, r.localSync = true, false
	}
	if r.discard {
		switch m := msg.(type) {
		case *pgproto3.Sync:
			r.discard = false
			if r.localSync {
				r.localSync = false
				c.mu.Lock()
				status := c.txStatus
				c.mu.Unlock()
				return c.client.send(&pgproto3.ReadyForQuery{TxStatus: status})
			}
			// After a refused result (which skips its batch too), the
			// failing statement goes first (see sync).
			return c.sync(m)
		case *pgproto3.Terminate:
			return c.terminate()
		}
		return nil
	}
	switch msg.(type) {
	case *pgproto3.Query, *pgproto3.Parse, *pgproto3.Bind, *pgproto3.Describe, *pgproto3.Execute:
		// What decides them: a reload applies from the next message on.
		c.refreshPolicy()
	}
	if name, long := longName(msg); long {
		d := policy.Decision{Action: policy.Deny, Rule: GuardRule, Message: fmt.Sprintf(
			"interlock refuses prepared statement and portal names longer than %d bytes (PostgreSQL tells names apart by their first %[1]d only)", maxNameLen)}
		c.count(d)
		return c.refuse(denialResponse(d, codeNameTooLong, 0), true, deniedCommand(fmt.Sprintf("(%T naming %.80q…)", msg, name), sqlfacts.Statement{}, d))
	}
	switch m := msg.(type) {
	case *pgproto3.Query:
		return c.query(m)
	case *pgproto3.Parse:
		return c.parse(m)
	case *pgproto3.Bind:
		return c.bind(m)
	case *pgproto3.Describe:
		return c.describe(m)
	case *pgproto3.Execute:
		return c.execute(m)
	case *pgproto3.Close:
		if m.ObjectType == 'S' {
			// The view keeps the statement until upstream answers the
			// Close (it may skip it after an error; a Bind of a name
			// closed upstream fails there).
			r.forgetDenied(m.Name)
			p := &pending{kind: pendClose}
			if ps := r.stmts[m.Name]; ps != nil {
				p.releases = []*release{{ps: ps}}
			}
			return c.forward(p, m)
		}
		p := &pending{kind: pendClose}
		if rel := c.doubtPortal(m.Name); rel != nil { // before the portal is forgotten
			p.releases = []*release{rel}
		}
		r.dropPortal(m.Name)
		r.forgetDeniedPortal(m.Name)
		return c.forward(p, m)
	case *pgproto3.Sync:
		if c.inCopyIn() {
			// Upstream ignores a Sync in copy-in mode: it gets no
			// ReadyForQuery to wait for.
			return c.forward(nil, m)
		}
		return c.sync(m)
	case *pgproto3.Flush:
		if err := c.forward(nil, m); err != nil {
			return err
		}
		return c.up.flush()
	case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
		// Only meaningful during a COPY FROM STDIN the policy allowed;
		// outside one PostgreSQL ignores them.
		return c.forward(nil, msg)
	case *pgproto3.FunctionCall:
		return c.functionCall(m)
	case *pgproto3.Terminate:
		return c.terminate()
	}
	return fmt.Errorf("%w: unexpected message %T", errProtocol, msg)
}

// maxNameLen is PostgreSQL's longest name (NAMEDATALEN - 1): it keeps
// prepared statements and portals by that many bytes of their names.
const maxNameLen = 63

// longName reports an extended-protocol message naming a statement or
// portal by more than maxNameLen bytes: the server would take it for the
// name its first bytes spell, which the relay's view would not.
func longName(msg pgproto3.FrontendMessage) (string, bool) {
	var names []string
	switch m := msg.(type) {
	case *pgproto3.Parse:
		names = []string{m.Name}
	case *pgproto3.Bind:
		names = []string{m.PreparedStatement, m.DestinationPortal}
	case *pgproto3.Describe:
		names = []string{m.Name}
	case *pgproto3.Execute:
		names = []string{m.Portal}
	case *pgproto3.Close:
		names = []string{m.Name}
	}
	for _, n := range names {
		if len(n) > maxNameLen {
			return n, true
		}
	}
	return "", false
}

// streamCopyData passes a long CopyData on to upstream as it arrives, or
// reads past it where the relay discards messages (after a denial in its
// batch), as fromClient does with a short one.
func (c *session) streamCopyData(cd *copyDataStream) error {
	if c.relay.discard {
		_, err := io.CopyN(io.Discard, c.cr.br, int64(cd.size))
		return unexpectedEOF(err)
	}
	return c.up.stream('d', c.cr.br, cd.size)
}

// inCopyIn reports that upstream is in a COPY FROM STDIN the client has not
// ended yet (no CopyDone or CopyFail forwarded since it began).
func (c *session) inCopyIn() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.copyIn && c.relay.copyEnds == c.copyInAt && len(c.pending) > 0 &&
		(c.pending[0].kind == pendQuery || c.pending[0].kind == pendExecute) && c.pending[0].copyEnds == c.copyInAt
}

// sync forwards a Sync, which ends the batch: upstream commits an implicit
// transaction at it. When the rewriter may still refuse a result of the
// batch, the Sync waits until it has decided (awaitVetting); after a
// refusal a statement that always fails goes first, so that upstream fails
// the batch as the client was told it failed: the statements pipelined
// after the refused one ran, but their implicit transaction rolls back
// (an explicit one is aborted, as the client sees it).
func (c *session) sync(m *pgproto3.Sync) error {
	refused, err := c.awaitVetting()
	if err != nil {
		return err
	}
	if refused {
		// Its ErrorResponse is dropped with everything else up to
		// ReadyForQuery: the client has the refusal already.
		if err := c.forward(nil, &pgproto3.Parse{Name: deniedStatementName, Query: failingSQL}); err != nil {
			return err
		}
	}
	c.relay.batch++
	return c.forward(&pending{kind: pendSync}, m)
}

// awaitVetting waits until no pending result may still be refused, and
// reports (and clears) whether one was refused since the last Sync.
func (c *session) awaitVetting() (refused bool, err error) {
	return c.awaitUpstream(awaitForVetting)
}

// pendingFull reports whether the pending queue holds more than
// Handler.pendingLimit.
func (c *session) pendingFull() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pendingBytes > c.h.pendingLimit
}

// awaitRoom waits until upstream has answered the pending queue down to
// half of Handler.pendingLimit (see defaultPendingLimit), reading nothing
// more from the client meanwhile.
func (c *session) awaitRoom() error {
	_, err := c.awaitUpstream(awaitForRoom)
	return err
}

// awaitIdle waits until upstream owes nothing: it has answered everything
// forwarded so far, and the ParameterStatus of any setting that changed
// meanwhile has been checked (PostgreSQL reports changes with the
// ReadyForQuery that follows them).
func (c *session) awaitIdle() error {
	_, err := c.awaitUpstream(awaitForIdle)
	return err
}

// awaitFor is what awaitUpstream waits for.
type awaitFor int

const (
	awaitForVetting awaitFor = iota // no result may still be refused
	awaitForIdle                    // upstream owes nothing
	awaitForRoom                    // the pending queue has room (awaitRoom)
)

// awaitUpstream waits until what w names holds (and, for vetting, reports
// whether a result was refused); the upstream goroutine wakes the client
// goroutine when that may have changed. Upstream holds its output until a
// Sync or a Flush, so the relay sends a Flush before it waits. Waits for
// idle or room end when upstream failed the batch: it answers nothing
// more before the Sync, which the client goroutine has yet to read.
func (c *session) awaitUpstream(w awaitFor) (refused bool, err error) {
	what := "a result was being checked"
	switch w {
	case awaitForIdle:
		what = "its earlier statements were finishing"
	case awaitForRoom:
		what = "its pipeline was being answered"
	}
	flushed := false
	for {
		c.mu.Lock()
		var ok bool
		switch w {
		case awaitForIdle:
			c.idleWanted = len(c.pending) > 0 && !c.upstreamFailed
			ok = !c.idleWanted
		case awaitForRoom:
			// Upstream answers nothing the relay pops before the Sync of
			// a failed (or refused) batch, or before the end of a COPY FROM
			// STDIN, while the client goroutine has yet to read them:
			// never wait then. Once it has, upstream answers on.
			failed := c.failedBatch.Load()
			c.roomWanted = c.pendingBytes > c.h.pendingLimit/2 && (failed == 0 || failed-1 != c.relay.batch) &&
				!(c.copyIn && c.relay.copyEnds == c.copyInAt)
			ok = !c.roomWanted
		default:
			if ok = c.unvetted == 0; ok {
				refused = c.refusedInBatch
				c.refusedInBatch = false
			}
		}
		c.mu.Unlock()
		if ok {
			return refused, nil
		}
		if !flushed {
			flushed = true
			if err := c.forward(nil, &pgproto3.Flush{}); err != nil {
				return false, err
			}
			if err := c.up.flush(); err != nil {
				return false, err
			}
		}
		select {
		case <-c.wake:
		case <-c.upEnded:
			return false, fmt.Errorf("%w: upstream ended while %s", errUpstreamWrite, what)
		case <-c.ctx.Done():
			return false, context.Cause(c.ctx)
		}
	}
}

// vet settles a vetting Execute: its result was accepted, refused, or
// will not come. The upstream goroutine's: once an entry is pushed only
// that goroutine changes its vetting, so it reads it without the lock and
// an Execute that was never vetting costs no locking here.
func (c *session) vet(p *pending, refused bool) {
	if !p.vetting {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.vetLocked(p, refused)
}

func (c *session) vetLocked(p *pending, refused bool) {
	if p == nil || !p.vetting {
		return
	}
	p.vetting = false
	c.unvetted--
	if refused {
		c.refusedInBatch = true
	}
	c.wakeLocked()
}

// wakeLocked wakes the client goroutine if it waits.
func (c *session) wakeLocked() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// failedLocked notes that upstream failed the batch and skips what the
// client sent after the error up to the Sync: nothing more runs before
// it, and awaitIdle need not wait for that Sync (which the client goroutine
// may not have read yet).
func (c *session) failedLocked(p *pending) {
	c.upstreamFailed = true
	c.failedBatch.Store(p.batch + 1)
	if c.idleWanted {
		c.idleWanted = false
		c.wakeLocked()
	}
	c.wakeRoomLocked()
}

// wakeRoomLocked wakes the client goroutine waiting in awaitRoom, to look
// again: upstream will answer nothing more before the client's next
// messages (a failed batch's Sync, a COPY's data).
func (c *session) wakeRoomLocked() {
	if c.roomWanted {
		c.roomWanted = false
		c.wakeLocked()
	}
}

// vetAllLocked settles every vetting entry: upstream failed the batch,
// so it answers none of them before ReadyForQuery.
func (c *session) vetAllLocked() {
	for _, p := range c.pending {
		if p.kind == pendSync {
			break // a later batch's results are still to come and be checked
		}
		c.vetLocked(p, false)
	}
}

func (c *session) terminate() error {
	c.endedBy("client") // before upstream, told to, closes
	c.mu.Lock()
	upConn := c.upConn
	c.mu.Unlock()
	upConn.SetWriteDeadline(time.Now().Add(time.Second))
	c.up.send(&pgproto3.Terminate{})
	return errTerminate
}

// fromUpstream handles one upstream message.
func (c *session) fromUpstream(msg pgproto3.BackendMessage) error {
	switch m := msg.(type) {
	case *pgproto3.ParameterStatus:
		if unsafeParameterStatus(m.Name, m.Value) {
			// Something changed how the server reads SQL (a path the
			// guard did not see): the gateway can no longer decide what
			// runs, so the session ends.
			return fmt.Errorf("%w: upstream reports %s=%s", errUnsafeLexing, m.Name, m.Value)
		}
		c.maskText(&m.Value)
		return c.pass(msg)
	case *pgproto3.NoticeResponse:
		maskNoticeFields((*pgproto3.ErrorResponse)(m), c.maskText)
		return c.pass(msg)
	case *pgproto3.NotificationResponse:
		c.maskText(&m.Payload)
		return c.pass(msg)
	case *pgproto3.ReadyForQuery:
		return c.readyForQuery(m)
	case *pgproto3.ErrorResponse:
		return c.upstreamError(m)
	}
	if c.relay.dropUntilReady {
		if _, ok := msg.(*pgproto3.CopyInResponse); ok {
			// Upstream waits for data the client will never send.
			return c.up.send(&pgproto3.CopyFail{Message: "interlock refused an earlier result of this pipeline"})
		}
		return nil
	}
	p := c.head()
	if p != nil && p.bound != nil {
		c.resolveRan(p) // before its results are masked or recorded
	}
	if p == nil {
		return fmt.Errorf("%w: %T with nothing pending", errUpstreamProtocol, msg)
	}
	switch m := msg.(type) {
	case *pgproto3.ParseComplete:
		if p.kind == pendParse {
			if p.parsed != nil {
				c.mu.Lock()
				p.parsed.parse.ok = true
				c.mu.Unlock()
			}
			return c.relayAndPop(m)
		}
	case *pgproto3.BindComplete:
		if p.kind == pendBind {
			if p.bindOf != nil {
				c.mu.Lock()
				p.bindOf.ok = true
				c.mu.Unlock()
			}
			return c.relayAndPop(m)
		}
	case *pgproto3.CloseComplete:
		if p.kind == pendClose {
			if len(p.releases) == 1 {
				c.releaseLater(*p.releases[0])
			}
			return c.relayAndPop(m)
		}
	case *pgproto3.ParameterDescription:
		if p.kind == pendDescribe {
			return c.client.queue(parameterDescription(m.ParameterOIDs))
		}
	case *pgproto3.RowDescription:
		switch p.kind {
		case pendDescribe:
			if p.res != nil {
				p.res.rd = c.keepRowDescription(m)
			}
			return c.relayAndPop(m)
		case pendInjectedDescribe:
			p.res.rd = c.keepRowDescription(m)
			c.pop() // swallowed: nothing for the client, nothing to order
			return nil
		case pendQuery:
			p.rows = 0
			if rw := p.rw; rw != nil {
				if err := rw.Describe(m, fieldFormats(m)); err != nil {
					return c.refuseResult(p, err)
				}
			}
			return c.pass(m)
		}
	case *pgproto3.NoData:
		switch p.kind {
		case pendDescribe:
			return c.relayAndPop(m)
		case pendInjectedDescribe:
			c.pop() // swallowed
			return nil
		}
	case *pgproto3.DataRow:
		if p.kind == pendQuery || p.kind == pendExecute {
			return c.dataRow(p, m)
		}
	case *pgproto3.CommandComplete:
		switch p.kind {
		case pendQuery:
			if p.idx >= len(p.stmts) {
				// More results than statements the gateway read and
				// decided: the server read the text differently. It ran
				// already; the session ends, saying so.
				return fmt.Errorf("%w: it ran more statements than the gateway read in one query (%s)", errUnsafeLexing, m.CommandTag)
			}
			c.endStatement(p, string(m.CommandTag), "")
			if p.refused {
				p.refused = false
				return nil
			}
			return c.pass(m)
		case pendExecute:
			c.endStatement(p, string(m.CommandTag), "")
			return c.relayAndPop(m)
		}
	case *pgproto3.EmptyQueryResponse:
		switch p.kind {
		case pendQuery:
			return c.pass(m)
		case pendExecute:
			c.vet(p, false)
			return c.relayAndPop(m)
		}
	case *pgproto3.PortalSuspended:
		if p.kind == pendExecute {
			c.endStatement(p, "", "")
			return c.relayAndPop(m)
		}
	case *pgproto3.CopyInResponse:
		if p.kind == pendQuery || p.kind == pendExecute {
			c.mu.Lock()
			c.copyIn, c.copyInAt = true, p.copyEnds
			c.wakeRoomLocked() // the COPY's entry waits for the client
			c.mu.Unlock()
			c.vet(p, false) // COPY FROM: nothing to mask
			return c.pass(m)
		}
	case *pgproto3.CopyOutResponse:
		if p.kind == pendQuery || p.kind == pendExecute {
			return c.copyOut(p, m)
		}
	case *pgproto3.CopyData:
		if p.kind == pendQuery || p.kind == pendExecute {
			if p.refused {
				return nil
			}
			if rw := p.rw; rw != nil {
				if hits := rw.CopyData(m); len(hits) > 0 {
					p.addMasked(hits)
					c.rewritten()
				}
			}
			return c.pass(m)
		}
	case *pgproto3.CopyDone:
		if p.kind == pendQuery || p.kind == pendExecute {
			if p.refused {
				return nil
			}
			return c.pass(m)
		}
	}
	return fmt.Errorf("%w: %T while waiting for the response to %s", errUpstreamProtocol, msg, p.kind)
}

// readyForQuery ends a Query or a Sync. Entries still ahead of it are
// messages upstream discarded after an error.
func (c *session) readyForQuery(m *pgproto3.ReadyForQuery) error {
	err := c.pass(m)
	afterError, dropWhy, skipped := c.relay.dropUntilReady, c.relay.dropWhy, c.relay.dropSkipped
	c.relay.dropUntilReady, c.relay.dropWhy, c.relay.dropSkipped = false, "", false
	// Statements that got no result of their own: the rest of a query
	// after a failed one, Executes upstream skipped (or whose results the
	// relay dropped) after an error in their batch. They were decided and
	// counted; the log says what became of them, written once the lock is
	// released (with strict recording a write is an fsync).
	type outcomeless struct {
		p   *pending
		why string
	}
	var unrun []outcomeless
	var answered *pending // the Sync or Query m answers
	c.mu.Lock()
	c.txStatus = m.TxStatus
	c.upstreamFailed = false
	c.failedBatch.Store(0)
	// The batch ended: a refusal in it is settled (a Sync after it got the
	// failing statement; a Query, which also ends a batch, did not need it).
	c.refusedInBatch = false
	for len(c.pending) > 0 {
		if p := c.pending[0]; afterError && !skipped {
			// Its answer was dropped after a refused result, which
			// upstream did not know of: it may have taken it.
			if p.parsed != nil {
				p.parsed.parse.unknown = true
			}
			for _, ps := range p.prepares {
				if ps != nil && !ps.parse.ok {
					ps.parse.unknown = true
				}
			}
		}
		p := c.popLocked()
		answered = p
		c.vetLocked(p, false)
		switch {
		case afterError && (p.kind == pendQuery || p.kind == pendExecute):
			unrun = append(unrun, outcomeless{p, cmp.Or(dropWhy, "not run: its batch failed")})
		case p.kind == pendQuery && p.idx < len(p.stmts):
			unrun = append(unrun, outcomeless{p, "not run: an earlier statement of its query failed"})
		}
		if p.kind == pendSync && c.copyIn && p.copyEnds == c.copyInAt &&
			len(c.pending) > 0 && c.pending[0].kind == pendSync {
			// Forwarded during the COPY FROM STDIN (libpq sends one right
			// after the Execute), which upstream ignores in copy-in mode:
			// the Sync that ended the COPY's batch comes next.
			continue
		}
		if p.kind == pendSync {
			break
		}
		// After an extended-protocol error upstream ignores a Query
		// too: only a Sync ends the error state.
		if !afterError && (p.kind == pendQuery || (p.kind == pendDenied && p.simple)) {
			break
		}
	}
	// A COPY ends by the ReadyForQuery of its query or batch at the latest.
	c.copyIn = false
	c.mu.Unlock()
	if m.TxStatus == 'I' && answered != nil {
		// No transaction open: it ended, and with it every portal upstream
		// made before the message m answers (protocol portals are never
		// holdable). Those the client sent after it, pipelined, are not
		// of an earlier batch than answered and stay (see dropEnded). 'T'
		// and 'E' keep them: a block's portals last until its COMMIT or
		// ROLLBACK, whose answer says 'I'.
		c.relay.txEnded.Store(answered.batch)
	}
	for _, u := range unrun {
		// Recorded as what the client asked to run (nothing ran, or the
		// relay did not see what).
		c.recordOutcomeless(u.p, u.why, false)
	}
	return err
}

// upstreamError places an ErrorResponse.
func (c *session) upstreamError(m *pgproto3.ErrorResponse) error {
	if c.relay.dropUntilReady {
		return nil
	}
	maskNoticeFields(m, c.maskText)
	p := c.head()
	if p != nil && p.bound != nil {
		c.resolveRan(p)
	}
	if p == nil {
		// Not an answer: e.g. an administrator ended the backend.
		return c.pass(m)
	}
	switch p.kind {
	case pendQuery:
		if p.refused {
			// The client already has the refusal of this result.
			p.refused = false
			c.endStatement(p, "", p.refusalErr+"; then: "+m.Message)
			return nil
		}
		c.endStatement(p, "", m.Message)
		return c.pass(m)
	case pendDenied:
		if p.simple {
			if p.denial == nil {
				return c.pass(m)
			}
			resp := p.denial
			p.denial = nil // ReadyForQuery follows and pops the entry
			return c.client.queue(resp)
		}
		c.relay.dropUntilReady, c.relay.dropSkipped = true, true
		c.relay.dropWhy = "not run: an earlier statement of its batch was denied"
		c.mu.Lock()
		c.vetAllLocked()
		c.failedLocked(p)
		c.mu.Unlock()
		return c.relayAndPop(p.denial)
	case pendSync:
		// The implicit COMMIT at Sync failed; ReadyForQuery follows.
		return c.pass(m)
	}
	// An extended-protocol message failed: upstream now ignores everything
	// up to the next Sync.
	switch {
	case p.kind == pendExecute:
		c.endStatement(p, "", m.Message)
	case p.kind == pendParse && p.parsed != nil:
		c.mu.Lock()
		p.parsed.parse.refused = true
		c.mu.Unlock()
	}
	c.relay.dropSkipped = true
	c.relay.dropUntilReady = true
	c.relay.dropWhy = "not run: an earlier message of its batch failed (" + m.Message + ")"
	c.mu.Lock()
	c.vetAllLocked()
	c.failedLocked(p)
	c.mu.Unlock()
	return c.relayAndPop(m)
}

// maskText runs the rewriter over text fields of the upstream message
// being handled (see ResultRewriter.Text), and counts what it masked.
func (c *session) maskText(fields ...*string) {
	rw := c.textRewriter.Load()
	if rw == nil {
		return
	}
	for _, f := range fields {
		if *f == "" {
			continue
		}
		v, hits := rw.Text(*f)
		if len(hits) == 0 {
			continue
		}
		*f = v
		c.rewritten()
		for rule, n := range hits {
			c.h.commands.Masked(c.s.Target.Name, rule, n)
		}
	}
}

// dataRow relays one row through the rewriter.
func (c *session) dataRow(p *pending, m *pgproto3.DataRow) error {
	if p.refused {
		return nil
	}
	if rw := p.rw; rw != nil {
		if p.kind == pendExecute && !p.described {
			p.described = true
			if p.res == nil || p.res.rd == nil {
				return c.refuseResult(p, errors.New("interlock cannot mask a result whose columns it does not know"))
			}
			if err := rw.Describe(p.res.rd, p.res.resultFormats()); err != nil {
				return c.refuseResult(p, err)
			}
			c.vet(p, false)
		}
		if hits := rw.Row(m); len(hits) > 0 {
			p.addMasked(hits)
			c.rewritten()
		}
	}
	p.rows++
	return c.pass(m)
}

// copyOut starts a COPY TO STDOUT through the rewriter.
func (c *session) copyOut(p *pending, m *pgproto3.CopyOutResponse) error {
	if rw := p.rw; rw != nil {
		if err := rw.CopyOut(m, p.current().stmt); err != nil {
			return c.refuseResult(p, err)
		}
	}
	c.vet(p, false)
	return c.pass(m)
}

// refuseResult tells the client the rewriter refused the result and
// swallows the result. In a simple Query the remaining statements' results
// are relayed as usual; in the extended protocol the client expects
// nothing after an error but ReadyForQuery, so everything up to it is
// dropped (the rest of the pipeline still ran upstream).
func (c *session) refuseResult(p *pending, err error) error {
	p.refusalErr = "result refused: " + err.Error()
	if qerr := c.client.queue(errorResponse("ERROR", codeInsufficientPrivilege, err.Error(), "")); qerr != nil {
		return qerr
	}
	if p.kind == pendQuery {
		p.refused = true
		return nil
	}
	c.mu.Lock()
	c.vetLocked(p, true)
	// The rest of the batch is dropped here up to ReadyForQuery, so its
	// results will not be seen: nothing more to wait for.
	c.vetAllLocked()
	// Nor are its pending entries popped before then: the client goroutine
	// skips the rest of the batch itself, as after upstream's error, and
	// does not wait for room (awaitUpstream) before its Sync.
	c.failedBatch.Store(p.batch + 1)
	c.wakeRoomLocked()
	c.mu.Unlock()
	c.endStatement(p, "", p.refusalErr)
	c.pop() // the refusal is queued already
	c.relay.dropUntilReady = true
	c.relay.dropWhy = "rolled back: it ran, and interlock failed its batch for a result it refused before it"
	return nil
}

// begunAt is the strict-recording Seq of statement i; 0: recorded when it
// ends.
func (p *pending) begunAt(i int) uint64 {
	if p.kind == pendExecute {
		i = 0
	}
	if i < len(p.begun) {
		return p.begun[i]
	}
	return 0
}

// current is the statement running now; zero when unknown.
func (p *pending) current() decided {
	switch {
	case p.kind == pendQuery && p.idx < len(p.stmts):
		return p.stmts[p.idx]
	case p.kind == pendExecute && len(p.stmts) == 1:
		return p.stmts[0]
	}
	return decided{
		stmt:     sqlfacts.Statement{Text: p.text},
		decision: policy.Decision{Action: policy.Allow},
	}
}

func (p *pending) addMasked(hits map[string]int) {
	if len(hits) == 0 {
		return
	}
	if p.masked == nil {
		p.masked = map[string]int{}
	}
	for rule, n := range hits {
		p.masked[rule] += n
	}
}

// releaseLater hands what upstream removed to the client goroutine (see
// dropReleased). The upstream goroutine's.
func (c *session) releaseLater(rel release) {
	c.mu.Lock()
	c.released = append(c.released, rel)
	c.mu.Unlock()
	c.releasedN.Add(1)
}

// dropReleased drops from the view what upstream removed since the last
// call: a driver that prepares every new statement under a new name and
// closes those its cache evicts (pgx, psycopg) must not make the view grow
// for as long as the session lasts, nor one that binds every statement to
// a new portal name (see dropEnded). The client goroutine's, before each
// message.
func (c *session) dropReleased() {
	if ended := c.relay.txEnded.Load(); ended > c.relay.portalsFrom {
		c.relay.dropEnded(ended)
	}
	if c.releasedN.Load() == 0 {
		return
	}
	c.mu.Lock()
	rels := c.released
	c.released = nil
	c.releasedN.Store(0)
	c.mu.Unlock()
	r := &c.relay
	for _, rel := range rels {
		switch {
		case rel.all:
			for name, ps := range r.stmts {
				// DEALLOCATE ALL and DISCARD ALL leave the unnamed
				// statement (run as a Query they replace it anyway).
				if name != "" && ps.seq <= rel.seq {
					delete(r.stmts, name)
					r.let(ps)
				}
			}
		case rel.doubt != "":
			if d, ok := r.doubtful[rel.doubt]; ok && d.gen == rel.doubtGen {
				r.forgetDoubt(rel.doubt)
			}
		case r.stmts[rel.ps.name] == rel.ps:
			delete(r.stmts, rel.ps.name)
			r.let(rel.ps)
		}
	}
}

// dropEnded drops from the view the protocol portals (and denied portal
// names, and doubts about portals) of the batches before ended, whose
// transaction upstream ended (see readyForQuery): a driver that binds
// every statement to a new portal name and never closes them, as
// PostgreSQL needs none closed, must not make the view keep them and the
// statements they were bound from. Those of ended and later batches were
// sent after the message whose answer ended it, pipelined, and stay.
func (r *relayState) dropEnded(ended uint64) {
	from := r.batch
	for name, pt := range r.portals {
		if pt.bind.batch < ended {
			r.dropPortal(name)
		} else {
			from = min(from, pt.bind.batch)
		}
	}
	for name, dp := range r.deniedPortals {
		if dp.batch < ended {
			r.forgetDeniedPortal(name)
		} else {
			from = min(from, dp.batch)
		}
	}
	for name, d := range r.doubtful {
		if d.batch < ended {
			r.forgetDoubt(name)
		} else {
			from = min(from, d.batch)
		}
	}
	r.portalsFrom = from
}

// endStatement records the outcome of the statement running now and moves
// on to the next.
func (c *session) endStatement(p *pending, tag, errMsg string) {
	if p.kind == pendExecute {
		c.vet(p, false) // it ended without a refusal
	}
	d := p.current()
	begun := p.begunAt(p.idx)
	if p.idx < len(p.releases) && p.releases[p.idx] != nil && errMsg == "" && tag != "" {
		c.releaseLater(*p.releases[p.idx])
	}
	if p.idx < len(p.prepares) && p.prepares[p.idx] != nil {
		// An SQL PREPARE's answer: PREPARE is not undone by a rollback,
		// so this settles what the name holds.
		o := p.prepares[p.idx].parse
		c.mu.Lock()
		o.ok = errMsg == "" && tag == "PREPARE"
		o.refused = !o.ok
		c.mu.Unlock()
	}
	if p.kind == pendQuery {
		p.idx++
	}
	cmd := d.command()
	now := time.Now()
	cmd.DurationMS = float64(now.Sub(p.started).Microseconds()) / 1000
	cmd.Rows = rowsOf(tag, p.rows)
	cmd.Tag = tag
	cmd.Error = errMsg
	if p.refusalErr != "" && errMsg == "" {
		cmd.Error = p.refusalErr
	}
	if len(p.masked) > 0 {
		for rule, n := range p.masked {
			cmd.Masked += int64(n)
			cmd.MaskRules = append(cmd.MaskRules, rule)
			c.h.commands.Masked(c.s.Target.Name, rule, n)
		}
		slices.Sort(cmd.MaskRules)
	}
	if begun != 0 {
		// Strict recording: the command is on disk already.
		c.recordResult(record.Result{Of: begun, DurationMS: cmd.DurationMS, Rows: cmd.Rows, Tag: cmd.Tag,
			Error: cmd.Error, Masked: cmd.Masked, MaskRules: cmd.MaskRules})
	} else {
		// Before the result goes to the client: a client that has its
		// result may send its next statement at once, and a denial of that
		// one is recorded by the other goroutine; the log keeps their
		// order.
		c.record(cmd)
	}
	p.started = now // the next statement of a Query runs from here
	p.rows = 0
	p.masked = nil
	p.refusalErr = ""
}

// rowsOf is the row count of a command tag ("SELECT 3", "INSERT 0 2",
// "COPY 5"), or counted when there is no tag (PortalSuspended).
func rowsOf(tag string, counted int64) int64 {
	if tag == "" {
		return counted
	}
	i := strings.LastIndexByte(tag, ' ')
	if i < 0 {
		return 0
	}
	n, err := strconv.ParseInt(tag[i+1:], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// fieldFormats are the result formats of a simple Query's RowDescription:
// text (nil) except for a FETCH from a cursor declared BINARY.
func fieldFormats(m *pgproto3.RowDescription) []int16 {
	var formats []int16
	for i, f := range m.Fields {
		if f.Format != 0 && formats == nil {
			formats = make([]int16, len(m.Fields))
		}
		if formats != nil {
			formats[i] = f.Format
		}
	}
	return formats
}

// keepRowDescription is m, copied out of pgproto3's reused message to be
// kept with a portal. A kept description is never modified, so one equal
// to the last kept is shared: a driver that describes its portal for every
// statement (pgbench -M prepared, libpq's PQexecPrepared) then costs no
// copy per statement.
func (c *session) keepRowDescription(m *pgproto3.RowDescription) *pgproto3.RowDescription {
	if last := c.relay.lastRD; last != nil && slices.EqualFunc(last.Fields, m.Fields, sameField) {
		return last
	}
	c.relay.lastRD = cloneRowDescription(m)
	return c.relay.lastRD
}

func sameField(a, b pgproto3.FieldDescription) bool {
	return bytes.Equal(a.Name, b.Name) && a.TableOID == b.TableOID && a.TableAttributeNumber == b.TableAttributeNumber &&
		a.DataTypeOID == b.DataTypeOID && a.DataTypeSize == b.DataTypeSize && a.TypeModifier == b.TypeModifier &&
		a.Format == b.Format
}

// cloneRowDescription copies a RowDescription out of pgproto3's reused
// message.
func cloneRowDescription(m *pgproto3.RowDescription) *pgproto3.RowDescription {
	out := &pgproto3.RowDescription{Fields: make([]pgproto3.FieldDescription, len(m.Fields))}
	for i, f := range m.Fields {
		f.Name = slices.Clone(f.Name)
		out.Fields[i] = f
	}
	return out
}

// parameterDescription re-encodes a ParameterDescription as PostgreSQL
// wrote it. PostgreSQL prepares statements of more than 65535 parameters
// (only executing them fails) and writes their count truncated to 16
// bits; pgproto3 refuses to encode that, so the relay writes it itself.
type parameterDescription []uint32

func (oids parameterDescription) Encode(dst []byte) ([]byte, error) {
	n := 4 + 2 + 4*len(oids)
	if n > maxMessage {
		return nil, errors.New("parameter description too long")
	}
	dst = append(dst, 't')
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(oids)))
	for _, oid := range oids {
		dst = binary.BigEndian.AppendUint32(dst, oid)
	}
	return dst, nil
}
