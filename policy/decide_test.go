package policy

import (
	"bytes"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func mustCompile(t testing.TB, cfg Config, opts ...Options) *Policy {
	t.Helper()
	p, err := Compile(cfg, testEnv(), opts...)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

// pg is a PostgreSQL request from the agent to shop.
func pg(sql SQL) Request {
	return Request{
		Target:   Target{Name: "shop", Protocol: "postgres", Address: "10.0.0.5:5432"},
		Workload: Workload{Name: "agent"},
		Identity: Identity{Subject: "agent@example.com", Groups: []string{"agents"}, Issuer: "https://idp.example.com"},
		SQL:      &sql,
	}
}

func TestDecide(t *testing.T) {
	rules := []RuleConfig{
		{Name: "no-ddl", When: `sql.kind == "ddl"`, Action: "deny"},
		{Name: "billing-readonly", Targets: []string{"billing"}, When: `sql.kind != "read"`, Action: "deny", Message: "billing is read-only"},
		{Name: "etl-writes", Workloads: []string{"etl"}, When: `sql.kind == "write"`, Action: "allow"},
		{Name: "hold-unbounded-delete", When: `sql.command == "DELETE" && !sql.has_where`, Action: "review", Review: &ReviewConfig{Approvers: []string{"dba"}}},
		{Name: "no-writes", When: `sql.kind == "write"`, Action: "deny"},
		{Name: "no-pg-tables", When: `sql.tables.exists(t, t.startsWith("pg_"))`, Action: "deny"},
		{Name: "admins", When: `"admins" in identity.groups`, Action: "allow"},
		{Name: "ssh-bastion", Targets: []string{"bastion"}, When: `target.protocol == "ssh"`, Action: "allow"},
		{Name: "reads", When: `sql.kind == "read"`, Action: "allow"},
	}
	withTarget := func(r Request, name string) Request { r.Target.Name = name; return r }
	withWorkload := func(r Request, name string) Request { r.Workload.Name = name; return r }
	withGroups := func(r Request, groups ...string) Request { r.Identity.Groups = groups; return r }
	ssh := Request{Target: Target{Name: "bastion", Protocol: "ssh"}, Workload: Workload{Name: "agent"}}

	tests := []struct {
		name    string
		dflt    string
		req     Request
		want    Decision
		wantMsg string
	}{
		{
			name: "first match decides",
			req:  withWorkload(pg(SQL{Command: "DROP", Kind: "ddl"}), "etl"),
			want: Decision{Action: Deny, Rule: "no-ddl", Message: "denied by interlock policy rule no-ddl"},
		},
		{
			name: "earlier allow wins over later deny",
			req:  withWorkload(pg(SQL{Command: "INSERT", Kind: "write"}), "etl"),
			want: Decision{Action: Allow, Rule: "etl-writes"},
		},
		{
			name: "workload scoping: the allow is only for etl",
			req:  pg(SQL{Command: "INSERT", Kind: "write"}),
			want: Decision{Action: Deny, Rule: "no-writes", Message: "denied by interlock policy rule no-writes"},
		},
		{
			name: "target scoping with custom message",
			req:  withWorkload(withTarget(pg(SQL{Command: "INSERT", Kind: "write"}), "billing"), "etl"),
			want: Decision{Action: Deny, Rule: "billing-readonly", Message: "billing is read-only"},
		},
		{
			name: "target scoping: the billing rule is not for shop",
			req:  pg(SQL{Command: "SELECT", Kind: "read", Tables: []string{"orders"}}),
			want: Decision{Action: Allow, Rule: "reads"},
		},
		{
			name: "review",
			req:  pg(SQL{Command: "DELETE", Kind: "write", Tables: []string{"orders"}}),
			want: Decision{Action: Review, Rule: "hold-unbounded-delete", Message: "interlock policy rule hold-unbounded-delete requires review"},
		},
		{
			name: "where clause avoids the review",
			req:  pg(SQL{Command: "DELETE", Kind: "write", HasWhere: true}),
			want: Decision{Action: Deny, Rule: "no-writes", Message: "denied by interlock policy rule no-writes"},
		},
		{
			name: "list fact",
			req:  withGroups(pg(SQL{Command: "SELECT", Kind: "read", Tables: []string{"public.orders", "pg_authid"}}), "admins"),
			want: Decision{Action: Deny, Rule: "no-pg-tables", Message: "denied by interlock policy rule no-pg-tables"},
		},
		{
			name: "identity groups",
			req:  withGroups(pg(SQL{Command: "SET", Kind: "session"}), "agents", "admins"),
			want: Decision{Action: Allow, Rule: "admins"},
		},
		{
			name: "no match: default allow",
			req:  pg(SQL{Command: "SET", Kind: "session"}),
			want: Decision{Action: Allow},
		},
		{
			name: "no match: default deny",
			dflt: "deny",
			req:  pg(SQL{Command: "SET", Kind: "session"}),
			want: Decision{Action: Deny, Message: "denied by interlock policy default"},
		},
		{
			name: "non-SQL request sees zero sql facts",
			dflt: "deny",
			req:  ssh,
			want: Decision{Action: Allow, Rule: "ssh-bastion"},
		},
		{
			name: "non-SQL request elsewhere falls to the default",
			dflt: "deny",
			req:  Request{Target: Target{Name: "shop", Protocol: "postgres"}},
			want: Decision{Action: Deny, Message: "denied by interlock policy default"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, Config{Default: tt.dflt, Rules: rules})
			got := p.Decide(tt.req)
			if (got.Review != nil) != (got.Action == Review) {
				t.Errorf("Decide = %+v: review settings only and always with review", got)
			}
			got.Review = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decide = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecideRuleWithoutCondition(t *testing.T) {
	p := mustCompile(t, Config{Rules: []RuleConfig{
		{Name: "etl-only", Workloads: []string{"agent"}, Action: "deny"},
	}})
	if got := p.Decide(pg(SQL{Command: "SELECT", Kind: "read"})); got.Action != Deny || got.Rule != "etl-only" {
		t.Errorf("agent: Decide = %+v, want deny by etl-only", got)
	}
	r := pg(SQL{})
	r.Workload.Name = "etl"
	if got := p.Decide(r); got.Action != Allow || got.Rule != "" {
		t.Errorf("etl: Decide = %+v, want the default allow", got)
	}
}

func TestDecideFailsClosed(t *testing.T) {
	tests := []struct {
		name string
		when string
		req  Request
	}{
		{name: "index out of range", when: `sql.tables[5] == "x"`, req: pg(SQL{Command: "SELECT"})},
		{name: "index out of range without sql", when: `sql.tables[0] == "x"`, req: Request{Target: Target{Name: "shop"}}},
		{name: "dyn of the wrong type", when: `dyn(sql.kind) > 3`, req: pg(SQL{Kind: "read"})},
		{name: "division by zero", when: `size(sql.tables) / size(sql.functions) > 1`, req: pg(SQL{Tables: []string{"a"}})},
		// Some 9 million comparisons: past the cost limit, so it denies
		// rather than holding the gateway.
		{name: "too costly", when: `sql.tables.all(a, sql.tables.all(b, a == b || a != b))`, req: pg(SQL{Tables: manyTables(3000)})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			p := mustCompile(t, Config{Rules: []RuleConfig{
				{Name: "fragile", When: tt.when, Action: "allow"},
				{Name: "later", Action: "allow"},
			}}, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			want := Decision{Action: Deny, Rule: "fragile", Message: "policy rule fragile could not be evaluated"}
			if got := p.Decide(tt.req); got != want {
				t.Errorf("Decide = %+v, want %+v", got, want)
			}
			if !strings.Contains(logs.String(), "rule=fragile") || !strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("the failure was not logged with the rule: %q", logs.String())
			}
		})
	}
}

func TestDecideWithoutLoggerDoesNotPanic(t *testing.T) {
	p := mustCompile(t, Config{Rules: []RuleConfig{{Name: "fragile", When: `sql.tables[1] == "x"`, Action: "allow"}}})
	if got := p.Decide(pg(SQL{})); got.Action != Deny {
		t.Errorf("Decide = %+v, want deny", got)
	}
}

func TestDecideConcurrent(t *testing.T) {
	p := mustCompile(t, Config{Default: "deny", Rules: []RuleConfig{
		{Name: "reads", When: `sql.kind == "read" && !("secrets" in sql.tables)`, Action: "allow"},
	}})
	if err := p.Register(prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				table := "orders"
				if (i+j)%2 == 0 {
					table = "secrets"
				}
				got := p.Decide(pg(SQL{Kind: "read", Tables: []string{table}}))
				if (table == "orders") != (got.Action == Allow) {
					t.Errorf("table %s: Decide = %+v", table, got)
					return
				}
			}
		})
	}
	wg.Wait()
}

// decisionCount is the number of observations of
// interlock_policy_decision_seconds{protocol}.
func decisionCount(t *testing.T, reg *prometheus.Registry, protocol string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "interlock_policy_decision_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "protocol" && l.GetValue() == protocol {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

func TestDecisionMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := mustCompile(t, Config{Rules: []RuleConfig{{Name: "no-ddl", When: `sql.kind == "ddl"`, Action: "deny"}}})
	p.Decide(pg(SQL{})) // before Register: not observed, and no panic
	if err := p.Register(reg); err != nil {
		t.Fatalf("Register: %v", err)
	}
	// The Env's protocols exist before any decision.
	if n, err := testutil.GatherAndCount(reg, "interlock_policy_decision_seconds"); err != nil || n != 2 {
		t.Fatalf("series after Register = %d, %v; want 2 (postgres, ssh)", n, err)
	}
	for i := range 3 {
		p.Decide(pg(SQL{Kind: "ddl"}))
		if got := decisionCount(t, reg, "postgres"); got != uint64(i+1) {
			t.Fatalf("after %d decisions: postgres count = %d", i+1, got)
		}
	}
	if got := decisionCount(t, reg, "ssh"); got != 0 {
		t.Errorf("ssh count = %d, want 0", got)
	}
	p.Decide(Request{Target: Target{Name: "other", Protocol: "kube"}})
	if got := decisionCount(t, reg, "kube"); got != 1 {
		t.Errorf("kube count = %d, want 1", got)
	}

	// A recompiled policy registers on the same registry and shares the series.
	p2 := mustCompile(t, Config{})
	if err := p2.Register(reg); err != nil {
		t.Fatalf("Register of a recompiled policy: %v", err)
	}
	p2.Decide(pg(SQL{}))
	if got := decisionCount(t, reg, "postgres"); got != 4 {
		t.Errorf("postgres count after the second policy decided = %d, want 4", got)
	}
	// Tests are not traffic.
	p.RunTests(nil)
	if got := decisionCount(t, reg, "postgres"); got != 4 {
		t.Errorf("RunTests moved the histogram to %d", got)
	}
}

func TestRegisterConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "interlock_policy_decision_seconds", Help: "not a histogram"}))
	p := mustCompile(t, Config{})
	if err := p.Register(reg); err == nil {
		t.Fatal("Register succeeded over a conflicting metric")
	}
}

