package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// testEnv is the world most tests compile against.
func testEnv() Env {
	return Env{
		Targets:   map[string]string{"shop": "postgres", "billing": "postgres", "bastion": "ssh"},
		Workloads: []string{"agent", "etl"},
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		// want are the problems, in order: an entry ending in "…" is a
		// prefix (CEL appends the offending source), any other is exact.
		want []string
	}{
		{
			name: "unknown default",
			cfg:  Config{Default: "review"},
			want: []string{`policy.default: unknown action "review" (want allow or deny)`},
		},
		{
			name: "rule without name or action",
			cfg:  Config{Rules: []RuleConfig{{}}},
			want: []string{
				"policy.rules[0]: name: required",
				"policy.rules[0]: action: required (allow, deny or review)",
			},
		},
		{
			name: "duplicate rule name",
			cfg: Config{Rules: []RuleConfig{
				{Name: "a", Action: "allow"},
				{Name: "a", Action: "deny"},
			}},
			want: []string{"policy.rules[1] (a): name: duplicate: policy.rules[0] has the same name"},
		},
		{
			name: "unknown action",
			cfg:  Config{Rules: []RuleConfig{{Name: "a", Action: "block"}}},
			want: []string{`policy.rules[0] (a): action: unknown action "block" (want allow, deny or review)`},
		},
		{
			name: "unknown target and workload",
			cfg:  Config{Rules: []RuleConfig{{Name: "a", Action: "deny", Targets: []string{"shop", "shopp"}, Workloads: []string{"agnet"}}}},
			want: []string{
				`policy.rules[0] (a): targets: unknown target "shopp"`,
				`policy.rules[0] (a): workloads: unknown workload "agnet"`,
			},
		},
		{
			name: "undeclared variable",
			cfg:  Config{Rules: []RuleConfig{{Name: "no-ddl", Action: "deny", When: `sqll.kind == "ddl"`}}},
			want: []string{"policy.rules[0] (no-ddl): when: ERROR: <input>:1:1: undeclared reference to 'sqll'…"},
		},
		{
			name: "unknown field",
			cfg:  Config{Rules: []RuleConfig{{Name: "no-ddl", Action: "deny", When: `sql.kindd == "ddl"`}}},
			want: []string{"policy.rules[0] (no-ddl): when: ERROR: <input>:1:4: undefined field 'kindd'…"},
		},
		{
			name: "unknown field of identity",
			cfg:  Config{Rules: []RuleConfig{{Name: "r", Action: "deny", When: `"x" in identity.group`}}},
			want: []string{"policy.rules[0] (r): when: ERROR: <input>:1:16: undefined field 'group'…"},
		},
		{
			name: "syntax error",
			cfg:  Config{Rules: []RuleConfig{{Name: "r", Action: "deny", When: `sql.kind ==`}}},
			want: []string{"policy.rules[0] (r): when: ERROR: <input>:1:12: Syntax error…"},
		},
		{
			name: "not a bool",
			cfg:  Config{Rules: []RuleConfig{{Name: "r", Action: "deny", When: `sql.kind`}}},
			want: []string{"policy.rules[0] (r): when: must be a bool expression, is string"},
		},
		{
			name: "wrong operand type",
			cfg:  Config{Rules: []RuleConfig{{Name: "r", Action: "deny", When: `sql.has_where == "yes"`}}},
			want: []string{"policy.rules[0] (r): when: ERROR: <input>:1:15: found no matching overload for '_==_' applied to '(bool, string)'…"},
		},
		{
			name: "creates an object",
			cfg:  Config{Rules: []RuleConfig{{Name: "r", Action: "deny", When: `interlock.SQL{} == sql`}}},
			want: []string{"policy.rules[0] (r): when: must not create objects (a rule reads the request's facts)"},
		},
		{
			name: "mask without columns or detectors",
			cfg:  Config{Masks: []MaskConfig{{Name: "m"}}},
			want: []string{"policy.masks[0] (m): needs columns or detectors"},
		},
		{
			name: "mask problems",
			cfg: Config{Masks: []MaskConfig{
				{Name: "m", Targets: []string{"nope"}, Columns: []string{"a.b.c.d", "customers..email", "email",
					`"Email"`, "customers.*", "email,ssn", "1st", "Public.Customers.email_2$"}, Detectors: []string{"ssn", "email"}},
				{Name: "m", Detectors: []string{"iban"}},
				{Detectors: []string{"jwt"}},
			}},
			want: []string{
				`policy.masks[0] (m): targets: unknown target "nope"`,
				`policy.masks[0] (m): columns[0]: invalid column "a.b.c.d" (want column, table.column or schema.table.column)`,
				`policy.masks[0] (m): columns[1]: invalid column "customers..email": an empty name (want column, table.column or schema.table.column, each a plain name matched without regard to case; list columns one by one)`,
				`policy.masks[0] (m): columns[3]: invalid column "\"Email\"": quoted names are not supported (want column, table.column or schema.table.column, each a plain name matched without regard to case; list columns one by one)`,
				`policy.masks[0] (m): columns[4]: invalid column "customers.*": wildcards are not supported (want column, table.column or schema.table.column, each a plain name matched without regard to case; list columns one by one)`,
				`policy.masks[0] (m): columns[5]: invalid column "email,ssn": ',' cannot be part of a name (want column, table.column or schema.table.column, each a plain name matched without regard to case; list columns one by one)`,
				`policy.masks[0] (m): columns[6]: invalid column "1st": '1' cannot be part of a name (want column, table.column or schema.table.column, each a plain name matched without regard to case; list columns one by one)`,
				`policy.masks[0] (m): detectors[0]: unknown detector "ssn" (want one of email, credit_card, iban, aws_key, jwt, private_key)`,
				"policy.masks[1] (m): name: duplicate: policy.masks[0] has the same name",
				"policy.masks[2]: name: required",
			},
		},
		{
			name: "test problems",
			cfg: Config{
				Rules: []RuleConfig{{Name: "a", Action: "allow"}},
				Tests: []TestConfig{
					{Name: "t0", Expect: "permit"},
					{Name: "t1"},
					{Name: "t2", Expect: "deny", Rule: "b"},
					{Name: "t3", Expect: "deny", Request: TestRequest{Target: "x", Workload: "y"}},
				},
			},
			want: []string{
				`policy.tests[0] (t0): expect: unknown decision "permit" (want allow, deny or review)`,
				"policy.tests[1] (t1): expect: required (allow, deny or review)",
				`policy.tests[2] (t2): rule: no rule named "b"`,
				`policy.tests[3] (t3): request.target: unknown target "x"`,
				`policy.tests[3] (t3): request.workload: unknown workload "y"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.cfg, testEnv())
			if err == nil {
				t.Fatalf("Compile succeeded (%v), want errors", p)
			}
			if p != nil {
				t.Errorf("Compile returned a policy with its error")
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("errors.Is(err, ErrInvalidPolicy) = false for %v", err)
			}
			got := unjoin(err)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(got), len(tt.want), err)
			}
			for i, e := range got {
				var ce *ConfigError
				if !errors.As(e, &ce) {
					t.Errorf("problem %d is a %T, want *ConfigError", i, e)
				}
				if !errors.Is(e, ErrInvalidPolicy) {
					t.Errorf("problem %d does not match ErrInvalidPolicy", i)
				}
				want := tt.want[i]
				if prefix, ok := strings.CutSuffix(want, "…"); ok {
					if !strings.HasPrefix(e.Error(), prefix) {
						t.Errorf("problem %d:\n got %q\nwant prefix %q", i, e.Error(), prefix)
					}
				} else if e.Error() != want {
					t.Errorf("problem %d:\n got %q\nwant %q", i, e.Error(), want)
				}
			}
		})
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestCompileValid(t *testing.T) {
	cfg := Config{
		Default: "deny",
		Rules: []RuleConfig{
			{Name: "no-ddl", Targets: []string{"shop"}, When: `sql.kind == "ddl"`, Action: "deny", Message: "no DDL here"},
			{Name: "hold-deletes", When: `sql.command == "DELETE" && !sql.has_where`, Action: "review", Review: &ReviewConfig{Approvers: []string{"dba"}}},
			{Name: "admins", When: `"admins" in identity.groups && identity.issuer.startsWith("https://")`, Action: "allow"},
			{Name: "reads", Workloads: []string{"agent"}, When: `sql.kind == "read" && sql.tables.all(t, !t.startsWith("pg_"))`, Action: "allow"},
			{Name: "ssh", When: `target.protocol == "ssh" && workload.name == "etl" && target.address != ""`, Action: "allow"},
			{Name: "strings-ext", When: `sql.text.lowerAscii().contains("pg_sleep") || size(sql.functions) > 3`, Action: "deny"},
			{Name: "presence", When: `has(sql.user) && sql.database in ["shop", "billing"]`, Action: "allow"},
			{Name: "always", Action: "deny"},
		},
		Masks: []MaskConfig{
			{Name: "pii", Columns: []string{"email", "customers.phone", "public.customers.ssn"}, Detectors: []string{"email", "credit_card"}},
			{Name: "secrets", Targets: []string{"billing"}, Detectors: []string{"iban", "aws_key", "jwt", "private_key"}},
		},
		Tests: []TestConfig{{Name: "t", Request: TestRequest{Target: "shop", Workload: "agent"}, Expect: "deny", Rule: "always"}},
	}
	if _, err := Compile(cfg, testEnv()); err != nil {
		t.Fatalf("Compile: %v", err)
	}
	if _, err := Compile(Config{}, Env{}); err != nil {
		t.Fatalf("Compile of the empty policy: %v", err)
	}
}

func TestCompileOptions(t *testing.T) {
	if _, err := Compile(Config{}, Env{}, Options{}, Options{}); err == nil {
		t.Fatal("Compile accepted two Options")
	}
	if _, err := Compile(Config{}, Env{}, Options{}); err != nil {
		t.Fatalf("Compile with Options: %v", err)
	}
}

func TestCompileReview(t *testing.T) {
	rule := func(action string, rv *ReviewConfig) Config {
		return Config{Rules: []RuleConfig{{Name: "r", When: `sql.kind == "write"`, Action: action, Review: rv}}}
	}
	bad := []struct {
		name string
		cfg  Config
		want string
	}{
		{"review without settings", rule("review", nil), "policy.rules[0] (r): review: action review needs review.approvers"},
		{"no approvers", rule("review", &ReviewConfig{}), "review.approvers: required"},
		{"bad timeout", rule("review", &ReviewConfig{Approvers: []string{"dba"}, Timeout: "soon"}), `review.timeout: "soon" is not a duration`},
		{"timeout too long", rule("review", &ReviewConfig{Approvers: []string{"dba"}, Timeout: "48h"}), "review.timeout: 48h is out of range"},
		{"bad grant", rule("review", &ReviewConfig{Approvers: []string{"dba"}, Grant: "-1m"}), "review.grant: -1m is out of range"},
		{"bad webhook", rule("review", &ReviewConfig{Approvers: []string{"dba"}, Notify: ReviewNotify{Webhook: "ftp://x"}}), `review.notify.webhook: "ftp://x" is not an http or https URL`},
		{"settings on deny", rule("deny", &ReviewConfig{Approvers: []string{"dba"}}), "review: review settings need action: review"},
	}
	for _, tc := range bad {
		_, err := Compile(tc.cfg, testEnv())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	p, err := Compile(rule("review", &ReviewConfig{Approvers: []string{"dba"}, Grant: "15m", Notify: ReviewNotify{Webhook: "http://127.0.0.1:9/hook"}}), testEnv())
	if err != nil {
		t.Fatal(err)
	}
	d := p.Decide(pg(SQL{Kind: "write"}))
	if d.Action != Review || d.Review == nil || d.Review.Timeout != 5*time.Minute || d.Review.Grant != 15*time.Minute ||
		d.Review.Approvers[0] != "dba" || d.Review.Webhook != "http://127.0.0.1:9/hook" {
		t.Errorf("decision %+v, settings %+v", d, d.Review)
	}
}
