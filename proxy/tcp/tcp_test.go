package tcp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/tcp"
)

// attributorFunc adapts a function to proxy.Attributor.
type attributorFunc func(ctx context.Context, conn net.Conn) (proxy.Attribution, error)

func (f attributorFunc) Attribute(ctx context.Context, conn net.Conn) (proxy.Attribution, error) {
	return f(ctx, conn)
}

// upstream runs serve for every connection to a fresh 127.0.0.1 listener.
func upstream(t *testing.T, serve func(c *net.TCPConn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening upstream: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

type gateway struct {
	srv  *proxy.Server
	reg  *prometheus.Registry
	addr string
}

// startGateway runs a proxy.Server with the tcp handler that sends every
// connection to dest, and shuts it down at the end of the test.
func startGateway(t *testing.T, dest netip.AddrPort) *gateway {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv, err := proxy.NewServer(proxy.Options{
		Handlers:   map[string]proxy.Handler{"tcp": tcp.New(reg)},
		Logger:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: reg,
	})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	target := proxy.Target{ID: 1, Name: "db", Protocol: "tcp", Address: dest.String()}
	a := attributorFunc(func(context.Context, net.Conn) (proxy.Attribution, error) {
		return proxy.Attribution{Target: target, Caller: identity.Caller{Workload: "agent"}, Destination: dest}, nil
	})
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(t.Context(), ln, a) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown at cleanup: %v", err)
		}
		if err := <-serveErr; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &gateway{srv: srv, reg: reg, addr: ln.Addr().String()}
}

func (g *gateway) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatalf("dialing gateway: %v", err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// drain waits for every session to end: Shutdown returns once none runs.
func (g *gateway) drain(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if cut, err := g.srv.Shutdown(ctx); cut != 0 || err != nil {
		t.Fatalf("Shutdown() = %d, %v, want sessions to have ended by themselves", cut, err)
	}
}

func TestForwardsBothWays(t *testing.T) {
	g := startGateway(t, upstream(t, echo))
	c := g.dial(t)

	msg := bytes.Repeat([]byte("interlock "), 100_000) // ~1 MB, several chunks
	go func() {
		c.Write(msg)
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo returned %d bytes, want the %d sent", len(got), len(msg))
	}
	c.Close()
	g.drain(t)
	g.checkCounted(t, len(msg))
}

// checkCounted checks that each direction's byte counter says n.
func (g *gateway) checkCounted(t *testing.T, n int) {
	t.Helper()
	for _, dir := range []string{"upstream", "downstream"} {
		counter, err := bytesCounter(g.reg, dir)
		if err != nil {
			t.Fatal(err)
		}
		if counter != float64(n) {
			t.Errorf("interlock_tcp_bytes_total{direction=%q} = %v, want %d", dir, counter, n)
		}
	}
}

// TestMessagesThenBulkThenMessages: a direction starts message by message
// and moves to splice(2) at its first full buffer; request/response
// exchanges before and after a bulk transfer arrive intact, each answer
// before the next request, and every byte is counted once.
func TestMessagesThenBulkThenMessages(t *testing.T) {
	g := startGateway(t, upstream(t, echo))
	c := g.dial(t)
	sent := 0
	roundTrip := func(msg []byte) {
		t.Helper()
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(msg)
			errc <- err
		}()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("reading the echo of %d bytes: %v", len(msg), err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes differs", len(msg))
		}
		sent += len(msg)
	}
	for i := range 50 {
		roundTrip([]byte(fmt.Sprintf("GET key:%d\r\n", i)))
	}
	roundTrip(bytes.Repeat([]byte("bulk "), 1<<20)) // 5 MiB: a full buffer each way
	for i := range 50 {
		roundTrip([]byte(fmt.Sprintf("SET key:%d %d\r\n", i, i)))
	}
	c.Close()
	g.drain(t)
	g.checkCounted(t, sent)
}

func bytesCounter(reg *prometheus.Registry, direction string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != "interlock_tcp_bytes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["target"] == "db" && labels["direction"] == direction {
				return m.GetCounter().GetValue(), nil
			}
		}
	}
	return 0, fmt.Errorf("no interlock_tcp_bytes_total{target=\"db\",direction=%q}", direction)
}

