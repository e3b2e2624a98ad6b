// Package proxytest holds what the protocol handlers' tests share: reading
// the gateway's metrics, waiting for a condition, and a log sink safe for
// the gateway's goroutines, a fixed attribution, and the memory in use for
// the handlers' per-session memory benchmarks. It is for tests only.
package proxytest

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/record"
)

// Counter sums the samples of counter name in g whose labels include
// labels (other labels may be there too).
func Counter(tb testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if MatchLabels(m, labels) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// MatchLabels reports whether m carries every label of want.
func MatchLabels(m *dto.Metric, want map[string]string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// WaitFor polls cond for up to 10 seconds and fails tb naming what it
// waited for.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LockedBuffer is a log sink safe for concurrent writers.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Fixed is an Attributor that attributes every connection to one target
// and caller, as explicit mode does without the peer lookup.
type Fixed proxy.Attribution

// Attribute returns the fixed attribution.
func (f Fixed) Attribute(context.Context, net.Conn) (proxy.Attribution, error) {
	return proxy.Attribution(f), nil
}

// Commands returns the command events of every session recorded in store,
// session by session. It does not wait for sessions to end: see Idle.
func Commands(t testing.TB, store *record.Store) []record.Command {
	t.Helper()
	sums, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []record.Command
	for _, s := range sums {
		evs, err := store.Events(s.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Command != nil {
				out = append(out, *ev.Command)
			}
		}
	}
	return out
}

// Idle waits until srv has no session running: their recordings are then
// complete.
func Idle(t testing.TB, srv *proxy.Server) {
	t.Helper()
	WaitFor(t, "sessions to end", func() bool { return len(srv.Active()) == 0 })
}

// Serve runs h for protocol in a proxy.Server on a loopback listener, every
// connection attributed to at, and returns the server and the listener's
// address. When t ends the server is shut down (10 s to drain) and Serve
// has returned; a clean-up registered before Serve runs after that.
func Serve(t testing.TB, protocol string, h proxy.Handler, logger *slog.Logger, reg prometheus.Registerer, at proxy.Attribution) (*proxy.Server, string) {
	t.Helper()
	srv, err := proxy.NewServer(proxy.Options{
		Handlers:   map[string]proxy.Handler{protocol: h},
		Logger:     logger,
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ctx, ln, Fixed(at))
	}()
	t.Cleanup(func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		<-served
	})
	return srv, ln.Addr().String()
}

// InUse is the heap and stack memory in use after two collections (the
// first moves what sync.Pools hold to their victim caches, the second frees
// it: pooled buffers are nobody's).
func InUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// CPUTime is the CPU time, user and system, this process has used so far:
// a benchmark reports its difference per operation to show what the
// in-process gateway costs beyond the client, steadier on a shared machine
// than wall-clock throughput.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
