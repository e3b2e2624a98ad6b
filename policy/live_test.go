package policy

import "testing"

// TestLiveSQLDecisions: a session's decider made from a Live decides with
// the policy it last refreshed to, forgets the decisions the old policy
// made, and switches between remembering and evaluating every statement
// as the new policy reads sql.text or not.
func TestLiveSQLDecisions(t *testing.T) {
	allow := mustCompile(t, Config{Default: "allow"})
	denyOrders := mustCompile(t, Config{Rules: []RuleConfig{{Name: "orders", When: `"orders" in sql.tables`, Action: "deny"}}})
	readsText := mustCompile(t, Config{Rules: []RuleConfig{{Name: "sleep", When: `sql.text.contains("pg_sleep")`, Action: "deny"}}})
	live := NewLive(allow)
	d := live.SQLDecisions(Request{Target: Target{Name: "shop", Protocol: "postgres"}})
	orders := SQL{Command: "SELECT", Kind: "read", Tables: []string{"orders"}, Text: "SELECT * FROM orders"}
	sleep := SQL{Command: "SELECT", Kind: "read", Functions: []string{"pg_sleep"}, Text: "SELECT pg_sleep(1)"}

	if got := d.Decide(orders); got.Action != Allow {
		t.Fatalf("before the reload: %v", got)
	}
	live.Store(denyOrders)
	if got := d.Decide(orders); got.Action != Allow {
		t.Fatalf("before Refresh the decider must keep its policy (one policy per message): %v", got)
	}
	if p := d.Refresh(); p != denyOrders {
		t.Fatal("Refresh did not return the policy in force")
	}
	if got := d.Decide(orders); got.Action != Deny || got.Rule != "orders" {
		t.Fatalf("after the reload: %v, want a denial by orders (the old decision was remembered?)", got)
	}
	if live.Decide(Request{SQL: &orders}).Action != Deny {
		t.Fatal("Live.Decide does not decide with the policy in force")
	}

	live.Store(readsText)
	d.Refresh()
	if d.memo != nil {
		t.Fatal("a policy that reads sql.text must not have its decisions remembered")
	}
	if got := d.Decide(sleep); got.Action != Deny {
		t.Fatalf("with the text-reading policy: %v", got)
	}
	live.Store(allow)
	d.Refresh()
	if d.memo == nil || d.Decide(sleep).Action != Allow {
		t.Fatal("back to the allow policy: not remembering, or not allowing")
	}

	// A decider made from a Policy is fixed.
	fixed := denyOrders.SQLDecisions(Request{})
	if p := fixed.Refresh(); p != denyOrders {
		t.Fatal("Refresh changed a fixed decider's policy")
	}
}

// TestReviewDefinition: a review rule's definition digest is the same when
// the rule is compiled again unchanged, whatever else changed, and differs
// when anything of the rule does, so that grant windows end when a reload
// changes their rule.
func TestReviewDefinition(t *testing.T) {
	rule := func(when, grant string) RuleConfig {
		return RuleConfig{Name: "writes", When: when, Action: "review", Review: &ReviewConfig{Approvers: []string{"dba"}, Grant: grant}}
	}
	def := func(rules ...RuleConfig) string {
		t.Helper()
		p := mustCompile(t, Config{Rules: rules})
		for _, r := range p.rules {
			if r.name == "writes" {
				return r.decision.Review.Definition
			}
		}
		t.Fatal("no rule writes")
		return ""
	}
	base := def(rule(`sql.kind == "write"`, "10m"))
	if len(base) != 64 {
		t.Fatalf("definition %q", base)
	}
	other := RuleConfig{Name: "no-ddl", When: `sql.kind == "ddl"`, Action: "deny"}
	if got := def(other, rule(`sql.kind == "write"`, "10m")); got != base {
		t.Error("another rule changed the definition")
	}
	for name, changed := range map[string]RuleConfig{
		"condition": rule(`sql.kind == "write" || sql.kind == "ddl"`, "10m"),
		"grant":     rule(`sql.kind == "write"`, "1h"),
		"no grant":  rule(`sql.kind == "write"`, ""),
	} {
		if def(changed) == base {
			t.Errorf("%s changed, the definition did not", name)
		}
	}
}
