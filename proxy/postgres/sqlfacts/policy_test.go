package sqlfacts_test

import (
	"testing"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
)

// decide classifies sql and decides each of its statements with p, with
// the facts the PostgreSQL handler gives policy; it returns the rule of
// the first denial, or "".
func decide(t *testing.T, p *policy.Policy, sql string) string {
	t.Helper()
	stmts, err := sqlfacts.NewClassifier(0).Classify(sql)
	if err != nil {
		t.Fatalf("Classify(%q): %v", sql, err)
	}
	for _, st := range stmts {
		d := p.Decide(policy.Request{
			Target: policy.Target{Name: "shop", Protocol: "postgres"},
			SQL: &policy.SQL{
				Command: st.Command, Kind: st.Kind, Commands: st.Commands, Tables: st.Tables,
				Functions: st.Functions, HasWhere: st.HasWhere, Text: st.Text,
			},
		})
		if d.Action == policy.Deny {
			return d.Rule
		}
	}
	return ""
}

func compile(t *testing.T, when string) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(policy.Config{Default: "allow", Rules: []policy.RuleConfig{
		{Name: "no-unbounded-delete", When: when, Action: "deny"},
	}}, policy.Env{Targets: map[string]string{"shop": "postgres"}})
	if err != nil {
		t.Fatalf("compiling %s: %v", when, err)
	}
	return p
}

// TestUnboundedDeleteRules runs the README's rule against the ways a
// DELETE without WHERE can be written. The rule on sql.commands catches
// them all; the rule on sql.command, as the README had it first, still
// loads and catches the plain DELETE, but not one nested in another
// statement.
func TestUnboundedDeleteRules(t *testing.T) {
	robust := compile(t, `"DELETE" in sql.commands && !sql.has_where`)
	literal := compile(t, `sql.command == "DELETE" && !sql.has_where`)
	for _, tt := range []struct {
		sql             string
		denied, literal bool
	}{
		{"DELETE FROM customers", true, true},
		{"EXPLAIN ANALYZE DELETE FROM customers", true, false},
		{"PREPARE p AS DELETE FROM customers", true, false},
		{"WITH d AS (DELETE FROM customers RETURNING 1) SELECT 1", true, false},
		{"WITH d AS (DELETE FROM customers RETURNING 1) SELECT 1 WHERE true", true, false},
		{"WITH d AS (DELETE FROM customers) DELETE FROM t WHERE id = 1", true, true},
		{"COPY (DELETE FROM customers RETURNING *) TO STDOUT", true, false},
		{"MERGE INTO customers USING (SELECT 1) s ON true WHEN MATCHED THEN DELETE", true, false},

		{"DELETE FROM customers WHERE id = 1", false, false},
		{"EXPLAIN DELETE FROM customers", false, false},
		{"WITH d AS (DELETE FROM customers WHERE id = 1 RETURNING 1) SELECT 1", false, false},
		{"MERGE INTO customers c USING s ON c.id = s.id WHEN MATCHED AND s.gone THEN DELETE", false, false},
		{"UPDATE customers SET a = 1", false, false},
	} {
		if got := decide(t, robust, tt.sql) != ""; got != tt.denied {
			t.Errorf("sql.commands rule on %q: denied %v, want %v", tt.sql, got, tt.denied)
		}
		if got := decide(t, literal, tt.sql) != ""; got != tt.literal {
			t.Errorf("sql.command rule on %q: denied %v, want %v", tt.sql, got, tt.literal)
		}
	}
}

// TestSQLInStringsRule runs the README's rule for functions that read
// tables no fact names, since the SQL they run is a string.
func TestSQLInStringsRule(t *testing.T) {
	p := compile(t, `sql.functions.exists(f, f.matches('(^|\\.)((query|table|cursor|schema|database)_to_xml(schema|_and_xmlschema)?|ts_stat|ts_rewrite|dblink\\w*)$'))`)
	for _, tt := range []struct {
		sql    string
		denied bool
	}{
		{"SELECT query_to_xml('SELECT ssn FROM customers', true, false, '')", true},
		{"SELECT pg_catalog.query_to_xml_and_xmlschema('SELECT 1', true, false, '')", true},
		{"SELECT table_to_xml('customers', true, false, '')", true},
		{"SELECT database_to_xml(true, true, '')", true},
		{"SELECT postgres.pg_catalog.schema_to_xmlschema('public', true, false, '')", true},
		{"SELECT cursor_to_xml('c', 10, true, false, '')", true},
		{"SELECT * FROM ts_stat('SELECT tsv FROM customers')", true},
		{"SELECT ts_rewrite('a'::tsquery, 'SELECT t, s FROM aliases')", true},
		{"SELECT * FROM public.dblink('dbname=shop', 'SELECT ssn FROM customers') AS t(ssn text)", true},
		{"SELECT dblink_exec('dbname=shop', 'DELETE FROM customers')", true},
		{"SELECT xmlforest(name) FROM customers", false},
		{"SELECT my_table_to_xml_helper()", false},
	} {
		if got := decide(t, p, tt.sql) != ""; got != tt.denied {
			t.Errorf("%q: denied %v, want %v", tt.sql, got, tt.denied)
		}
	}
}