// BenchmarkDecide decides a SELECT against a realistic rule list: a few
// scoped rules skipped by name, conditions over sql and identity, and the
// matching rule last.
func BenchmarkDecide(b *testing.B) {
	p, err := Compile(Config{Default: "deny", Rules: []RuleConfig{
		{Name: "billing-readonly", Targets: []string{"billing"}, When: `sql.kind != "read"`, Action: "deny"},
		{Name: "etl-writes", Workloads: []string{"etl"}, When: `sql.kind == "write"`, Action: "allow"},
		{Name: "no-ddl", When: `sql.kind == "ddl"`, Action: "deny"},
		{Name: "hold-deletes", When: `sql.command == "DELETE" && !sql.has_where`, Action: "review", Review: &ReviewConfig{Approvers: []string{"dba"}}},
		{Name: "no-pg-tables", When: `sql.tables.exists(t, t.startsWith("pg_"))`, Action: "deny"},
		{Name: "no-sleep", When: `"pg_sleep" in sql.functions`, Action: "deny"},
		{Name: "reads", When: `sql.kind == "read" && "agents" in identity.groups`, Action: "allow"},
	}}, testEnv())
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Register(prometheus.NewRegistry()); err != nil {
		b.Fatal(err)
	}
	r := pg(SQL{Command: "SELECT", Kind: "read", Tables: []string{"public.orders", "public.customers"}, Functions: []string{"count"}, HasWhere: true})
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Decide(r); d.Action != Allow {
			b.Fatalf("Decide = %+v", d)
		}
	}
}

