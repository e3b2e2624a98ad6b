package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/proxytest"
)

// attributorFunc adapts a function to proxy.Attributor.
type attributorFunc func(ctx context.Context, conn net.Conn) (proxy.Attribution, error)

func (f attributorFunc) Attribute(ctx context.Context, conn net.Conn) (proxy.Attribution, error) {
	return f(ctx, conn)
}

// handlerFunc adapts a function to proxy.Handler.
type handlerFunc func(ctx context.Context, s *proxy.Session) error

func (f handlerFunc) Serve(ctx context.Context, s *proxy.Session) error { return f(ctx, s) }

var testCaller = identity.Caller{
	Workload:   "agent",
	WorkloadID: 7,
	Identity:   identity.Identity{Subject: "alice", Issuer: "https://issuer.test"},
	PID:        4242,
	UID:        1000,
	Executable: "/usr/bin/psql",
	CgroupID:   99,
}

// fixed attributes every connection to target, going to dest.
func fixed(target proxy.Target, dest netip.AddrPort) proxy.Attributor {
	return attributorFunc(func(context.Context, net.Conn) (proxy.Attribution, error) {
		return proxy.Attribution{Target: target, Caller: testCaller, Destination: dest}, nil
	})
}

var someDest = netip.MustParseAddrPort("127.0.0.1:5432")

type gateway struct {
	srv  *proxy.Server
	reg  *prometheus.Registry
	addr string
	// ended receives every session once it is gone from Active.
	ended chan proxy.SessionInfo
	// serveErr receives what Serve returned.
	serveErr chan error
}

// startGateway runs a Server with handlers on a fresh 127.0.0.1 listener
// and shuts it down at the end of the test.
func startGateway(t *testing.T, handlers map[string]proxy.Handler, a proxy.Attributor) *gateway {
	t.Helper()
	return startGatewayLogging(t, handlers, a, t.Output())
}

// startGatewayLogging is startGateway with the server's log going to w.
func startGatewayLogging(t *testing.T, handlers map[string]proxy.Handler, a proxy.Attributor, w io.Writer) *gateway {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv, err := proxy.NewServer(proxy.Options{
		Handlers:   handlers,
		Logger:     slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: reg,
	})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	g := &gateway{srv: srv, reg: reg, ended: make(chan proxy.SessionInfo, 16), serveErr: make(chan error, 1)}
	proxy.OnSessionEnd(srv, func(i proxy.SessionInfo) { g.ended <- i })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	g.addr = ln.Addr().String()
	go func() { g.serveErr <- srv.Serve(t.Context(), ln, a) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown at cleanup: %v", err)
		}
		if err := <-g.serveErr; err != nil {
			t.Errorf("Serve returned %v, want nil after Shutdown", err)
		}
	})
	return g
}

func (g *gateway) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatalf("dialing gateway: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// value is the value of the metric name with exactly labels, 0 if absent.
func value(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			// The labels given must all match; others may be there.
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got, ok := have[k]; !ok || got != v {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// expectClosed asserts that the gateway closed c without sending anything.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading from a refused connection: %v, want EOF", err)
	}
	if len(b) != 0 {
		t.Fatalf("refused connection sent %q, want nothing", b)
	}
}

func refusedText(reason string) string {
	var b strings.Builder
	b.WriteString("# HELP interlock_connections_refused_total Accepted connections closed before reaching a protocol handler, by reason.\n")
	b.WriteString("# TYPE interlock_connections_refused_total counter\n")
	for _, r := range []string{"egress_denied", "error", "no_handler", "no_origin", "shutting_down", "unknown_target", "unknown_workload"} {
		n := 0
		if r == reason {
			n = 1
		}
		fmt.Fprintf(&b, "interlock_connections_refused_total{reason=%q} %d\n", r, n)
	}
	return b.String()
}

func TestRefusesUnattributedConnections(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		reason string
	}{
		{"no origin", fmt.Errorf("looking up origin: %w", proxy.ErrNoOrigin), "no_origin"},
		{"unknown target", fmt.Errorf("matching 10.0.0.1:5432: %w", proxy.ErrUnknownTarget), "unknown_target"},
		{"unknown workload", fmt.Errorf("cgroup 12: %w", proxy.ErrUnknownWorkload), "unknown_workload"},
		{"egress denied", fmt.Errorf("workload agent to 10.0.0.9:443: %w", proxy.ErrEgressDenied), "egress_denied"},
		{"other", errors.New("reading /proc: permission denied"), "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			served := make(chan struct{}, 1)
			h := handlerFunc(func(context.Context, *proxy.Session) error { served <- struct{}{}; return nil })
			g := startGateway(t, map[string]proxy.Handler{"tcp": h},
				attributorFunc(func(context.Context, net.Conn) (proxy.Attribution, error) {
					return proxy.Attribution{}, tt.err
				}))

			expectClosed(t, g.dial(t))

			if err := testutil.GatherAndCompare(g.reg, strings.NewReader(refusedText(tt.reason)), "interlock_connections_refused_total"); err != nil {
				t.Error(err)
			}
			if got := value(t, g.reg, "interlock_sessions_total", map[string]string{"protocol": "tcp", "target": "db", "workload": "agent"}); got != 0 {
				t.Errorf("sessions_total = %v, want 0", got)
			}
			select {
			case <-served:
				t.Error("a refused connection reached the handler")
			default:
			}
		})
	}
}

