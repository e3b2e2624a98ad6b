package proxy

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	defaultDialTimeout      = 10 * time.Second
	defaultAttributeTimeout = 5 * time.Second
	// forceCloseAfter is how long Shutdown waits, after cancelling the
	// sessions it cuts, before it closes their client connections itself:
	// a handler that ignores its context must not hang the gateway's exit.
	defaultForceCloseAfter = 5 * time.Second
)

// Options configure a [Server].
type Options struct {
	// Handlers by protocol name ("tcp", "postgres", ...), matched against
	// Target.Protocol.
	Handlers map[string]Handler
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer may be nil: the metrics then work but are not exported.
	Registerer prometheus.Registerer
	// DialTimeout bounds each Session.Dial; default 10s.
	DialTimeout time.Duration
	// Dialer dials upstream; default a zero net.Dialer.
	Dialer *net.Dialer
	// AttributeTimeout bounds Attributor.Attribute; default 5s.
	AttributeTimeout time.Duration
}

// validate checks o and fills its defaults.
func (o *Options) validate() error {
	if len(o.Handlers) == 0 {
		return errors.New("options: no protocol handlers")
	}
	for name, h := range o.Handlers {
		if h == nil {
			return fmt.Errorf("options: handler for protocol %q is nil", name)
		}
	}
	if o.DialTimeout < 0 {
		return fmt.Errorf("options: dial timeout %s is negative", o.DialTimeout)
	}
	if o.AttributeTimeout < 0 {
		return fmt.Errorf("options: attribute timeout %s is negative", o.AttributeTimeout)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.AttributeTimeout == 0 {
		o.AttributeTimeout = defaultAttributeTimeout
	}
	if o.Dialer == nil {
		o.Dialer = &net.Dialer{}
	}
	return nil
}

// Server accepts redirected (or, in explicit mode, directly dialled)
// connections and runs one session per connection.
type Server struct {
	handlers         map[string]Handler
	log              *slog.Logger
	dialer           *net.Dialer
	dialTimeout      time.Duration
	attributeTimeout time.Duration
	forceCloseAfter  time.Duration
	metrics          *metrics
	// sessionEnded, when set, is called after a session is gone from
	// Active and its metrics: a test seam.
	sessionEnded func(SessionInfo)

	mu        sync.Mutex
	closing   bool
	listeners map[*listener]struct{}
	sessions  map[string]*session
	// rootWarned: workloads whose process running as root was warned of.
	rootWarned sync.Map
	// conns counts every accepted connection until its goroutine returns,
	// attributed or not. Add happens under mu while !closing, so Shutdown's
	// Wait never races an Add from zero.
	conns sync.WaitGroup
}

type listener struct {
	ln   net.Listener
	stop context.CancelCauseFunc
}

// session is the server's record of a running session.
type session struct {
	info   SessionInfo
	cancel context.CancelCauseFunc
	client net.Conn
	log    *slog.Logger
}

// NewServer checks o and returns a Server ready to Serve.
func NewServer(o Options) (*Server, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("creating proxy server: %w", err)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("creating proxy server: %w", err)
	}
	handlers := make(map[string]Handler, len(o.Handlers))
	for name, h := range o.Handlers {
		handlers[name] = h
	}
	return &Server{
		handlers:         handlers,
		log:              o.Logger,
		dialer:           o.Dialer,
		dialTimeout:      o.DialTimeout,
		attributeTimeout: o.AttributeTimeout,
		forceCloseAfter:  defaultForceCloseAfter,
		metrics:          m,
		listeners:        make(map[*listener]struct{}),
		sessions:         make(map[string]*session),
	}, nil
}

