package proxy

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/policy"
)

func TestCommandMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewCommandMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	agent := identity.Caller{Workload: "agent", Identity: identity.Identity{Subject: "bot", Issuer: "https://idp", Groups: []string{"z", "a"}}}
	sc := m.Session("postgres", "shop", agent)
	// The allow counter is looked up once per session and then reused:
	// every allow counts, and another session keeps its own series.
	sc.Decided(policy.Decision{Action: policy.Allow})
	sc.Decided(policy.Decision{Action: policy.Allow})
	other := m.Session("postgres", "shop", identity.Caller{Workload: "etl"})
	other.Decided(policy.Decision{Action: policy.Allow})
	sc.Decided(policy.Decision{Action: policy.Allow})
	sc.Decided(policy.Decision{Action: policy.Deny, Rule: "no-ddl"})
	sc.Decided(policy.Decision{Action: VerdictApproved, Rule: "held"})
	m.Masked("shop", "pii", 3)
	m.Masked("shop", "pii", 0)

	if got := testutil.ToFloat64(m.commands.WithLabelValues("postgres", "shop", "agent", "bot", "https://idp", "a,z", "allow")); got != 3 {
		t.Errorf("allowed: %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.commands.WithLabelValues("postgres", "shop", "etl", "", "", "", "allow")); got != 1 {
		t.Errorf("allowed for the other session: %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.commands.WithLabelValues("postgres", "shop", "agent", "bot", "https://idp", "a,z", "deny")); got != 1 {
		t.Errorf("denied: %v", got)
	}
	if got := testutil.ToFloat64(m.blocked.WithLabelValues("postgres", "shop", "agent", "bot", "https://idp", "a,z", "no-ddl")); got != 1 {
		t.Errorf("blocked: %v", got)
	}
	if got := testutil.CollectAndCount(m.blocked); got != 1 {
		t.Errorf("an allowed or approved command was counted as blocked (%d series)", got)
	}
	if got := testutil.ToFloat64(m.masked.WithLabelValues("shop", "pii")); got != 3 {
		t.Errorf("masked: %v", got)
	}
	if _, err := NewCommandMetrics(reg); err == nil {
		t.Error("registering twice did not fail")
	}
	var nilMetrics *CommandMetrics
	nilMetrics.Session("p", "t", agent).Decided(policy.Decision{Action: policy.Deny}) // must not panic
}