func TestRefusesTargetWithoutHandler(t *testing.T) {
	h := handlerFunc(func(context.Context, *proxy.Session) error { return nil })
	g := startGateway(t, map[string]proxy.Handler{"tcp": h},
		fixed(proxy.Target{ID: 1, Name: "db", Protocol: "postgres", Address: "db.internal:5432"}, someDest))

	expectClosed(t, g.dial(t))

	if err := testutil.GatherAndCompare(g.reg, strings.NewReader(refusedText("no_handler")), "interlock_connections_refused_total"); err != nil {
		t.Error(err)
	}
}

func TestSessionCarriesAttribution(t *testing.T) {
	target := proxy.Target{ID: 3, Name: "db", Protocol: "echo", Address: "db.internal:5432"}
	sessions := make(chan *proxy.Session, 1)
	release := make(chan struct{})
	h := handlerFunc(func(ctx context.Context, s *proxy.Session) error {
		sessions <- s
		<-release
		return nil
	})
	g := startGateway(t, map[string]proxy.Handler{"echo": h}, fixed(target, someDest))
	labels := map[string]string{"protocol": "echo", "target": "db", "workload": "agent", "subject": "alice", "issuer": "https://issuer.test"}

	c := g.dial(t)
	s := <-sessions
	if s.Target != target || s.Destination != someDest || s.Caller.Identity.Subject != "alice" || s.Caller.PID != 4242 {
		t.Errorf("session = %+v, want target %+v, destination %v, caller %+v", s, target, someDest, testCaller)
	}
	if s.Client.RemoteAddr().String() != c.LocalAddr().String() {
		t.Errorf("session client = %v, want %v", s.Client.RemoteAddr(), c.LocalAddr())
	}
	if s.Logger == nil || s.Dial == nil || s.Started.IsZero() {
		t.Errorf("session lacks logger, dial or start time: %+v", s)
	}

	active := g.srv.Active()
	if len(active) != 1 {
		t.Fatalf("Active() = %+v, want one session", active)
	}
	want := proxy.SessionInfo{
		ID: s.ID, Target: "db", Protocol: "echo", Workload: "agent", Subject: "alice", PID: 4242,
		Executable: "/usr/bin/psql", Destination: someDest, Client: c.LocalAddr().String(), Started: s.Started,
	}
	if active[0] != want {
		t.Errorf("Active()[0] = %+v, want %+v", active[0], want)
	}
	if got := value(t, g.reg, "interlock_sessions_active", labels); got != 1 {
		t.Errorf("sessions_active = %v while the session runs, want 1", got)
	}

	close(release)
	ended := <-g.ended
	if ended.ID != s.ID {
		t.Errorf("ended session %s, want %s", ended.ID, s.ID)
	}
	if got := value(t, g.reg, "interlock_sessions_active", labels); got != 0 {
		t.Errorf("sessions_active = %v after the session ended, want 0", got)
	}
	if got := value(t, g.reg, "interlock_sessions_total", labels); got != 1 {
		t.Errorf("sessions_total = %v, want 1", got)
	}
	if got := value(t, g.reg, "interlock_session_duration_seconds", map[string]string{"protocol": "echo"}); got != 1 {
		t.Errorf("session_duration_seconds count = %v, want 1", got)
	}
	if got := g.srv.Active(); len(got) != 0 {
		t.Errorf("Active() = %+v after the session ended, want none", got)
	}
	// The server closes the client connection when the handler returns.
	expectClosed(t, c)
}

