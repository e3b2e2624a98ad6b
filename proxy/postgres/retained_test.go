package postgres_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy/postgres"
)

// retainedBudget is the per-session budget the tests set: a few of
// retainedStatement's statements fit.
const retainedBudget = 64 << 10

// retainedStatement is a statement of about 10 KiB, numbered i.
func retainedStatement(i int) string {
	return fmt.Sprintf("SELECT '%s' || %d", strings.Repeat("x", 10<<10), i)
}

// fillRetained sends what send(i) makes for i = 0, 1, ... until the
// gateway refuses one for its budget (53200, naming the way out), and
// returns how many it took; ok is what a taken one gets.
func fillRetained(t *testing.T, r *raw, send func(i int), ok ...string) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		send(i)
		got := filter(r.ready())
		if eq(got, ok) {
			continue
		}
		if len(got) != 2 || !strings.Contains(got[0], "53200") || !strings.Contains(got[0], "DEALLOCATE") {
			t.Fatalf("statement %d: %q, want %q or a 53200 refusal", i, got, ok)
		}
		if i < 3 {
			t.Fatalf("refused after %d statements of 10 KiB in a budget of %d", i, retainedBudget)
		}
		return i
	}
	t.Fatal("20 statements of 10 KiB were kept in a budget of 64 KiB")
	return 0
}

// parseNamed sends a Parse of retainedStatement(i) as name, and a Sync.
func parseNamed(r *raw, name string, i int) {
	r.send(&pgproto3.Parse{Name: name, Query: retainedStatement(i)}, &pgproto3.Sync{})
}

