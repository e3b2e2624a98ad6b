package postgres

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
	"github.com/interlock-dev/interlock/record"
)

// Upstream TLS modes of [Target.TLS].
const (
	TLSDisable    = "disable"
	TLSRequire    = "require"
	TLSVerifyFull = "verify-full"
)

// Target is how the gateway reaches one configured PostgreSQL target.
type Target struct {
	Name string
	// User is the upstream login.
	User string
	// PasswordFile holds the upstream password; it is read for every new
	// session, so a rotated password takes effect without a restart. A
	// trailing newline is trimmed. Empty: log in without a password.
	PasswordFile string
	// Database, when set, is the upstream database every session uses;
	// otherwise the one the client asked for.
	Database string
	// TLS toward upstream: disable, require (encrypted, not verified) or
	// verify-full (default).
	TLS string
	// CAFile is the PEM bundle verify-full trusts; empty: the system roots.
	CAFile string
	// ServerName is the name verify-full checks; empty: the dialled IP.
	ServerName string
	// AgentTLS answers an agent's SSLRequest with 'S' and a certificate
	// the CA mints for the dialled address; false answers 'N'.
	AgentTLS bool
}

// Policy decides statements and says what to mask: a *policy.Policy, or a
// *policy.Live, whose reloads open sessions follow (from their next
// Query, Parse, Bind, Describe or Execute; a statement prepared before a
// reload is decided again when it is next bound, described or executed).
type Policy interface {
	// SQLDecisions decides one session's statements; the session's base
	// request carries its target, workload and identity. The session asks
	// it for the policy to mask with (SQLDecisions.Refresh).
	SQLDecisions(base policy.Request) *policy.SQLDecisions
}

// Classifier turns SQL text into the facts policy decides on.
type Classifier interface {
	Classify(sql string) ([]sqlfacts.Statement, error)
}

// Recordings creates a session's event log; *record.Store is one.
type Recordings interface {
	Create(id string, start record.Start, now time.Time) (*record.Recorder, error)
}

// AgentCA mints the agent-facing TLS certificates; *tlsca.CA is one.
type AgentCA interface {
	ServerConfig(fallback string) *tls.Config
}

// ResultRewriter rewrites result messages from upstream before they reach
// the client. The handler calls it from one goroutine per session.
type ResultRewriter interface {
	// Describe announces the columns of the rows that follow: a simple
	// query's RowDescription, or the description of the portal an Execute
	// runs. formats are the result format codes in effect (from the Bind;
	// nil, all text, for a simple query). An error refuses the result: the
	// client gets an ErrorResponse 42501 with the error's text and none of
	// the result's rows.
	Describe(rd *pgproto3.RowDescription, formats []int16) error
	// Row rewrites a DataRow in place and returns how many values each
	// mask rule rewrote.
	Row(dr *pgproto3.DataRow) map[string]int
	// CopyOut starts a COPY TO STDOUT of stmt; an error refuses it like
	// Describe does.
	CopyOut(resp *pgproto3.CopyOutResponse, stmt sqlfacts.Statement) error
	// CopyData rewrites one row of a COPY TO STDOUT in place.
	CopyData(d *pgproto3.CopyData) map[string]int
	// Text rewrites text upstream sends outside a result, where a value
	// a statement read can come back too: an error's or notice's fields
	// (`SELECT ssn::int` puts the value in the error), a notification's
	// payload, a reported setting's value. It returns the text and how
	// many values each mask rule rewrote (none: s itself).
	Text(s string) (string, map[string]int)
	// MayRefuse reports whether Describe or CopyOut could refuse the
	// result of stmt executed with these result formats (the statement
	// is empty when unknown). For such an Execute the relay holds its
	// batch's Sync until the result is accepted or refused, so that a
	// refusal fails the batch upstream too; false must be certain.
	MayRefuse(stmt sqlfacts.Statement, formats []int16) bool
}