// TestWarnsOfRootWorkloads: a workload's process running as root can
// leave its cgroup; the gateway says so once per workload.
func TestWarnsOfRootWorkloads(t *testing.T) {
	target := proxy.Target{ID: 3, Name: "db", Protocol: "echo", Address: "db.internal:5432"}
	h := handlerFunc(func(ctx context.Context, s *proxy.Session) error { return nil })
	var log proxytest.LockedBuffer
	root := testCaller
	root.UID = 0
	g := startGatewayLogging(t, map[string]proxy.Handler{"echo": h}, attributorFunc(func(context.Context, net.Conn) (proxy.Attribution, error) {
		return proxy.Attribution{Target: target, Destination: someDest, Caller: root}, nil
	}), &log)
	for range 2 {
		expectClosed(t, g.dial(t))
		<-g.ended
	}
	if n := strings.Count(log.String(), "runs as root"); n != 1 {
		t.Fatalf("warned %d times of a root workload, want once:\n%s", n, log.String())
	}
}

func TestSessionIDsAreUniqueAndSortByTime(t *testing.T) {
	ids := make(chan string, 2)
	h := handlerFunc(func(ctx context.Context, s *proxy.Session) error { ids <- s.ID; return nil })
	g := startGateway(t, map[string]proxy.Handler{"tcp": h}, fixed(proxy.Target{Name: "db", Protocol: "tcp"}, someDest))
	g.dial(t)
	a := <-ids
	g.dial(t)
	b := <-ids
	if a == b {
		t.Fatalf("two sessions share id %s", a)
	}
	for _, id := range []string{a, b} {
		stamp, random, ok := strings.Cut(id, "-")
		if _, err := time.Parse("20060102T150405Z", stamp); err != nil || !ok || len(random) != 8 {
			t.Errorf("session id %q, want 20060102T150405Z-<8 hex>", id)
		}
	}
	if b[:16] < a[:16] {
		t.Errorf("later session %s sorts before %s", b, a)
	}
}

func TestShutdownDrainsThenCuts(t *testing.T) {
	target := proxy.Target{ID: 1, Name: "db", Protocol: "test", Address: "db.internal:5432"}
	started := make(chan *proxy.Session, 2)
	causes := make(chan error, 2)
	// The handler runs until its client hangs up or its context is done,
	// and reports why it stopped.
	h := handlerFunc(func(ctx context.Context, s *proxy.Session) error {
		started <- s
		hungUp := make(chan struct{})
		go func() {
			io.Copy(io.Discard, s.Client)
			close(hungUp)
		}()
		select {
		case <-hungUp:
			causes <- nil
			return nil
		case <-ctx.Done():
			causes <- context.Cause(ctx)
			return context.Cause(ctx)
		}
	})
	g := startGateway(t, map[string]proxy.Handler{"test": h}, fixed(target, someDest))
	labels := map[string]string{"protocol": "test", "target": "db", "workload": "agent"}

	long := g.dial(t)
	longSession := <-started
	short := g.dial(t)
	shortSession := <-started
	if got := value(t, g.reg, "interlock_sessions_active", labels); got != 2 {
		t.Fatalf("sessions_active = %v, want 2", got)
	}

	ctx, stopDraining := context.WithCancelCause(context.Background())
	type result struct {
		cut int
		err error
	}
	shutdown := make(chan result, 1)
	go func() {
		cut, err := g.srv.Shutdown(ctx)
		shutdown <- result{cut, err}
	}()

	// Serve stops once Shutdown has begun; new connections get nowhere.
	if err := <-g.serveErr; err != nil {
		t.Errorf("Serve returned %v after Shutdown, want nil", err)
	}
	g.serveErr <- nil // for the cleanup's check
	if c, err := net.Dial("tcp", g.addr); err == nil {
		expectClosed(t, c)
		c.Close()
	}

	// One session ends on its own while the gateway drains.
	short.CloseWrite()
	if err := <-causes; err != nil {
		t.Fatalf("short session stopped with %v, want its client hanging up", err)
	}
	if ended := <-g.ended; ended.ID != shortSession.ID {
		t.Fatalf("ended session %s, want %s", ended.ID, shortSession.ID)
	}
	select {
	case r := <-shutdown:
		t.Fatalf("Shutdown returned %+v while a session still runs", r)
	default:
	}

	// The drain deadline passes: the long session is cut with the cause.
	deadline := errors.New("drain deadline")
	stopDraining(deadline)
	r := <-shutdown
	if r.cut != 1 {
		t.Errorf("Shutdown cut %d sessions, want 1", r.cut)
	}
	if !errors.Is(r.err, deadline) {
		t.Errorf("Shutdown error = %v, want one wrapping %v", r.err, deadline)
	}
	if cause := <-causes; !errors.Is(cause, proxy.ErrShuttingDown) {
		t.Errorf("long session's context cause = %v, want %v", cause, proxy.ErrShuttingDown)
	}
	if ended := <-g.ended; ended.ID != longSession.ID {
		t.Errorf("ended session %s, want %s", ended.ID, longSession.ID)
	}
	expectClosed(t, long)
	if got := value(t, g.reg, "interlock_sessions_active", labels); got != 0 {
		t.Errorf("sessions_active = %v after Shutdown, want 0", got)
	}
	if got := g.srv.Active(); len(got) != 0 {
		t.Errorf("Active() = %+v after Shutdown, want none", got)
	}
}