// The client finishes sending first; the target answers after seeing EOF.
func TestClientHalfClose(t *testing.T) {
	g := startGateway(t, upstream(t, func(c *net.TCPConn) {
		b, err := io.ReadAll(c)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "read %d bytes: %s", len(b), b)
	}))
	c := g.dial(t)
	if _, err := c.Write([]byte("SELECT 1")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the reply after half-close: %v", err)
	}
	if want := "read 8 bytes: SELECT 1"; string(got) != want {
		t.Errorf("reply = %q, want %q", got, want)
	}
	c.Close()
	g.drain(t)
}

// The target finishes sending first; the client goes on sending after EOF.
func TestTargetHalfClose(t *testing.T) {
	received := make(chan string, 1)
	g := startGateway(t, upstream(t, func(c *net.TCPConn) {
		c.Write([]byte("banner"))
		c.CloseWrite()
		b, _ := io.ReadAll(c)
		received <- string(b)
	}))
	c := g.dial(t)
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the banner: %v", err)
	}
	if string(got) != "banner" {
		t.Errorf("banner = %q, want %q", got, "banner")
	}
	if _, err := c.Write([]byte("still here")); err != nil {
		t.Fatalf("writing after the target's half-close: %v", err)
	}
	c.CloseWrite()
	if got := <-received; got != "still here" {
		t.Errorf("target received %q after its half-close, want %q", got, "still here")
	}
	g.drain(t)
}

func TestShutdownCutsSession(t *testing.T) {
	upstreamGone := make(chan error, 1)
	g := startGateway(t, upstream(t, func(c *net.TCPConn) {
		c.Write([]byte("hello"))
		_, err := io.Copy(io.Discard, c)
		upstreamGone <- err
	}))
	c := g.dial(t)
	hello := make([]byte, 5)
	if _, err := io.ReadFull(c, hello); err != nil {
		t.Fatalf("reading through the gateway: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	cut, err := g.srv.Shutdown(ctx)
	if cut != 1 || !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown() = %d, %v, want 1 and context.Canceled", cut, err)
	}
	// Both sides are closed: the client sees the end, the target too.
	if b, err := io.ReadAll(c); len(b) != 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read %q, %v after the cut, want the connection closed", b, err)
	}
	if err := <-upstreamGone; err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("target read %v after the cut, want the connection closed", err)
	}
}

func TestDialFailureClosesClient(t *testing.T) {
	// A listener closed at once leaves a port that refuses connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dest := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()

	g := startGateway(t, dest)
	c := g.dial(t)
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Errorf("client read %q, %v, want the connection closed", b, err)
	}
	g.drain(t)
}

func TestZeroHandlerForwardsWithoutMetrics(t *testing.T) {
	dest := upstream(t, echo)
	srv, err := proxy.NewServer(proxy.Options{Handlers: map[string]proxy.Handler{"tcp": &tcp.Handler{}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveErr := make(chan error, 1)
	go func() {
		serveErr <- srv.Serve(t.Context(), ln, attributorFunc(func(context.Context, net.Conn) (proxy.Attribution, error) {
			return proxy.Attribution{Target: proxy.Target{Name: "db", Protocol: "tcp"}, Destination: dest}, nil
		}))
	}()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		<-serveErr
	})

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	c.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "ping" {
		t.Errorf("echo = %q, %v, want ping", got, err)
	}
}

func TestHandlersShareCounterOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	tcp.New(reg)
	tcp.New(reg) // must neither panic nor fail
	if n, err := testutil.GatherAndCount(reg, "interlock_tcp_bytes_total"); err != nil || n != 0 {
		t.Errorf("GatherAndCount = %d, %v, want 0 series and no error", n, err)
	}
}
