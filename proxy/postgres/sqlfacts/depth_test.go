package sqlfacts

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// treeDepth is the nesting depth of a protobuf message.
func treeDepth(m protoreflect.Message) int {
	d := 0
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Kind() != protoreflect.MessageKind || !m.Has(fd) {
			continue
		}
		if fd.IsList() {
			l := m.Get(fd).List()
			for j := 0; j < l.Len(); j++ {
				d = max(d, treeDepth(l.Get(j).Message()))
			}
		} else {
			d = max(d, treeDepth(m.Get(fd).Message()))
		}
	}
	return d + 1
}

// TestNestingBoundRejectsDeepChains sends statements that, unguarded, make
// libpg_query overflow its stack and take the process down. Each must come
// back as a syntax error instead.
func TestNestingBoundRejectsDeepChains(t *testing.T) {
	const n = 60000
	tests := map[string]string{
		"plus":             "SELECT 1" + strings.Repeat("+1", n),
		"concat":           "SELECT a" + strings.Repeat(" || a", n),
		"cast":             "SELECT 1" + strings.Repeat("::int", n),
		"isnull":           "SELECT 1" + strings.Repeat(" ISNULL", n),
		"collate":          "SELECT a" + strings.Repeat(` COLLATE "C"`, n),
		"join":             "SELECT * FROM a" + strings.Repeat(" JOIN a ON true", n),
		"join with or":     "SELECT * FROM a" + strings.Repeat(" JOIN a ON x OR y", n),
		"union":            "SELECT 1, 2" + strings.Repeat(" UNION SELECT 1, 2", n),
		"case":             "SELECT " + strings.Repeat("CASE WHEN a THEN ", n) + "1" + strings.Repeat(" END", n),
		"nested calls":     "SELECT " + strings.Repeat("f(", n) + "1" + strings.Repeat(")", n),
		"second statement": "SELECT 1; SELECT 1" + strings.Repeat("+1", n),
	}
	for name, sql := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := NewClassifier(0).Classify(sql)
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("got %d statements, %v; want a syntax error", len(got), err)
			}
		})
	}
}

// TestNestingBoundAcceptsLargeFlatStatements checks that size alone is not
// mistaken for depth.
func TestNestingBoundAcceptsLargeFlatStatements(t *testing.T) {
	const n = 5000
	var rows []string
	for i := 0; i < n; i++ {
		rows = append(rows, fmt.Sprintf("(%d, -%d, '2024-01-01'::date + %d, 'x' || 'y')", i, i, i))
	}
	tests := map[string]string{
		"insert values": "INSERT INTO t (a, b, c, d) VALUES " + strings.Join(rows, ", "),
		"in list":       "SELECT * FROM t WHERE a IN (" + strings.Repeat("1, ", n) + "1)",
		"or chain":      "SELECT * FROM t WHERE " + strings.Repeat("a = 1 OR ", n) + "a = 2",
		"and chain":     "SELECT * FROM t WHERE " + strings.Repeat("a <> 1 AND ", n) + "a <> 2",
		"or of ands":    "SELECT * FROM t WHERE " + strings.Repeat("(a = 1 AND b = 2) OR ", n) + "false",
		"case":          "SELECT CASE " + strings.Repeat("WHEN a = 1 THEN b + 1 ", n) + "END FROM t",
		"columns":       "SELECT " + strings.Repeat("a + 1, ", n) + "a FROM t",
		"statements":    strings.Repeat("SELECT 1 + 1 + 1; ", n),
	}
	for name, sql := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := NewClassifier(0).Classify(sql); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// checkNestingBound checks that nestingBound bounds the depth of the parse
// tree as its callers assume: about four messages per unit, plus the
// constant nesting every statement has.
func checkNestingBound(t *testing.T, sql string) {
	t.Helper()
	toks, err := scan(sql)
	if err != nil {
		return
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return
	}
	bound := nestingBound(toks)
	if depth := treeDepth(tree.ProtoReflect()); depth > 5*bound+16 {
		t.Fatalf("%q: parse tree %d messages deep, nestingBound only %d", sql, depth, bound)
	}
}

func TestNestingBoundBoundsDepth(t *testing.T) {
	for _, n := range []int{1, 10, 100, 400} {
		for _, sql := range []string{
			"SELECT 1" + strings.Repeat("+1", n),
			"SELECT 1" + strings.Repeat("::int", n),
			"SELECT 1" + strings.Repeat(" ISNULL", n),
			"SELECT * FROM a" + strings.Repeat(" JOIN a ON x OR y", n),
			"SELECT 1, 2" + strings.Repeat(" UNION SELECT 1, 2", n),
			"SELECT " + strings.Repeat("(", n) + "1" + strings.Repeat(")", n),
			"SELECT " + strings.Repeat("f(", n) + "1" + strings.Repeat(")", n),
			"SELECT " + strings.Repeat("NOT ", n) + "true",
			"SELECT " + strings.Repeat("- ", n) + "a",
			"SELECT " + strings.Repeat("CASE WHEN a THEN ", n) + "1" + strings.Repeat(" END", n),
			"SELECT ARRAY" + strings.Repeat("[", n) + "1" + strings.Repeat("]", n),
			strings.Repeat("SELECT * FROM (", n) + "SELECT 1" + strings.Repeat(") s", n),
			"SELECT 1 FROM t" + strings.Repeat(" WHERE EXISTS (SELECT 1 FROM t", n) + strings.Repeat(")", n),
			"SELECT x" + strings.Repeat(` COLLATE "C"`, n),
			"SELECT a" + strings.Repeat(" AT TIME ZONE 'UTC'", n),
			"SELECT a" + strings.Repeat(" BETWEEN 1 AND 2 ISNULL", n),
			"SELECT " + strings.Repeat("a BETWEEN b AND ", n) + "c",
		} {
			checkNestingBound(t, sql)
		}
	}
}
