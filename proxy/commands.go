package proxy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/interlock-dev/interlock/identity"
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
		}, []string{"protocol", "target", "workload", "subject", "issuer", "groups", "decision"}),
		blocked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlock_blocked_commands_total",
			Help: "Commands that did not run because of policy, by the rule that stopped them (\"\" for policy.default).",
		}, []string{"protocol", "target", "workload", "subject", "issuer", "groups", "rule"}),
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
func (m *CommandMetrics) Decided(protocol, target string, caller identity.Caller, d policy.Decision) {
	if m == nil {
		return
	}
	subject, issuer, groups := IdentityLabels(caller.Identity)
	m.commands.WithLabelValues(protocol, target, caller.Workload, subject, issuer, groups, string(d.Action)).Inc()
	if !Allowed(d) {
		m.blocked.WithLabelValues(protocol, target, caller.Workload, subject, issuer, groups, d.Rule).Inc()
	}
}

// IdentityLabels are an identity as metric labels: its subject, issuer
// ("" for static identities) and groups, sorted and joined with commas.
func IdentityLabels(id identity.Identity) (subject, issuer, groups string) {
	g := slices.Clone(id.Groups)
	slices.Sort(g)
	return id.Subject, id.Issuer, strings.Join(g, ",")
}

// Masked counts n values rewritten by the mask rule.
func (m *CommandMetrics) Masked(target, rule string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.masked.WithLabelValues(target, rule).Add(float64(n))
}