func TestDecideWholeNamespaces(t *testing.T) {
	tests := []struct {
		when string
		req  Request
		want bool
	}{
		{`has(sql.kind)`, pg(SQL{Kind: "read"}), true},
		{`has(sql.kind)`, Request{}, false},
		{`has(sql.tables)`, pg(SQL{}), false},
		{`has(sql.has_where)`, pg(SQL{HasWhere: true}), true},
		{`has(identity.groups)`, pg(SQL{}), true},
		{`type(sql) == interlock.SQL`, Request{}, true},
		{`sql == sql && identity == identity`, pg(SQL{}), true},
		{`[sql, sql].all(s, s.kind == "read")`, pg(SQL{Kind: "read"}), true},
		{`sql.tables == []`, Request{}, true},
		{`identity.subject == "" && workload.name == "" && target.address == ""`, Request{}, true},
	}
	for _, tt := range tests {
		p := mustCompile(t, Config{Rules: []RuleConfig{{Name: "r", When: tt.when, Action: "deny"}}})
		got := p.Decide(tt.req)
		if (got.Action == Deny) != tt.want || (tt.want && got.Message != "denied by interlock policy rule r") {
			t.Errorf("%s: Decide = %+v, want matched: %v", tt.when, got, tt.want)
		}
	}
}

