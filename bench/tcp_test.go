package bench_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/proxytest"
	"github.com/interlock-dev/interlock/proxy/tcp"
)

const (
	// throughputOp is what one BenchmarkTCPThroughput op sends: large enough
	// that the per-op acknowledgement is noise next to the transfer.
	throughputOp = 64 << 20
	// writeSize is the client's write size for bulk transfer, and the
	// read buffer of the target that discards it.
	writeSize = 256 << 10
)

// path is one way for a client to reach a target: its start function returns
// the address the client dials to reach dest.
type path struct {
	name  string
	start func(tb testing.TB, dest netip.AddrPort) string
}

// paths are the two sides of every comparison, measured in the same run.
var paths = []path{
	{"direct", func(_ testing.TB, dest netip.AddrPort) string { return dest.String() }},
	{"gateway", func(tb testing.TB, dest netip.AddrPort) string { return startGateway(tb, dest).addr }},
}

// BenchmarkTCPThroughput sends throughputOp bytes per op on one established
// connection to a target that discards them and acknowledges each op with
// one byte, so an op ends when the bytes reached the target, not when they
// fit in a socket buffer.
func BenchmarkTCPThroughput(b *testing.B) {
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			c := dial(b, p.start(b, startTarget(b, sink(throughputOp))))
			buf := make([]byte, writeSize)
			b.SetBytes(throughputOp)
			b.ReportAllocs()
			for b.Loop() {
				if err := sendOp(c, buf, throughputOp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTCPRoundTrip bounces one byte off an echo target per op on one
// established connection: the latency the path adds to every request.
func BenchmarkTCPRoundTrip(b *testing.B) {
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			c := dial(b, p.start(b, startTarget(b, echo)))
			buf := make([]byte, 1)
			b.ReportAllocs()
			for b.Loop() {
				if err := pingOp(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTCPConnect dials, bounces one byte off an echo target and closes
// per op: the cost of a short connection, which through the gateway includes
// accept, attribution, the session and the upstream dial.
func BenchmarkTCPConnect(b *testing.B) {
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			addr := p.start(b, startTarget(b, echo))
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if err := connectOp(ctx, addr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestGatewayForwards runs each benchmark's op through the gateway set up as
// the benchmarks set it up and checks that every byte arrives intact and that
// the gateway, not some other route, carried it: its byte counter moves by
// exactly what was sent.
func TestGatewayForwards(t *testing.T) {
	t.Run("echo", func(t *testing.T) {
		gw := startGateway(t, startTarget(t, echo))
		c := dial(t, gw.addr)
		c.SetDeadline(time.Now().Add(30 * time.Second))

		// Not a multiple of the tcp handler's copy chunk, nor of any buffer.
		payload := make([]byte, 3<<20+7)
		rand.Read(payload)
		writeErr := make(chan error, 1)
		go func() {
			_, err := c.Write(payload)
			if err == nil {
				err = c.CloseWrite()
			}
			writeErr <- err
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("reading echo: %v", err)
		}
		if err := <-writeErr; err != nil {
			t.Fatalf("writing payload: %v", err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("echo through the gateway returned %d bytes that differ from the %d sent", len(got), len(payload))
		}

		ping := dial(t, gw.addr)
		ping.SetDeadline(time.Now().Add(30 * time.Second))
		if err := pingOp(ping, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		ping.Close()
		if err := connectOp(t.Context(), gw.addr); err != nil {
			t.Fatal(err)
		}

		gw.drain(t)
		want := float64(len(payload) + 1 + 1) // payload, ping, connect
		for _, dir := range []string{"upstream", "downstream"} {
			if got := gw.forwarded(t, dir); got != want {
				t.Errorf("interlock_tcp_bytes_total{direction=%q} = %v, want %v", dir, got, want)
			}
		}
	})

	t.Run("sink", func(t *testing.T) {
		const op = 1<<20 + 3
		gw := startGateway(t, startTarget(t, sink(op)))
		c := dial(t, gw.addr)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, writeSize)
		for range 2 {
			if err := sendOp(c, buf, op); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()

		gw.drain(t)
		if got, want := gw.forwarded(t, "upstream"), float64(2*op); got != want {
			t.Errorf("upstream bytes = %v, want %v", got, want)
		}
		if got, want := gw.forwarded(t, "downstream"), 2.0; got != want {
			t.Errorf("downstream bytes = %v, want %v (one acknowledgement per op)", got, want)
		}
	})
}

// sendOp writes n bytes from buf, cycling it, and waits for the target's
// one-byte acknowledgement.
func sendOp(c net.Conn, buf []byte, n int) error {
	for left := n; left > 0; {
		m, err := c.Write(buf[:min(len(buf), left)])
		left -= m
		if err != nil {
			return fmt.Errorf("sending bulk data: %w", err)
		}
	}
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		return fmt.Errorf("reading acknowledgement: %w", err)
	}
	return nil
}

// pingOp writes buf and reads as many bytes back.
func pingOp(c net.Conn, buf []byte) error {
	if _, err := c.Write(buf); err != nil {
		return fmt.Errorf("writing ping: %w", err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("reading pong: %w", err)
	}
	return nil
}

// connectOp dials addr, bounces one byte and closes.
func connectOp(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dialing %s: %w", addr, err)
	}
	defer c.Close()
	return pingOp(c, []byte{1})
}

// echo writes back what it reads, then passes on the half-close.
func echo(c *net.TCPConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				c.CloseWrite()
			}
			return
		}
	}
}

// sink discards what it reads and writes one byte after every op bytes.
func sink(op int) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		buf := make([]byte, writeSize)
		for {
			for left := op; left > 0; {
				n, err := c.Read(buf[:min(len(buf), left)])
				left -= n
				if err != nil {
					return
				}
			}
			if _, err := c.Write(buf[:1]); err != nil {
				return
			}
		}
	}
}

// startTarget serves every connection to a fresh 127.0.0.1 listener with
// serve until the benchmark or test ends.
func startTarget(tb testing.TB, serve func(c *net.TCPConn)) netip.AddrPort {
	tb.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatalf("listening for the target: %v", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[*net.TCPConn]struct{})
	)
	wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				serve(c)
			})
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// dial connects to addr and closes the connection when the benchmark or test
// ends.
func dial(tb testing.TB, addr string) *net.TCPConn {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatalf("dialing %s: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// gateway is a running proxy.Server with the tcp handler.
type gateway struct {
	srv  *proxy.Server
	reg  *prometheus.Registry
	addr string
}

// startGateway runs a proxy.Server with the tcp handler, configured as the
// daemon configures it but with a discarding logger, that sends every
// connection to dest; it shuts the server down when the benchmark or test
// ends.
func startGateway(tb testing.TB, dest netip.AddrPort) *gateway {
	tb.Helper()
	reg := prometheus.NewRegistry()
	srv, err := proxy.NewServer(proxy.Options{
		Handlers:   map[string]proxy.Handler{"tcp": tcp.New(reg)},
		Registerer: reg,
	})
	if err != nil {
		tb.Fatalf("creating the gateway: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listening for the gateway: %v", err)
	}
	// The gateway's work after attribution, without the kernel lookup
	// that transparent mode does (benchmarked on its own).
	a := proxytest.Fixed{
		Target:      proxy.Target{ID: 1, Name: "bench", Protocol: "tcp", Address: dest.String()},
		Caller:      identity.Caller{Workload: "bench"},
		Destination: dest,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(context.Background(), ln, a) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if cut, err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("shutting down the gateway: cut %d sessions: %v", cut, err)
		}
		if err := <-serveErr; err != nil {
			tb.Errorf("gateway Serve: %v", err)
		}
	})
	return &gateway{srv: srv, reg: reg, addr: ln.Addr().String()}
}

// drain waits until every session has ended, so that their byte counts are
// final. The caller must have closed its connections.
func (g *gateway) drain(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	defer cancel()
	if cut, err := g.srv.Shutdown(ctx); cut != 0 || err != nil {
		tb.Fatalf("gateway Shutdown() = %d, %v; want every session to have ended by itself", cut, err)
	}
}

// forwarded is the gateway's interlock_tcp_bytes_total for the bench target
// in one direction.
func (g *gateway) forwarded(tb testing.TB, direction string) float64 {
	tb.Helper()
	families, err := g.reg.Gather()
	if err != nil {
		tb.Fatalf("gathering gateway metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != "interlock_tcp_bytes_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := make(map[string]string)
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["target"] == "bench" && labels["direction"] == direction {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