// Serve accepts connections on ln and attributes each with a until Shutdown
// is called or ctx is done; it closes ln before it returns. Several Serve
// calls on different listeners may run at once.
//
// ctx bounds the accept loop and pending attributions only: sessions already
// running outlive it (they keep its values) until they end or Shutdown cuts
// them, so the wiring can stop accepting on a signal and then drain.
func (s *Server) Serve(ctx context.Context, ln net.Listener, a Attributor) error {
	defer ln.Close()
	if a == nil {
		return errors.New("serving: nil attributor")
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	l := &listener{ln: ln, stop: stop}

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	// Accept does not take a context: closing the listener is how it ends.
	defer context.AfterFunc(ctx, func() { ln.Close() })()

	s.log.Info("accepting connections", "listen", addrString(ln.Addr()))
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !temporary(err) {
				return fmt.Errorf("accepting on %s: %w", addrString(ln.Addr()), err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accepting connection; retrying", "listen", addrString(ln.Addr()), "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		backoff = 0

		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			conn.Close()
			return nil
		}
		s.conns.Add(1)
		s.mu.Unlock()
		go s.handle(ctx, conn, a)
	}
}

// temporary reports whether an Accept error is worth retrying: the listener
// is still fine, the process or the peer is not.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// handle owns conn from Accept on: it attributes it, then refuses it or runs
// its session. ctx is the accept loop's.
func (s *Server) handle(ctx context.Context, conn net.Conn, a Attributor) {
	defer s.conns.Done()

	actx, cancel := context.WithTimeout(ctx, s.attributeTimeout)
	at, err := a.Attribute(actx, conn)
	cancel()
	if err != nil {
		s.refuse(conn, refusedReason(err), fmt.Errorf("attributing connection: %w", err))
		return
	}
	if !at.Destination.IsValid() {
		s.refuse(conn, refusedError, fmt.Errorf("attributing connection to target %q: no original destination", at.Target.Name))
		return
	}
	h, ok := s.handlers[at.Target.Protocol]
	if !ok {
		s.refuse(conn, refusedNoHandler, fmt.Errorf("target %q: no handler for protocol %q", at.Target.Name, at.Target.Protocol))
		return
	}
	s.runSession(context.WithoutCancel(ctx), conn, at, h)
}

// refuse closes a connection that will not become a session.
func (s *Server) refuse(conn net.Conn, reason string, err error) {
	s.metrics.refused.WithLabelValues(reason).Inc()
	s.log.Warn("connection refused", "client", addrString(conn.RemoteAddr()), "reason", reason, "error", err)
	conn.Close()
}

// runSession serves one attributed connection until its handler returns.
// parent carries the values of the accept loop's context but not its
// cancellation: only the session's own cancel (Shutdown) cuts a session.
func (s *Server) runSession(parent context.Context, conn net.Conn, at Attribution, h Handler) {
	started := time.Now()
	id := newSessionID(started)
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	client := addrString(conn.RemoteAddr())
	args := []any{
		slog.String("session", id),
		slog.String("target", at.Target.Name),
		slog.String("protocol", at.Target.Protocol),
		slog.String("destination", at.Destination.String()),
		slog.String("client", client),
	}
	for _, a := range at.Caller.LogAttrs() {
		args = append(args, a)
	}
	log := s.log.With(args...)

	sess := &Session{
		ID:          id,
		Started:     started,
		Target:      at.Target,
		Caller:      at.Caller,
		Destination: at.Destination,
		Client:      conn,
		Logger:      log,
		Dial:        s.dialFunc(ctx),
	}
	rec := &session{
		info: SessionInfo{
			ID:          id,
			Target:      at.Target.Name,
			Protocol:    at.Target.Protocol,
			Workload:    at.Caller.Workload,
			Subject:     at.Caller.Identity.Subject,
			PID:         at.Caller.PID,
			Executable:  at.Caller.Executable,
			Destination: at.Destination,
			Client:      client,
			Started:     started,
		},
		cancel: cancel,
		client: conn,
		log:    log,
	}

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.refuse(conn, refusedShuttingDown, ErrShuttingDown)
		return
	}
	s.sessions[id] = rec
	s.mu.Unlock()

	subject, issuer, groups := IdentityLabels(at.Caller.Identity)
	labels := prometheus.Labels{"protocol": at.Target.Protocol, "target": at.Target.Name, "workload": at.Caller.Workload,
		"subject": subject, "issuer": issuer, "groups": groups}
	s.metrics.sessionsTotal.With(labels).Inc()
	active := s.metrics.sessionsActive.With(labels)
	active.Inc()
	log.Info("session started")
	if at.Caller.UID == 0 && at.Caller.Workload != "" {
		if _, warned := s.rootWarned.LoadOrStore(at.Caller.Workload, true); !warned {
			// Once per workload: root can move itself out of its cgroup,
			// and the data path with it.
			log.Warn("a process of this workload runs as root, which can leave the workload's cgroup and go around the gateway; run agents as a user of their own")
		}
	}

	err := serveRecovering(ctx, h, sess, log)
	conn.Close()
	duration := time.Since(started)

	s.mu.Lock()
	delete(s.sessions, id)
	s.mu.Unlock()
	active.Dec()
	s.metrics.sessionDuration.WithLabelValues(at.Target.Protocol).Observe(duration.Seconds())

	switch cause := context.Cause(ctx); {
	case normalEnd(err):
		log.Info("session ended", "duration", duration)
	case ctx.Err() != nil && errors.Is(err, cause):
		log.Info("session cut", "duration", duration, "reason", cause)
	default:
		log.Warn("session failed", "duration", duration, "error", err)
	}
	if s.sessionEnded != nil {
		s.sessionEnded(rec.info)
	}
}

