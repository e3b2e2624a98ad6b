// Package proxytest holds what the protocol handlers' tests share: reading
// the gateway's metrics, waiting for a condition, and a log sink safe for
// the gateway's goroutines, and a fixed attribution. It is for tests only.
package proxytest

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/interlock-dev/interlock/proxy"
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