// Catalogue answers a ResultRewriter's questions about upstream's
// catalogue, on a connection of its own logged in with the target's
// credentials: opened on first use, shared by the sessions of the same
// target, destination and database, and closed Options.MetadataIdle after
// the last of them.
type Catalogue interface {
	// Query runs a query and returns its rows as text, NULL as "".
	// Arguments are sent as text parameters $1, $2, ... A query must not
	// depend on the session's settings (search_path): qualify every name.
	Query(ctx context.Context, sql string, args ...any) ([][]string, error)
	// Table describes the table with this OID; its Name is "" when there
	// is none (OID 0: a computed column; or a table the catalogue
	// connection cannot see, such as one created by a transaction not yet
	// committed). Answers are shared by the sessions of the connection and
	// trusted for a minute (tableNameTTL).
	Table(ctx context.Context, oid uint32) (Table, error)
}

// Table is what a Catalogue knows of one table (or view, or other
// relation a result column can come from).
type Table struct {
	// Name is "schema.table".
	Name string
	// Columns by attribute number: Columns[n-1] is attribute n. A dropped
	// column's Name is "".
	Columns []TableColumn
	// Ancestors are the "schema.table" names of the tables this one
	// inherits from or is a partition of, and of theirs, recursively: a
	// mask of a parent's column covers its children's and partitions'.
	Ancestors []string
}

// TableColumn is one column of a Table.
type TableColumn struct {
	Name string
	// Type is the column's type OID; a domain's base type, as a
	// RowDescription reports it.
	Type uint32
	// Generated columns are not part of a COPY without a column list.
	Generated bool
}

// Options configure a [Handler].
type Options struct {
	// Targets by proxy.Target.ID.
	Targets    map[uint32]Target
	Policy     Policy
	Classifier Classifier
	Recordings Recordings
	// CA is required when any target has AgentTLS.
	CA AgentCA
	// Commands may be nil.
	Commands *proxy.CommandMetrics
	// Logger defaults to discarding; sessions log to Session.Logger.
	Logger *slog.Logger
	// Rewriter, when set, is asked once per session for the session's
	// ResultRewriter (nil: results pass unchanged).
	Rewriter func(s *proxy.Session, m *policy.Masker, cat Catalogue) ResultRewriter
	// Login verifies and binds the OIDC token a caller that needs a login
	// gives as its password; nil refuses such callers.
	Login proxy.LoginFunc
	// Reviewer holds statements a review rule matches until a human
	// decides; nil denies them.
	Reviewer proxy.Reviewer
	// MetadataIdle is how long the catalogue connection masking uses stays
	// open after the last session using it ended, for the next one: 0 is
	// 30 s, a negative value closes it with that session.
	MetadataIdle time.Duration
	// LargeMessageMemory bounds the bytes the sessions hold at once in
	// messages over 1 MiB (result values, Bind parameters, statements): one
	// that does not fit waits up to 10 s, then is refused (a client's) or
	// ends its session (a result); one larger than the whole budget is
	// refused at once. 0 is DefaultLargeMessageMemory.
	LargeMessageMemory int64
	// RetainedStatementMemory bounds, per session, the bytes its prepared
	// statements (protocol Parse, SQL PREPARE), denied statement names,
	// cursors and a transaction's portals keep in the gateway (their
	// texts, up to 16 MiB each, stay until the session closes them): a
	// Parse, PREPARE, DECLARE or Bind of a named portal that would go
	// over it is refused (53200) and the session goes on. Each costs
	// about 512 bytes besides its text, so the budget bounds their
	// number too. 0 is DefaultRetainedStatementMemory.
	RetainedStatementMemory int64
}

