package postgres_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy/proxytest"
)

// TestPortalsEndWithTheirTransaction: PostgreSQL drops every portal a Bind
// made when its transaction ends, and the gateway with it, with the
// statement the portal was bound from: a session that prepares a statement,
// binds it to a new portal name and closes the statement, over and over,
// neither runs out of its budget nor makes the gateway grow.
func TestPortalsEndWithTheirTransaction(t *testing.T) {
	e := newEnv(t, envOptions{retained: retainedBudget})
	fresh := e.rawConn(t, nil)
	fresh.ready()
	room := fillRetained(t, fresh, func(i int) { parseNamed(fresh, fmt.Sprintf("s%d", i), i) }, "ParseComplete", "Ready I")

	r := e.rawConn(t, nil)
	r.ready()
	loop := func(i int) {
		t.Helper()
		r.send(&pgproto3.Parse{Name: "s", Query: retainedStatement(i)},
			&pgproto3.Bind{PreparedStatement: "s", DestinationPortal: fmt.Sprintf("p%d", i)}, &pgproto3.Sync{},
			&pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
		if got := readyN(r, 2); !eq(got, []string{"ParseComplete", "BindComplete", "Ready I", "CloseComplete", "Ready I"}) {
			t.Fatalf("iteration %d: %q", i, got)
		}
	}
	loop(0) // caches warm
	before := proxytest.InUse()
	const n = 500 // 500 statements of 10 KiB: over 5 MiB if kept, 80 times the budget
	for i := 1; i <= n && !t.Failed(); i++ {
		loop(i)
	}
	r.send(&pgproto3.Query{String: "SELECT 1"}) // the last transaction's end applied
	r.expect("a query", "RowDescription", "Row 1", "Complete SELECT 1", "Ready I")
	if grew := proxytest.InUse() - before; grew > 2<<20 {
		t.Fatalf("the process grew by %d KiB over %d statements bound to portals and closed", grew>>10, n)
	}
	// What the session keeps is what a fresh one keeps.
	if kept := fillRetained(t, r, func(i int) { parseNamed(r, fmt.Sprintf("s%d", i), i) }, "ParseComplete", "Ready I"); kept != room {
		t.Errorf("after the loop the session has room for %d statements, a fresh one for %d", kept, room)
	}
}

// readyN reads up to the nth ReadyForQuery, start-up noise aside.
func readyN(r *raw, n int) []string {
	r.t.Helper()
	var got []string
	for range n {
		got = append(got, filter(r.ready())...)
	}
	return got
}

// TestPortalsPipelinedPastATransactionsEnd: the portals a client bound
// after the Sync whose answer ended a transaction, pipelined, are of the
// next one: the gateway keeps them, and decides and records what they run,
// while those bound before are gone, as upstream says (after a reload
// that denies their statements, an Execute of one gets PostgreSQL's
// "portal does not exist", not a denial of a portal that is not there).
func TestPortalsPipelinedPastATransactionsEnd(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.rawConn(t, nil)
	r.ready()
	const one, two = "SELECT total::text FROM orders WHERE id = 10", "SELECT total::text FROM orders WHERE id = 11"
	r.send(&pgproto3.Parse{Name: "one", Query: one}, &pgproto3.Parse{Name: "two", Query: two}, &pgproto3.Sync{})
	r.expect("parse", "ParseComplete", "ParseComplete", "Ready I")

	// In one write.
	r.send(&pgproto3.Bind{PreparedStatement: "one", DestinationPortal: "p1"}, &pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "two", DestinationPortal: "p2"}, &pgproto3.Execute{Portal: "p2"}, &pgproto3.Sync{})
	if got := readyN(r, 2); !eq(got, []string{"BindComplete", "Ready I", "BindComplete", "Row 20", "Complete SELECT 1", "Ready I"}) {
		t.Fatalf("one write: %q", got)
	}

	// The Execute read after the first Sync's answer came: p4's Bind is
	// answered after it.
	r.send(&pgproto3.Bind{PreparedStatement: "one", DestinationPortal: "p3"}, &pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "two", DestinationPortal: "p4"}, &pgproto3.Flush{})
	if got := filter(untilMsg[*pgproto3.BindComplete](r)); !eq(got, []string{"BindComplete"}) {
		t.Fatalf("bind p3: %q", got)
	}
	if got := filter(untilMsg[*pgproto3.BindComplete](r)); !eq(got, []string{"Ready I", "BindComplete"}) {
		t.Fatalf("bind p4: %q", got)
	}
	r.send(&pgproto3.Execute{Portal: "p4"}, &pgproto3.Sync{})
	r.expect("Execute p4", "Row 20", "Complete SELECT 1", "Ready I")

	e.reload(t, reloadedPolicy)
	for _, p := range []string{"p1", "p2", "p3", "p4"} {
		r.send(&pgproto3.Execute{Portal: p}, &pgproto3.Sync{})
		r.expectError("Execute "+p+" after its transaction", "34000")
	}

	r.conn.Close()
	e.idle(t)
	ran := 0
	for _, c := range e.commands(t) {
		if c.Text == two && c.Tag == "SELECT 1" {
			ran++
		}
	}
	if ran != 2 {
		t.Errorf("%d Executes of %q recorded as run, want 2 (p2 and p4)", ran, two)
	}
}

