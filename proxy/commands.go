package proxy

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/interlock-dev/interlock/policy"
)

// CommandMetrics are the per-command counters every protocol handler
// feeds, so that "what was blocked, for whom, by which rule" is one query
// across PostgreSQL, SSH and Kubernetes.
type CommandMetrics struct {
	commands *prometheus.CounterVec
	blocked  *prometheus.CounterVec
	masked   *prometheus.CounterVec
}

// NewCommandMetrics registers the command metrics on reg (nil: not
// registered, still usable).
func NewCommandMetrics(reg prometheus.Registerer) (*CommandMetrics, error) {
	m := &CommandMetrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlock_commands_total",
			Help: "Commands decided by policy, by decision (allow, deny, review, ...).",
		}, []string{"protocol", "target", "workload", "decision"}),
		blocked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlock_blocked_commands_total",
			Help: "Commands that did not run because of policy, by the rule that stopped them (\"\" for policy.default).",
		}, []string{"protocol", "target", "workload", "rule"}),
		masked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlock_masked_values_total",
			Help: "Result values rewritten by mask rules.",
		}, []string{"target", "rule"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.commands, m.blocked, m.masked} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering command metrics: %w", err)
	}
	return m, nil
}

// Decided counts one decided command under its decision (allow, deny, or
// a held command's approved, granted, rejected, expired, abandoned); one
// that does not run also counts as blocked under its rule.
func (m *CommandMetrics) Decided(protocol, target, workload string, d policy.Decision) {
	if m == nil {
		return
	}
	m.commands.WithLabelValues(protocol, target, workload, string(d.Action)).Inc()
	if !Allowed(d) {
		m.blocked.WithLabelValues(protocol, target, workload, d.Rule).Inc()
	}
}

// Masked counts n values rewritten by the mask rule.
func (m *CommandMetrics) Masked(target, rule string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.masked.WithLabelValues(target, rule).Add(float64(n))
}
