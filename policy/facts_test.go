package policy

import "testing"

// TestSQLCommands: sql.commands is declared, is the handler's list, falls
// back to sql.command when the handler gave none, and is empty for other
// protocols.
func TestSQLCommands(t *testing.T) {
	p := mustCompile(t, Config{Default: "allow", Rules: []RuleConfig{
		{Name: "no-unbounded-delete", When: `"DELETE" in sql.commands && !sql.has_where`, Action: "deny"},
		{Name: "no-commands", When: `sql.commands == []`, Action: "review", Review: &ReviewConfig{Approvers: []string{"dba"}}},
	}})
	tests := []struct {
		name string
		req  Request
		want Action
	}{
		{"explain analyze delete", pg(SQL{Command: "EXPLAIN", Kind: "write", Commands: []string{"EXPLAIN", "DELETE"}}), Deny},
		{"bounded", pg(SQL{Command: "EXPLAIN", Kind: "write", Commands: []string{"EXPLAIN", "DELETE"}, HasWhere: true}), Allow},
		{"cte delete", pg(SQL{Command: "SELECT", Kind: "write", Commands: []string{"SELECT", "DELETE"}}), Deny},
		{"update only", pg(SQL{Command: "UPDATE", Kind: "write", Commands: []string{"UPDATE"}}), Allow},
		{"no list: the command", pg(SQL{Command: "DELETE", Kind: "write"}), Deny},
		{"no list, bounded", pg(SQL{Command: "DELETE", Kind: "write", HasWhere: true}), Allow},
		{"not sql", Request{Target: Target{Protocol: "ssh"}, SSH: &SSH{Request: "exec"}}, Review},
		{"no request at all", Request{}, Review},
	}
	for _, tt := range tests {
		if got := p.Decide(tt.req); got.Action != tt.want {
			t.Errorf("%s: Decide = %+v, want %s", tt.name, got, tt.want)
		}
	}
	if _, err := Compile(Config{Rules: []RuleConfig{{Name: "r", When: `sql.commands.exists(c, c == "DELETE")`, Action: "deny"}}}, testEnv()); err != nil {
		t.Errorf("sql.commands as a list of strings: %v", err)
	}
}