// TestPortalsLastUntilTheBlockEnds: inside BEGIN … COMMIT the portals
// bound in earlier batches are kept (a ReadyForQuery saying T or E keeps
// them upstream): one runs, another is decided again after a reload; once
// the block ends they are gone.
func TestPortalsLastUntilTheBlockEnds(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Query{String: "BEGIN"})
	r.expect("begin", "Complete BEGIN", "Ready T")
	r.send(&pgproto3.Parse{Name: "o", Query: "SELECT total::text FROM orders WHERE id = 10"},
		&pgproto3.Bind{PreparedStatement: "o", DestinationPortal: "p1"},
		&pgproto3.Bind{PreparedStatement: "o", DestinationPortal: "p2"}, &pgproto3.Sync{})
	r.expect("bind", "ParseComplete", "BindComplete", "BindComplete", "Ready T")
	r.send(&pgproto3.Query{String: "SELECT 1"})
	r.expect("a query in the block", "RowDescription", "Row 1", "Complete SELECT 1", "Ready T")
	r.send(&pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{})
	r.expect("Execute p1", "Row 9.5", "Complete SELECT 1", "Ready T")

	e.reload(t, reloadedPolicy)
	r.send(&pgproto3.Execute{Portal: "p2"}, &pgproto3.Sync{})
	r.expectError("Execute p2 after the reload", "orders are closed to agents")
	r.send(&pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{})
	r.expectError("Execute p1 in the failed block", "orders are closed to agents")

	r.send(&pgproto3.Query{String: "COMMIT"})
	r.expect("commit", "Complete ROLLBACK", "Ready I")
	for _, p := range []string{"p1", "p2"} {
		r.send(&pgproto3.Execute{Portal: p}, &pgproto3.Sync{})
		r.expectError("Execute "+p+" after the block", "34000")
	}
}

// TestPortalsWithinTheBudget: within one transaction a session can bind
// portals without end; the gateway counts each against the session's
// budget, with the statement it keeps once the statement is closed. The
// Bind (or Parse) that would go over it is refused (53200) as an error of
// PostgreSQL's would be: the transaction fails on both sides, and once it
// ends its portals are gone and the room is back.
func TestPortalsWithinTheBudget(t *testing.T) {
	inBlock := func(t *testing.T, r *raw) {
		t.Helper()
		r.send(&pgproto3.Query{String: "BEGIN; INSERT INTO notes (body) VALUES ('in tx')"})
		r.expect("begin", "Complete BEGIN", "Complete INSERT 0 1", "Ready T")
	}
	failed := func(t *testing.T, r *raw, what string) {
		t.Helper()
		r.send(&pgproto3.Query{String: "SELECT 1"})
		if got := filter(r.ready()); len(got) != 2 || !strings.Contains(got[0], "25P02") || got[1] != "Ready E" {
			t.Fatalf("a query after %s was refused: %q, want upstream's 25P02", what, got)
		}
		r.send(&pgproto3.Query{String: "COMMIT"})
		r.expect("commit", "Complete ROLLBACK", "Ready I")
	}
	t.Run("a Bind", func(t *testing.T) {
		e := newEnv(t, envOptions{retained: retainedBudget})
		r := e.rawConn(t, nil)
		r.ready()
		fillRetained(t, r, func(i int) { parseNamed(r, fmt.Sprintf("s%d", i), i) }, "ParseComplete", "Ready I")
		bindAll := func() int {
			t.Helper()
			inBlock(t, r)
			for i := range 100 {
				r.send(&pgproto3.Bind{PreparedStatement: "s0", DestinationPortal: fmt.Sprintf("p%d", i)}, &pgproto3.Sync{})
				got := filter(r.ready())
				if eq(got, []string{"BindComplete", "Ready T"}) {
					continue
				}
				if len(got) != 2 || !strings.Contains(got[0], "53200") || !strings.Contains(got[0], "portals") || got[1] != "Ready E" {
					t.Fatalf("Bind %d: %q, want BindComplete or a 53200 refusal failing the transaction", i, got)
				}
				failed(t, r, "the refused Bind")
				return i
			}
			t.Fatal("100 portals bound in a transaction with no room left in the budget")
			return 0
		}
		bound := bindAll()
		if got := bindAll(); got != bound {
			t.Errorf("%d portals bound once the transaction with %d ended", got, bound)
		}
		// The unnamed portal, which every Bind of it replaces, is not
		// refused.
		r.send(&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
		if got := filter(r.ready()); len(got) != 4 || got[0] != "BindComplete" || !strings.HasSuffix(got[1], "x1") {
			t.Fatalf("the unnamed portal: %.200q", got)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
			t.Errorf("notes has %s rows after the transactions were refused and rolled back", got)
		}
	})
	t.Run("a closed statement a portal keeps", func(t *testing.T) {
		e := newEnv(t, envOptions{retained: retainedBudget})
		r := e.rawConn(t, nil)
		r.ready()
		loopAll := func() int {
			t.Helper()
			inBlock(t, r)
			for i := range 20 {
				r.send(&pgproto3.Parse{Name: "s", Query: retainedStatement(i)},
					&pgproto3.Bind{PreparedStatement: "s", DestinationPortal: fmt.Sprintf("p%d", i)},
					&pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
				got := filter(r.ready())
				if eq(got, []string{"ParseComplete", "BindComplete", "CloseComplete", "Ready T"}) {
					continue
				}
				if len(got) != 2 || !strings.Contains(got[0], "53200") || got[1] != "Ready E" {
					t.Fatalf("iteration %d: %q, want a 53200 refusal failing the transaction", i, got)
				}
				if i < 3 {
					t.Fatalf("refused after %d statements of 10 KiB in a budget of %d", i, retainedBudget)
				}
				failed(t, r, "the refusal")
				return i
			}
			t.Fatal("20 statements of 10 KiB kept by portals in a budget of 64 KiB")
			return 0
		}
		kept := loopAll()
		if got := loopAll(); got != kept {
			t.Errorf("%d statements kept by portals once the transaction with %d ended", got, kept)
		}
	})
}