// manyTables is n distinct table names.
func manyTables(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "t" + strconv.Itoa(i)
	}
	return out
}

// TestDecideRegexCost checks that a regular expression is charged by its
// compiled program, not its length: "[^x]{500}x" is 10 characters and 503
// instructions, and ran for minutes over a 16 MiB statement while charged a
// few million.
func TestDecideRegexCost(t *testing.T) {
	t.Run("a match over the limit is refused before it runs", func(t *testing.T) {
		p := mustCompile(t, Config{Rules: []RuleConfig{
			{Name: "fragile", When: `sql.text.matches("[^x]{500}x")`, Action: "allow"},
		}})
		p.maxEvalTime = time.Hour // the cost decides, not the deadline
		want := Decision{Action: Deny, Rule: "fragile", Message: "policy rule fragile could not be evaluated"}
		if got := p.Decide(pg(SQL{Text: strings.Repeat("a", 512<<10)})); got != want {
			t.Errorf("Decide = %+v, want %+v", got, want)
		}
	})
	t.Run("a rule's matches share its limit", func(t *testing.T) {
		// Each match costs just under the limit and is quick (a literal
		// prefix that is never found); the second must be refused before it
		// runs, not charged after: with "[^x]{500}x" each takes seconds.
		var logs bytes.Buffer
		p := mustCompile(t, Config{Rules: []RuleConfig{
			{Name: "twice", When: `sql.text.matches("x[^x]{500}") || sql.text.matches("y[^y]{500}")`, Action: "allow"},
		}}, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		p.maxEvalTime = time.Hour
		text := strings.Repeat("a", 380<<10)
		if c := matchCost(text, 503); c > maxRuleCost || 2*c <= maxRuleCost {
			t.Fatalf("a match costs %d: the test needs one under the limit and two over", c)
		}
		want := Decision{Action: Deny, Rule: "twice", Message: "policy rule twice could not be evaluated"}
		if got := p.Decide(pg(SQL{Text: text})); got != want {
			t.Errorf("Decide = %+v, want %+v", got, want)
		}
		if !strings.Contains(logs.String(), "over what is left of the rule's limit") {
			t.Errorf("log %q: the second match was not refused before it ran", logs.String())
		}
		// The limit is each rule's: a later rule starts afresh.
		p = mustCompile(t, Config{Rules: []RuleConfig{
			{Name: "first", When: `sql.text.matches("x[^x]{500}")`, Action: "deny"},
			{Name: "second", When: `!sql.text.matches("y[^y]{500}")`, Action: "deny"},
		}})
		want = Decision{Action: Deny, Rule: "second", Message: "denied by interlock policy rule second"}
		if got := p.Decide(pg(SQL{Text: text})); got != want {
			t.Errorf("Decide = %+v, want %+v", got, want)
		}
	})
	for _, when := range []string{`sql.text.matches("[^x]{500}x")`, `matches(sql.text, "[^x]{500}x")`, `sql.text.matches(sql.user)`} {
		t.Run("charged by the program: "+when, func(t *testing.T) {
			p := mustCompile(t, Config{Rules: []RuleConfig{{Name: "r", When: when, Action: "allow"}}})
			r := pg(SQL{Text: strings.Repeat("a", 1000), User: "[^x]{500}x"})
			_, det, err := p.rules[0].when.Eval(p.newActivation(&r))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := *det.ActualCost(), matchCost(r.SQL.Text, 503); got < want {
				t.Errorf("cost %d, want at least %d", got, want)
			}
		})
	}
	t.Run("size of a string is charged by its length", func(t *testing.T) {
		p := mustCompile(t, Config{Rules: []RuleConfig{{Name: "r", When: `size(sql.text) > 0 && sql.text.size() > 0`, Action: "allow"}}})
		r := pg(SQL{Text: strings.Repeat("a", 1000)})
		_, det, err := p.rules[0].when.Eval(p.newActivation(&r))
		if err != nil {
			t.Fatal(err)
		}
		if got := *det.ActualCost(); got < 200 {
			t.Errorf("cost %d, want at least 200 (2 × 1000 bytes / 10)", got)
		}
	})
	t.Run("a bad literal pattern fails Compile", func(t *testing.T) {
		_, err := Compile(Config{Rules: []RuleConfig{{Name: "r", When: `sql.text.matches("(")`, Action: "deny"}}}, testEnv())
		if err == nil || !strings.Contains(err.Error(), "policy.rules[0] (r): when:") {
			t.Errorf("Compile = %v, want the rule's when at fault", err)
		}
	})
}

// TestDecideDeadline checks that every request's evaluation has a
// deadline, small ones too: within the cost limit a comprehension over 120
// names took seconds.
func TestDecideDeadline(t *testing.T) {
	for _, tc := range []struct {
		name, when string
		req        Request
		logged     string
	}{
		{
			name: "small request", when: `sql.tables.exists(a, sql.tables.exists(b, sql.tables.exists(c, a + b == c)))`,
			req: pg(SQL{Tables: manyTables(60)}), logged: "interrupted",
		},
		{
			// Interrupted at its first step, not after the whole list.
			name: "every step checks", when: `sql.tables.all(t, t != "")`,
			req: pg(SQL{Tables: manyTables(900)}), logged: "interrupted",
		},
		{
			// Work that no step interrupts is checked after the rule.
			name: "after the rule", when: `sql.text.matches("x")`,
			req: pg(SQL{Text: "select 1"}), logged: "took longer than",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			p := mustCompile(t, Config{Rules: []RuleConfig{
				{Name: "slow", When: tc.when, Action: "allow"},
			}}, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			p.maxEvalTime = time.Nanosecond
			want := Decision{Action: Deny, Rule: "slow", Message: "policy rule slow could not be evaluated"}
			if got := p.Decide(tc.req); got != want {
				t.Errorf("Decide = %+v, want %+v", got, want)
			}
			if !strings.Contains(logs.String(), tc.logged) {
				t.Errorf("log %q does not say %q", logs.String(), tc.logged)
			}
		})
	}
}
