package policy

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the policy package's Prometheus metrics; their names are part
// of the gateway's interface.
type metrics struct {
	// decisionSeconds is interlock_policy_decision_seconds{protocol}: how
	// long Decide took, by the request's target protocol ("" when the
	// handler did not say).
	decisionSeconds *prometheus.HistogramVec
	byProtocol      map[string]prometheus.Observer // resolved once, for the Env's protocols
}

func newMetrics(reg prometheus.Registerer, protocols []string) (*metrics, error) {
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "interlock_policy_decision_seconds",
		Help: "Time the policy took to decide one command, by the target's protocol.",
		// 1µs … 0.26s: a decision is microseconds unless a condition is slow.
		Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10),
	}, []string{"protocol"})
	if err := reg.Register(vec); err != nil {
		// A recompiled policy (a reload) shares the series of the one before.
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("registering interlock_policy_decision_seconds: %w", err)
		}
		existing, ok := are.ExistingCollector.(*prometheus.HistogramVec)
		if !ok {
			return nil, fmt.Errorf("registering interlock_policy_decision_seconds: %w", err)
		}
		vec = existing
	}
	m := &metrics{decisionSeconds: vec, byProtocol: map[string]prometheus.Observer{}}
	for _, p := range protocols {
		m.byProtocol[p] = vec.WithLabelValues(p)
	}
	return m, nil
}

func (m *metrics) observe(protocol string, d time.Duration) {
	o, ok := m.byProtocol[protocol]
	if !ok {
		o = m.decisionSeconds.WithLabelValues(protocol)
	}
	o.Observe(d.Seconds())
}

// Register registers the policy's metrics (interlock_policy_decision_seconds,
// a histogram labelled by protocol) on reg; Decide observes it from then on.
// Registering a recompiled policy on the same registry reuses the existing
// histogram.
func (p *Policy) Register(reg prometheus.Registerer) error {
	m, err := newMetrics(reg, p.protocols)
	if err != nil {
		return err
	}
	p.metrics.Store(m)
	return nil
}