// validate checks o and fills its defaults.
func (o *Options) validate() error {
	if o.Policy == nil {
		return errors.New("no policy")
	}
	if o.Classifier == nil {
		return errors.New("no SQL classifier")
	}
	if o.Recordings == nil {
		return errors.New("no recordings store")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MetadataIdle == 0 {
		o.MetadataIdle = defaultMetadataIdle
	}
	switch {
	case o.LargeMessageMemory == 0:
		o.LargeMessageMemory = DefaultLargeMessageMemory
	case o.LargeMessageMemory < largeMessage:
		return fmt.Errorf("large message memory of %d bytes is below the %d bytes of one large message", o.LargeMessageMemory, largeMessage)
	}
	switch {
	case o.RetainedStatementMemory == 0:
		o.RetainedStatementMemory = DefaultRetainedStatementMemory
	case o.RetainedStatementMemory < 0:
		return fmt.Errorf("retained statement memory of %d bytes is negative", o.RetainedStatementMemory)
	}
	targets := make(map[uint32]Target, len(o.Targets))
	for id, t := range o.Targets {
		if t.Name == "" {
			return fmt.Errorf("target %d: no name", id)
		}
		if t.User == "" {
			return fmt.Errorf("target %q: no upstream user", t.Name)
		}
		if t.TLS == "" {
			t.TLS = TLSVerifyFull
		}
		switch t.TLS {
		case TLSDisable, TLSRequire, TLSVerifyFull:
		default:
			return fmt.Errorf("target %q: upstream tls %q is not disable, require or verify-full", t.Name, t.TLS)
		}
		if t.CAFile != "" && t.TLS != TLSVerifyFull {
			return fmt.Errorf("target %q: a CA file is used only with verify-full", t.Name)
		}
		if t.AgentTLS && o.CA == nil {
			return fmt.Errorf("target %q: agent TLS needs a CA", t.Name)
		}
		targets[id] = t
	}
	o.Targets = targets
	return nil
}

// Handler is the PostgreSQL protocol engine: a [proxy.Handler].
type Handler struct {
	targets    map[uint32]Target
	policy     Policy
	classifier Classifier
	recordings Recordings
	ca         AgentCA
	commands   *proxy.CommandMetrics
	log        *slog.Logger
	rewriter   func(s *proxy.Session, m *policy.Masker, cat Catalogue) ResultRewriter
	login      proxy.LoginFunc
	reviewer   proxy.Reviewer

	cancels cancelRegistry
	meta    metaPool       // catalogue connections shared by sessions
	mem     *messageMemory // held by large messages, across sessions
	// retainedLimit is each session's RetainedStatementMemory.
	retainedLimit int64
	// pendingLimit bounds what a session's pending queue holds (see
	// session.awaitRoom); tests lower it.
	pendingLimit int64
	// handled, when set (a test seam), is called by a session's client
	// goroutine after each client message it handled without an error.
	handled func(c *session, msg pgproto3.FrontendMessage)
}

var _ proxy.Handler = (*Handler)(nil)

// New checks o and returns a Handler.
func New(o Options) (*Handler, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("creating postgres handler: %w", err)
	}
	return &Handler{
		targets:    o.Targets,
		policy:     o.Policy,
		classifier: o.Classifier,
		recordings: o.Recordings,
		ca:         o.CA,
		commands:   o.Commands,
		log:        o.Logger,
		rewriter:   o.Rewriter,
		login:      o.Login,
		reviewer:   o.Reviewer,
		cancels:    cancelRegistry{byKey: map[cancelKey]cancelTarget{}},
		meta:       metaPool{idle: o.MetadataIdle},
		mem:        newMessageMemory(o.LargeMessageMemory),

		retainedLimit: o.RetainedStatementMemory,
		pendingLimit:  defaultPendingLimit,
	}, nil
}

// Close closes the catalogue connections no session uses; one a session
// still uses closes when that session ends. Call it once the sessions
// drained, as the gateway does at shutdown.
func (h *Handler) Close() error {
	h.meta.close()
	return nil
}

