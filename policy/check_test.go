package policy

import (
	"errors"
	"strings"
	"testing"
)

// fakeFacts stands in for the SQL classifier: statements are separated by
// ';', the first word is the command, "DROP" and "CREATE" are ddl, "SELECT"
// is read, anything else write; "garbage" does not parse.
func fakeFacts(tr TestRequest) ([]TestStep, error) {
	base := Request{
		Target:   Target{Name: tr.Target, Protocol: "postgres"},
		Workload: Workload{Name: tr.Workload},
		Identity: Identity{Subject: tr.Subject, Groups: tr.Groups},
	}
	if tr.SQL == "" {
		return []TestStep{{Request: base}}, nil
	}
	var out []TestStep
	for stmt := range strings.SplitSeq(tr.SQL, ";") {
		stmt = strings.TrimSpace(stmt)
		if stmt == "" {
			continue
		}
		if strings.Contains(stmt, "garbage") {
			return nil, errors.New("syntax error at or near \"garbage\"")
		}
		cmd, _, _ := strings.Cut(stmt, " ")
		s := SQL{Command: strings.ToUpper(cmd), Text: stmt, Database: tr.Database, User: tr.User}
		switch s.Command {
		case "DROP", "CREATE":
			s.Kind = "ddl"
		case "SELECT":
			s.Kind = "read"
		default:
			s.Kind = "write"
		}
		r := base
		r.SQL = &s
		out = append(out, TestStep{Request: r})
	}
	return out, nil
}

func TestRunTests(t *testing.T) {
	cfg := Config{
		Default: "deny",
		Rules: []RuleConfig{
			{Name: "no-ddl", When: `sql.kind == "ddl"`, Action: "deny"},
			{Name: "hold-writes", When: `sql.kind == "write" && sql.database == "shop"`, Action: "review", Review: &ReviewConfig{Approvers: []string{"dba"}}},
			{Name: "reads", When: `sql.kind == "read"`, Action: "allow"},
			{Name: "writers", When: `"writers" in identity.groups`, Action: "allow"},
		},
	}
	cfg.Tests = []TestConfig{
		{Name: "select is allowed", Request: TestRequest{Target: "shop", SQL: "SELECT 1"}, Expect: "allow", Rule: "reads"},
		{Name: "drop is denied", Request: TestRequest{Target: "shop", SQL: "DROP TABLE t"}, Expect: "deny", Rule: "no-ddl"},
		{Name: "drop after a select is denied", Request: TestRequest{SQL: "SELECT 1; DROP TABLE t"}, Expect: "deny", Rule: "no-ddl"},
		{Name: "writes in shop are held", Request: TestRequest{SQL: "SELECT 1; UPDATE t SET a = 1", Database: "shop"}, Expect: "review"},
		{Name: "writers write elsewhere", Request: TestRequest{SQL: "INSERT INTO t VALUES (1)", Groups: []string{"writers"}}, Expect: "allow", Rule: "writers"},
		{Name: "unparsable fails although expected denied", Request: TestRequest{SQL: "garbage"}, Expect: "deny"},
		{Name: "no statement at all fails", Request: TestRequest{SQL: " ; "}, Expect: "deny"},
		{Name: "wrong expectation", Request: TestRequest{SQL: "SELECT 1"}, Expect: "deny"},
		{Name: "wrong rule", Request: TestRequest{SQL: "DROP TABLE t"}, Expect: "deny", Rule: "reads"},
		{Name: "unparsable expected allowed", Request: TestRequest{SQL: "garbage"}, Expect: "allow"},
		{Name: "default", Request: TestRequest{SQL: "INSERT INTO t VALUES (1)"}, Expect: "deny"},
	}
	p := mustCompile(t, cfg)
	results := p.RunTests(fakeFacts)
	want := []struct {
		passed  bool
		action  Action
		rule    string
		withErr bool
	}{
		{true, Allow, "reads", false},
		{true, Deny, "no-ddl", false},
		{true, Deny, "no-ddl", false},
		{true, Review, "hold-writes", false},
		{true, Allow, "writers", false},
		{false, "", "", true},
		{false, "", "", true},
		{false, Allow, "reads", false},
		{false, Deny, "no-ddl", false},
		{false, "", "", true},
		{true, Deny, "", false},
	}
	if len(results) != len(want) {
		t.Fatalf("got %d results, want %d", len(results), len(want))
	}
	for i, r := range results {
		w := want[i]
		tc := cfg.Tests[i]
		if r.Name != tc.Name || r.Index != i || r.Want != tc.Expect || r.WantRule != tc.Rule {
			t.Errorf("%d: identification %+v does not match the test %+v", i, r, tc)
		}
		if r.Passed != w.passed || r.Got.Action != w.action || r.Got.Rule != w.rule || (r.Err != nil) != w.withErr {
			t.Errorf("%s: got passed=%v %s/%q err=%v; want passed=%v %s/%q err=%v",
				tc.Name, r.Passed, r.Got.Action, r.Got.Rule, r.Err, w.passed, w.action, w.rule, w.withErr)
		}
	}
	if err := results[5].Err; err == nil || !strings.Contains(err.Error(), `syntax error at or near "garbage"`) {
		t.Errorf("the facts error is not reported: %v", err)
	}
}

