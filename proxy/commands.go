package proxy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

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

// SessionCommands are the command counters of one session, labelled with
// its protocol, target and caller once, so that counting a command on the
// hot path is one lookup by decision (or rule).
type SessionCommands struct {
	commands *prometheus.CounterVec // curried: decision left
	blocked  *prometheus.CounterVec // curried: rule left
	// allowed is commands' allow series, looked up once: most commands
	// are allowed, and a curried vector hashes every label on each lookup.
	allowed atomic.Pointer[prometheus.Counter]
}

// Session binds the counters to one session's protocol, target and caller
// (identity included: call it once the caller's identity is known). A nil
// CommandMetrics gives a nil SessionCommands, which counts nothing.
func (m *CommandMetrics) Session(protocol, target string, caller identity.Caller) *SessionCommands {
	if m == nil {
		return nil
	}
	subject, issuer, groups := IdentityLabels(caller.Identity)
	labels := prometheus.Labels{"protocol": protocol, "target": target, "workload": caller.Workload,
		"subject": subject, "issuer": issuer, "groups": groups}
	return &SessionCommands{commands: m.commands.MustCurryWith(labels), blocked: m.blocked.MustCurryWith(labels)}
}

// Decided counts one decided command under its decision (allow, deny, or
// a held command's approved, granted, rejected, expired, abandoned); one
// that does not run also counts as blocked under its rule.
func (s *SessionCommands) Decided(d policy.Decision) {
	if s == nil {
		return
	}
	if d.Action == policy.Allow {
		c := s.allowed.Load()
		if c == nil {
			allow := s.commands.WithLabelValues(string(policy.Allow))
			c = &allow
			s.allowed.Store(c)
		}
		(*c).Inc()
		return
	}
	s.commands.WithLabelValues(string(d.Action)).Inc()
	if !Allowed(d) {
		s.blocked.WithLabelValues(d.Rule).Inc()
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