func TestShutdownWithoutSessions(t *testing.T) {
	g := startGateway(t, map[string]proxy.Handler{"tcp": handlerFunc(func(context.Context, *proxy.Session) error { return nil })},
		fixed(proxy.Target{Name: "db", Protocol: "tcp"}, someDest))
	cut, err := g.srv.Shutdown(t.Context())
	if cut != 0 || err != nil {
		t.Errorf("Shutdown() = %d, %v, want 0, nil", cut, err)
	}
	// A Serve that starts after Shutdown returns at once and closes its listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.srv.Serve(t.Context(), ln, fixed(proxy.Target{}, someDest)); err != nil {
		t.Errorf("Serve after Shutdown = %v, want nil", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on the listener after Serve returned: %v, want net.ErrClosed", err)
	}
}

func TestServeReturnsWhenContextDone(t *testing.T) {
	srv, err := proxy.NewServer(proxy.Options{Handlers: map[string]proxy.Handler{"tcp": handlerFunc(func(context.Context, *proxy.Session) error { return nil })}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, fixed(proxy.Target{}, someDest)) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v after its context was cancelled, want nil", err)
	}
}

func TestSessionDialIsBoundedBySession(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	dials := make(chan error, 2)
	h := handlerFunc(func(ctx context.Context, s *proxy.Session) error {
		c, err := s.Dial(ctx, "tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		dials <- err
		<-ctx.Done()
		// Whatever context the handler passes, a cut session dials nothing.
		_, err = s.Dial(context.Background(), "tcp", ln.Addr().String())
		dials <- err
		return context.Cause(ctx)
	})
	g := startGateway(t, map[string]proxy.Handler{"tcp": h}, fixed(proxy.Target{Name: "db", Protocol: "tcp"}, someDest))
	g.dial(t)
	if err := <-dials; err != nil {
		t.Fatalf("Session.Dial to a listening address: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if cut, _ := g.srv.Shutdown(ctx); cut != 1 {
		t.Errorf("Shutdown cut %d sessions, want 1", cut)
	}
	if err := <-dials; !errors.Is(err, proxy.ErrShuttingDown) {
		t.Errorf("Session.Dial after the session was cut: %v, want %v", err, proxy.ErrShuttingDown)
	}
}

func TestNewServerRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		o    proxy.Options
	}{
		{"no handlers", proxy.Options{}},
		{"nil handler", proxy.Options{Handlers: map[string]proxy.Handler{"tcp": nil}}},
		{"negative dial timeout", proxy.Options{Handlers: map[string]proxy.Handler{"tcp": handlerFunc(nil)}, DialTimeout: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := proxy.NewServer(tt.o); err == nil {
				t.Errorf("NewServer(%+v) succeeded, want an error", tt.o)
			}
		})
	}
}

func TestNewServerReportsDuplicateRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := proxy.Options{Handlers: map[string]proxy.Handler{"tcp": handlerFunc(nil)}, Registerer: reg}
	if _, err := proxy.NewServer(o); err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.NewServer(o); err == nil {
		t.Error("a second server on the same registry succeeded, want an error")
	}
}