// TestRetainedStatementsParse: the statements a session prepares are kept
// by the gateway until it closes them, within a per-session budget. The
// Parse that would go over it is refused (53200) and the session goes on;
// upstream never saw it; once the session closes statements, what they
// took is free again. The refusal is recorded.
func TestRetainedStatementsParse(t *testing.T) {
	e := newEnv(t, envOptions{retained: retainedBudget})
	r := e.rawConn(t, nil)
	r.ready()
	kept := fillRetained(t, r, func(i int) { parseNamed(r, fmt.Sprintf("s%d", i), i) }, "ParseComplete", "Ready I")

	r.send(&pgproto3.Query{String: "SELECT 'next'"})
	r.expect("a query after the refusal", "RowDescription", "Row next", "Complete SELECT 1", "Ready I")
	r.send(&pgproto3.Describe{ObjectType: 'S', Name: fmt.Sprintf("s%d", kept)}, &pgproto3.Sync{})
	r.expectError("the refused statement upstream", "26000") // never forwarded
	r.send(&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if got := filter(r.ready()); len(got) != 4 || got[0] != "BindComplete" || !strings.HasSuffix(got[1], "x1") {
		t.Fatalf("a kept statement: %.200q", got)
	}

	r.send(&pgproto3.Close{ObjectType: 'S', Name: "s0"}, &pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{})
	r.expect("closing two", "CloseComplete", "CloseComplete", "Ready I")
	for i := range 2 {
		parseNamed(r, fmt.Sprintf("t%d", i), 100+i)
		r.expect("a Parse once two were closed", "ParseComplete", "Ready I")
	}
	parseNamed(r, "t2", 102)
	r.expectError("a third", "53200")

	r.conn.Close()
	e.idle(t)
	refusals := 0
	for _, c := range e.commands(t) {
		if c.Rule == postgres.GuardRule && strings.Contains(c.Message, "close or DEALLOCATE") {
			refusals++
			if c.Decision != "deny" || !strings.HasPrefix(c.Text, "SELECT 'xxx") {
				t.Errorf("the refusal's record: %+v", c)
			}
		}
	}
	if refusals != 2 {
		t.Errorf("%d refusals recorded, want 2", refusals)
	}
}

// TestRetainedStatementsPrepare: SQL PREPARE is kept as a Parse is, and
// DEALLOCATE frees it.
func TestRetainedStatementsPrepare(t *testing.T) {
	e := newEnv(t, envOptions{retained: retainedBudget})
	r := e.rawConn(t, nil)
	r.ready()
	prepare := func(i int) {
		r.send(&pgproto3.Query{String: fmt.Sprintf("PREPARE p%d AS %s", i, retainedStatement(i))})
	}
	kept := fillRetained(t, r, prepare, "Complete PREPARE", "Ready I")

	r.send(&pgproto3.Query{String: "SELECT 'next'"})
	r.expect("a query after the refusal", "RowDescription", "Row next", "Complete SELECT 1", "Ready I")
	r.send(&pgproto3.Query{String: fmt.Sprintf("EXECUTE p%d", kept)})
	r.expectError("the refused statement upstream", "26000")

	r.send(&pgproto3.Query{String: "DEALLOCATE p0; DEALLOCATE p1"})
	r.expect("deallocating two", "Complete DEALLOCATE", "Complete DEALLOCATE", "Ready I")
	for _, i := range []int{kept, kept + 1} {
		prepare(i)
		r.expect("a PREPARE once two were deallocated", "Complete PREPARE", "Ready I")
	}
	prepare(kept + 2)
	r.expectError("a third", "53200")
}

// TestRetainedStatementsCount: however small, each kept statement weighs
// its overhead, so the budget bounds their number; a long pipeline of the
// unnamed statement (each Parse kept until upstream answers it) fits in
// the default budget.
func TestRetainedStatementsCount(t *testing.T) {
	e := newEnv(t, envOptions{retained: retainedBudget})
	r := e.rawConn(t, nil)
	r.ready()
	most := retainedBudget / 512 // retainedOverhead
	kept := 0
	for ; kept <= most; kept++ {
		r.send(&pgproto3.Parse{Name: fmt.Sprintf("n%d", kept), Query: "SELECT 1"}, &pgproto3.Sync{})
		if got := filter(r.ready()); got[0] != "ParseComplete" {
			break
		}
	}
	if kept == 0 || kept > most {
		t.Fatalf("%d tiny statements kept in a %d-byte budget, want fewer than %d", kept, retainedBudget, most)
	}
	r.send(&pgproto3.Parse{Name: "one_more", Query: "SELECT 1"}, &pgproto3.Sync{})
	r.expectError("one more", "53200")
	r.send(&pgproto3.Close{ObjectType: 'S', Name: "n0"}, &pgproto3.Sync{})
	r.expect("closing one", "CloseComplete", "Ready I")
	r.send(&pgproto3.Parse{Name: "one_more", Query: "SELECT 1"}, &pgproto3.Sync{})
	r.expect("one more once one was closed", "ParseComplete", "Ready I")

	e = newEnv(t, envOptions{})
	r = e.rawConn(t, nil)
	r.ready()
	const pipelined = 20_000
	msgs := make([]pgproto3.FrontendMessage, 0, 3*pipelined+1)
	for range pipelined {
		msgs = append(msgs, &pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{})
	}
	r.send(append(msgs, &pgproto3.Sync{})...)
	got := filter(r.ready())
	if n := strings.Count(strings.Join(got, "\n"), "Complete SELECT 1"); n != pipelined {
		t.Fatalf("a pipeline of %d unnamed statements: %d ran; the last answers %q", pipelined, n, got[max(0, len(got)-3):])
	}
}

// TestRetainedStatementsReleased: what a statement took is free again
// once the statement is replaced (the unnamed statement by the next
// one; a PREPARE of a name upstream holds fails and leaves the name as
// it was), when DISCARD ALL drops every one, and when a denied
// statement's name is closed.
func TestRetainedStatementsReleased(t *testing.T) {
	e := newEnv(t, envOptions{retained: retainedBudget})
	r := e.rawConn(t, nil)
	r.ready()
	for i := range 20 {
		r.send(&pgproto3.Parse{Query: retainedStatement(i)}, &pgproto3.Sync{})
		r.expect("an unnamed statement", "ParseComplete", "Ready I")
	}
	parseNamed(r, "held", 0)
	r.expect("a named one", "ParseComplete", "Ready I")
	for i := range 20 {
		parseNamed(r, "held", i)
		r.expectError("a Parse of a name held upstream", "42P05")
		r.send(&pgproto3.Query{String: "PREPARE held AS " + retainedStatement(i)})
		r.expectError("a PREPARE of a name held upstream", "42P05")
	}
	for i := range 20 {
		r.send(&pgproto3.Query{String: "DEALLOCATE held; PREPARE held AS " + retainedStatement(i)})
		r.expect("a name deallocated and prepared again", "Complete DEALLOCATE", "Complete PREPARE", "Ready I")
	}

	kept := fillRetained(t, r, func(i int) { parseNamed(r, fmt.Sprintf("s%d", i), i) }, "ParseComplete", "Ready I")
	r.send(&pgproto3.Query{String: "DISCARD ALL"})
	r.expect("DISCARD ALL", "Complete DISCARD ALL", "Ready I")
	for i := range kept {
		parseNamed(r, fmt.Sprintf("s%d", i), i)
		r.expect("a Parse after DISCARD ALL", "ParseComplete", "Ready I")
	}
	r.send(&pgproto3.Query{String: "DISCARD ALL"})
	r.expect("DISCARD ALL", "Complete DISCARD ALL", "Ready I")

	// A denial keeps the statement's text too, to record each attempt
	// to run it, until the name is closed.
	denied := func(i int) {
		r.send(&pgproto3.Parse{Name: fmt.Sprintf("d%d", i), Query: fmt.Sprintf("DELETE FROM orders WHERE id = %d /* %s */", i, strings.Repeat("x", 10<<10))},
			&pgproto3.Sync{})
	}
	kept = 0
	for ; ; kept++ {
		if kept == 20 {
			t.Fatal("20 denied statements of 10 KiB were kept in a budget of 64 KiB")
		}
		denied(kept)
		if got := filter(r.ready()); len(got) != 2 || !strings.Contains(got[0], "42501") {
			if len(got) != 2 || !strings.Contains(got[0], "53200") {
				t.Fatalf("denied statement %d: %q", kept, got)
			}
			break
		}
	}
	r.send(&pgproto3.Close{ObjectType: 'S', Name: "d0"}, &pgproto3.Sync{})
	r.expect("closing a denied name", "CloseComplete", "Ready I")
	denied(kept)
	r.expectError("a denied statement once one was closed", "42501")
}

// TestRetainedStatementsInATransaction: a refusal for the budget inside a
// transaction fails it as an error of PostgreSQL's would, on both sides:
// the client is told it is aborted, upstream agrees, and COMMIT rolls
// back. A Parse, a PREPARE and a DECLARE alike.
func TestRetainedStatementsInATransaction(t *testing.T) {
	e := newEnv(t, envOptions{retained: retainedBudget})
	r := e.rawConn(t, nil)
	r.ready()
	kept := fillRetained(t, r, func(i int) { parseNamed(r, fmt.Sprintf("s%d", i), i) }, "ParseComplete", "Ready I")
	for _, tc := range []struct {
		what string
		send func()
	}{
		{"a Parse", func() { parseNamed(r, "in_tx", kept) }},
		{"a PREPARE", func() { r.send(&pgproto3.Query{String: "PREPARE in_tx AS " + retainedStatement(kept)}) }},
		{"a DECLARE", func() {
			r.send(&pgproto3.Query{String: "DECLARE in_tx CURSOR FOR " + retainedStatement(kept)})
		}},
	} {
		r.send(&pgproto3.Query{String: "BEGIN; INSERT INTO notes (body) VALUES ('in tx')"})
		r.expect("begin", "Complete BEGIN", "Complete INSERT 0 1", "Ready T")
		tc.send()
		if got := filter(r.ready()); len(got) != 2 || !strings.Contains(got[0], "53200") || got[1] != "Ready E" {
			t.Fatalf("%s: %q, want a 53200 refusal and Ready E", tc.what, got)
		}
		r.send(&pgproto3.Query{String: "SELECT 1"})
		if got := filter(r.ready()); len(got) != 2 || !strings.Contains(got[0], "25P02") || got[1] != "Ready E" {
			t.Fatalf("a query after %s was refused: %q, want upstream's 25P02", tc.what, got)
		}
		r.send(&pgproto3.Query{String: "COMMIT"})
		r.expect("commit", "Complete ROLLBACK", "Ready I")
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
			t.Errorf("notes has %s rows after %s was refused and the transaction rolled back", got, tc.what)
		}
	}
}