// Serve runs one client connection: start-up, upstream login, then the
// relay with a decision per statement, until either side ends or ctx is
// done (then it returns context.Cause(ctx)).
func (h *Handler) Serve(ctx context.Context, s *proxy.Session) error {
	t, ok := h.targets[s.Target.ID]
	if !ok {
		return fmt.Errorf("target %q (id %d) is not a configured postgres target", s.Target.Name, s.Target.ID)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c := newSession(ctx, cancel, h, s, t)
	stop := context.AfterFunc(ctx, func() { c.abort(context.Cause(ctx)) })
	err := c.run()
	stop()
	c.closeAll()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// cancelKey is the BackendKeyData the gateway gave a client: upstream's
// process id, so that PgConn.PID() is pg_backend_pid() and a tool can find
// or end its backend, with a secret of the gateway's own. Upstream's secret
// stays with the gateway: a cancel reaches upstream only through the
// gateway, which checks its target and workload.
type cancelKey struct {
	pid    uint32
	secret [4]byte
}

// cancelTarget is where a cancel for a gateway key goes.
type cancelTarget struct {
	targetID uint32
	workload string
	address  string      // upstream host:port
	tls      *tls.Config // the session's upstream TLS; nil: none
	pid      uint32
	secret   []byte
	held     *holdSlot // the session's held statement, if any
}

// cancelRegistry maps the keys of live sessions to their upstream keys.
type cancelRegistry struct {
	mu    sync.Mutex
	byKey map[cancelKey]cancelTarget
}

// add registers ct under upstream's process id and a new random secret,
// drawn again while the pair is taken (sessions to different servers can
// have the same process id), and returns the key. A pid of 0 (a server
// that sent no BackendKeyData) gets a random positive one.
func (r *cancelRegistry) add(ct cancelTarget) cancelKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var b [8]byte
		rand.Read(b[:]) // never fails
		k := cancelKey{pid: ct.pid}
		if k.pid == 0 {
			// Positive, as PostgreSQL's are.
			k.pid = binary.BigEndian.Uint32(b[:4]) &^ (1 << 31)
		}
		copy(k.secret[:], b[4:])
		if _, taken := r.byKey[k]; taken || k.pid == 0 {
			continue
		}
		r.byKey[k] = ct
		return k
	}
}

func (r *cancelRegistry) remove(k cancelKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byKey, k)
}

func (r *cancelRegistry) lookup(pid uint32, secret []byte) (cancelTarget, bool) {
	if len(secret) != 4 {
		return cancelTarget{}, false
	}
	k := cancelKey{pid: pid}
	copy(k.secret[:], secret)
	r.mu.Lock()
	defer r.mu.Unlock()
	ct, ok := r.byKey[k]
	return ct, ok
}

// cancel forwards a client's CancelRequest to the upstream of the session
// it names, or, when that session's statement is held for review, ends the
// hold. An unknown key, or one of another target or workload, is dropped
// silently, as PostgreSQL does.
func (h *Handler) cancel(ctx context.Context, s *proxy.Session, req *pgproto3.CancelRequest, log *slog.Logger) {
	ct, ok := h.cancels.lookup(req.ProcessID, req.SecretKey)
	if !ok {
		log.Info("cancel request for an unknown session ignored")
		return
	}
	if ct.targetID != s.Target.ID || ct.workload != s.Caller.Workload {
		log.Warn("cancel request from another target or workload ignored", "session_workload", ct.workload)
		return
	}
	if ct.held != nil && ct.held.cancelHeld() {
		// The statement waits for a review and has not run: nothing
		// upstream to cancel. Forwarding the cancel anyway could cancel
		// whatever the session runs next.
		log.Info("cancel request ended the review of a held statement")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := s.Dial(ctx, "tcp", ct.address)
	if err != nil {
		log.Warn("forwarding cancel request", "error", err)
		return
	}
	defer conn.Close()
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	if ct.tls != nil {
		// Encrypted like the session, so the key is not seen on the wire.
		if conn, err = startUpstreamTLS(ctx, conn, ct.tls); err != nil {
			log.Warn("forwarding cancel request", "error", err)
			return
		}
		defer conn.Close()
	}
	msg, err := (&pgproto3.CancelRequest{ProcessID: ct.pid, SecretKey: ct.secret}).Encode(nil)
	if err == nil {
		_, err = conn.Write(msg)
	}
	if err != nil {
		log.Warn("forwarding cancel request", "error", err)
		return
	}
	// Like libpq, wait for the server to close: the cancel has then been
	// delivered before the client hears back.
	var b [1]byte
	_, _ = conn.Read(b[:])
	log.Info("cancel request forwarded")
}

// startUpstreamTLS negotiates TLS on a new upstream connection the way
// PostgreSQL expects: an SSLRequest answered with 'S'.
func startUpstreamTLS(ctx context.Context, conn net.Conn, cfg *tls.Config) (net.Conn, error) {
	req, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	if _, err := conn.Write(req); err != nil {
		return nil, err
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return nil, err
	}
	if answer[0] != 'S' {
		return nil, errors.New("upstream refused TLS")
	}
	tc := tls.Client(conn, cfg.Clone())
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}