// serveRecovering runs h so that a panic in one protocol engine ends its
// session, not the gateway and every other session with it.
func serveRecovering(ctx context.Context, h Handler, sess *Session, log *slog.Logger) (err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("handler panicked", "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h.Serve(ctx, sess)
}

// normalEnd reports whether a handler's error is just a connection ending.
func normalEnd(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// dialFunc returns a session's Session.Dial: every dial ends after the dial
// timeout or when the session does, whatever context the handler passes.
func (s *Server) dialFunc(session context.Context) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if session.Err() != nil {
			return nil, fmt.Errorf("dialing %s %s: session ended: %w", network, address, context.Cause(session))
		}
		ctx, cancel := context.WithTimeout(ctx, s.dialTimeout)
		defer cancel()
		defer context.AfterFunc(session, cancel)()
		return s.dialer.DialContext(ctx, network, address)
	}
}

// Shutdown stops accepting on every listener and waits for the sessions to
// end until ctx is done. It then cancels the remaining sessions with cause
// ErrShuttingDown, logs them, waits for their handlers to return, and
// reports how many it cut; when it cut any, err wraps the cause of ctx.
func (s *Server) Shutdown(ctx context.Context) (cut int, err error) {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.stop(ErrShuttingDown)
		l.ln.Close()
	}
	running := len(s.sessions)
	s.mu.Unlock()
	s.log.Info("shutting down", "sessions", running)

	drained := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(drained)
	}()
	select {
	case <-drained:
		s.log.Info("shut down; all sessions ended")
		return 0, nil
	case <-ctx.Done():
	}

	s.mu.Lock()
	cutting := make([]*session, 0, len(s.sessions))
	for _, rec := range s.sessions {
		rec.cancel(ErrShuttingDown)
		cutting = append(cutting, rec)
	}
	s.mu.Unlock()
	slices.SortFunc(cutting, func(a, b *session) int { return cmp.Compare(a.info.ID, b.info.ID) })
	for _, rec := range cutting {
		rec.log.Warn("cutting session at shutdown", "age", time.Since(rec.info.Started))
	}

	select {
	case <-drained:
	case <-time.After(s.forceCloseAfter):
		for _, rec := range cutting {
			rec.log.Error("handler ignored shutdown; closing its client connection", "waited", s.forceCloseAfter)
			rec.client.Close()
		}
		<-drained
	}
	s.log.Info("shut down", "cut", len(cutting))
	if len(cutting) == 0 {
		return 0, nil
	}
	return len(cutting), fmt.Errorf("draining sessions: %w", context.Cause(ctx))
}

// End ends the running sessions match selects with cause (the handlers
// tell the client why), and returns them, oldest first.
func (s *Server) End(match func(SessionInfo) bool, cause error) []SessionInfo {
	s.mu.Lock()
	var ended []SessionInfo
	for _, rec := range s.sessions {
		if match(rec.info) {
			rec.cancel(cause)
			ended = append(ended, rec.info)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(ended, func(a, b SessionInfo) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
	})
	return ended
}

// Active is a snapshot of the running sessions, oldest first.
func (s *Server) Active() []SessionInfo {
	s.mu.Lock()
	infos := make([]SessionInfo, 0, len(s.sessions))
	for _, rec := range s.sessions {
		infos = append(infos, rec.info)
	}
	s.mu.Unlock()
	slices.SortFunc(infos, func(a, b SessionInfo) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
	})
	return infos
}

// newSessionID returns an id that sorts by start time to the second and is
// unique: 20261129T071500Z-<8 random hex>.
func newSessionID(t time.Time) string {
	var b [4]byte
	rand.Read(b[:]) // never fails: crypto/rand.Read panics rather than return an error
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