func TestRunTestsWithoutFacts(t *testing.T) {
	p := mustCompile(t, Config{
		Rules: []RuleConfig{{Name: "etl-only", Workloads: []string{"agent"}, Action: "deny"}},
		Tests: []TestConfig{
			{Name: "agent", Request: TestRequest{Target: "shop", Workload: "agent"}, Expect: "deny", Rule: "etl-only"},
			{Name: "etl", Request: TestRequest{Target: "shop", Workload: "etl"}, Expect: "allow"},
			{Name: "sql needs facts", Request: TestRequest{SQL: "SELECT 1"}, Expect: "allow"},
			{Name: "ssh needs facts", Request: TestRequest{SSH: &TestSSH{Command: "ls"}}, Expect: "allow"},
		},
	})
	results := p.RunTests(nil)
	if !results[0].Passed || !results[1].Passed {
		t.Errorf("name-only tests failed: %+v", results[:2])
	}
	for _, r := range results[2:] {
		if r.Passed || r.Err == nil {
			t.Errorf("%s: passed without a facts function: %+v", r.Name, r)
		}
	}
}

// TestRunTestsSteps: the gateway's own decision replaces the policy's, and
// a review on a request the handler cannot hold is a denial.
func TestRunTestsSteps(t *testing.T) {
	p := mustCompile(t, Config{
		Default: "allow",
		Rules: []RuleConfig{
			{Name: "hold-env", When: `ssh.request in ["env", "exec"]`, Action: "review", Review: &ReviewConfig{Approvers: []string{"ops"}}},
			{Name: "okta-only", When: `identity.issuer != "https://okta.example/"`, Action: "deny"},
		},
		Tests: []TestConfig{
			{Name: "guarded", Request: TestRequest{SQL: "SET x"}, Expect: "deny", Rule: "interlock-guard"},
			{Name: "env cannot be held", Request: TestRequest{SSH: &TestSSH{Request: "env"}}, Expect: "deny", Rule: "hold-env"},
			{Name: "exec is held", Request: TestRequest{SSH: &TestSSH{Request: "exec"}}, Expect: "review", Rule: "hold-env"},
			{Name: "issuer", Request: TestRequest{Issuer: "https://okta.example/"}, Expect: "allow"},
			{Name: "no issuer", Request: TestRequest{}, Expect: "deny", Rule: "okta-only"},
		},
	})
	guard := Decision{Action: Deny, Rule: "interlock-guard"}
	results := p.RunTests(func(tr TestRequest) ([]TestStep, error) {
		r := Request{Identity: Identity{Issuer: "https://okta.example/"}}
		switch {
		case tr.SQL != "":
			r.SQL = &SQL{Command: "SET", Text: tr.SQL}
			return []TestStep{{Request: r, Gateway: &guard}}, nil
		case tr.SSH != nil:
			r.SSH = &SSH{Request: tr.SSH.Request}
			return []TestStep{{Request: r, NoReview: tr.SSH.Request != "exec"}}, nil
		}
		r.Identity.Issuer = tr.Issuer
		return []TestStep{{Request: r}}, nil
	})
	for _, r := range results {
		if !r.Passed {
			t.Errorf("%s: got %s (rule %q), err %v; want %s (rule %q)", r.Name, r.Got.Action, r.Got.Rule, r.Err, r.Want, r.WantRule)
		}
	}
}
