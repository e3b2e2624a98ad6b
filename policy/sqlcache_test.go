package policy

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestReadsSQLText(t *testing.T) {
	tests := []struct {
		when string
		want bool
	}{
		{`sql.kind == "ddl"`, false},
		{`sql.command == "DELETE" && !sql.has_where`, false},
		{`sql.tables.exists(t, t.startsWith("pg_"))`, false},
		{`"admins" in identity.groups && sql.database == "shop"`, false},
		{`sql.text.contains("pg_sleep")`, true},
		{`sql.text.lowerAscii().contains("pg_sleep") || size(sql.functions) > 3`, true},
		{`has(sql.text)`, true},
		{`has(sql.kind)`, true}, // sql as a test-only operand: counted, to stay simple
		{`[sql].exists(s, s.kind == "read")`, true},
		{`sql == sql`, true},
		{`type(sql) == interlock.SQL`, true},
		{`identity.subject == "agent"`, false},
		{`ssh.command.contains("rm")`, false},
	}
	for _, tt := range tests {
		p := mustCompile(t, Config{Rules: []RuleConfig{{Name: "r", When: tt.when, Action: "deny"}}})
		if p.readsText != tt.want {
			t.Errorf("%s: readsText = %v, want %v", tt.when, p.readsText, tt.want)
		}
	}
}

// TestSQLDecisions checks that a session's decider answers what Decide
// answers, evaluating each statement shape once unless a rule reads the
// text.
func TestSQLDecisions(t *testing.T) {
	shapes := []SQL{
		{Command: "SELECT", Kind: "read", Tables: []string{"customers"}, HasWhere: true},
		{Command: "SELECT", Kind: "read", Tables: []string{"pg_authid"}},
		{Command: "DELETE", Kind: "write", Tables: []string{"orders"}},
		{Command: "DELETE", Kind: "write", Tables: []string{"orders"}, HasWhere: true},
		{Command: "DROP", Kind: "ddl", Tables: []string{"orders"}},
		{Command: "SELECT", Kind: "read", Functions: []string{"pg_sleep"}},
		// Length-prefixed fields: these two must not share a key.
		{Command: "SELECT", Kind: "read", Tables: []string{"ab", "c"}},
		{Command: "SELECT", Kind: "read", Tables: []string{"a", "bc"}},
		{Command: "SELECT", Kind: "read", Tables: []string{"a"}, Functions: []string{"b"}},
		{Command: "SELECT", Kind: "read", Tables: []string{"a", "b"}},
		// Equal in every other fact: only Commands tells them apart.
		{Command: "EXPLAIN", Kind: "write", Commands: []string{"EXPLAIN", "UPDATE"}, Tables: []string{"t"}},
		{Command: "EXPLAIN", Kind: "write", Commands: []string{"EXPLAIN", "DELETE"}, Tables: []string{"t"}},
	}
	for _, tc := range []struct {
		name      string
		rules     []RuleConfig
		evaluated int // statements evaluated of the 3 rounds below
	}{
		{
			name: "facts only",
			rules: []RuleConfig{
				{Name: "no-ddl", When: `sql.kind == "ddl"`, Action: "deny"},
				{Name: "no-unbounded-delete", When: `sql.command == "DELETE" && !sql.has_where`, Action: "deny"},
				{Name: "no-delete-inside", When: `"DELETE" in sql.commands && !sql.has_where`, Action: "deny"},
				{Name: "no-catalog", When: `sql.tables.exists(t, t.startsWith("pg_"))`, Action: "deny"},
				{Name: "a-then-bc", When: `sql.tables == ["a", "bc"]`, Action: "deny"},
				{Name: "function-b", When: `"b" in sql.functions`, Action: "review", Review: &ReviewConfig{Approvers: []string{"dba"}}},
			},
			evaluated: len(shapes),
		},
		{
			name: "text read",
			rules: []RuleConfig{
				{Name: "no-ddl", When: `sql.kind == "ddl"`, Action: "deny"},
				{Name: "no-sleep", When: `sql.text.contains("sleep")`, Action: "deny"},
			},
			evaluated: 3 * len(shapes),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			p := mustCompile(t, Config{Default: "allow", Rules: tc.rules})
			if err := p.Register(reg); err != nil {
				t.Fatal(err)
			}
			d := p.SQLDecisions(pg(SQL{Text: "ignored"}))
			for round := range 3 {
				for i, s := range shapes {
					s.Text = fmt.Sprintf("statement %d with sleep=%v", i, round == 1)
					want := p.Decide(pg(s))
					if got := d.Decide(s); got.Action != want.Action || got.Rule != want.Rule || got.Message != want.Message {
						t.Errorf("round %d, %+v: SQLDecisions = %+v, Decide = %+v", round, s, got, want)
					}
				}
			}
			// Decide above evaluated every statement once more.
			if got, want := decisionCount(t, reg, "postgres"), uint64(3*len(shapes)+tc.evaluated); got != want {
				t.Errorf("evaluations = %d, want %d", got, want)
			}
		})
	}
}

// TestSQLDecisionsBounded checks that a session with more shapes than the
// bound keeps answering correctly and does not grow past it.
func TestSQLDecisionsBounded(t *testing.T) {
	p := mustCompile(t, Config{Default: "allow", Rules: []RuleConfig{
		{Name: "odd", When: `sql.tables[0].endsWith("1") || sql.tables[0].endsWith("3")`, Action: "deny"},
	}})
	d := p.SQLDecisions(pg(SQL{}))
	for i := range 3 * maxSQLDecisions {
		s := SQL{Command: "SELECT", Kind: "read", Tables: []string{fmt.Sprintf("t%d", i)}}
		if got, want := d.Decide(s), p.Decide(pg(s)); got.Action != want.Action {
			t.Fatalf("%s: %s, want %s", s.Tables[0], got.Action, want.Action)
		}
		if len(d.memo) > maxSQLDecisions {
			t.Fatalf("memo holds %d decisions", len(d.memo))
		}
	}
}

// TestSQLDecisionsForgetFailures checks that a denial because a condition
// failed is not remembered: it may have run out of time, which the facts do
// not decide, and would deny the statement's shape for the session.
func TestSQLDecisionsForgetFailures(t *testing.T) {
	p := mustCompile(t, Config{Rules: []RuleConfig{
		{Name: "no-pg", When: `sql.tables.exists(t, t.startsWith("pg_"))`, Action: "deny"},
	}})
	d := p.SQLDecisions(pg(SQL{}))
	stmt := SQL{Command: "SELECT", Kind: "read", Tables: []string{"orders"}}
	p.maxEvalTime = time.Nanosecond
	if got := d.Decide(stmt); got.Action != Deny {
		t.Fatalf("past the deadline: Decide = %+v, want deny", got)
	}
	p.maxEvalTime = time.Hour
	if got := d.Decide(stmt); got.Action != Allow {
		t.Errorf("in time: Decide = %+v, want allow (the failure was remembered)", got)
	}
}
