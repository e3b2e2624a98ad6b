package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy/postgres"
)

// reloadedPolicy is testPolicy with SELECTs from orders denied and email
// masked.
const reloadedPolicy = testPolicy + `  - name: orders-closed
    when: '"orders" in sql.tables'
    action: deny
    message: orders are closed to agents
masks:
  - name: pii
    columns: [email]
`

// TestReloadFollowedByOpenSessions: a session opened before a reload is
// decided and masked by the new policy from its next statement on — also
// statements pgx prepared and cached before the reload, which are decided
// again when executed — and stays usable after the new denials; a second
// reload that allows again is followed too.
func TestReloadFollowedByOpenSessions(t *testing.T) {
	e := newEnv(t, envOptions{rewriter: postgres.NewMaskRewriter})
	c := e.pgx(t) // pgx's default mode prepares each statement once and caches it
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const (
		email = "SELECT email FROM customers WHERE id = 1"
		total = "SELECT total::text FROM orders WHERE id = 10"
	)
	read := func(sql string, args ...any) (string, error) {
		t.Helper()
		var s string
		err := c.QueryRow(ctx, sql, args...).Scan(&s)
		return s, err
	}
	want := func(sql, wantValue string, args ...any) {
		t.Helper()
		got, err := read(sql, args...)
		if err != nil || got != wantValue {
			t.Fatalf("%s: got %q, %v; want %q", sql, got, err, wantValue)
		}
	}
	denied := func(sql, rule string, args ...any) {
		t.Helper()
		_, err := read(sql, args...)
		if pe := pgError(t, err); pe.Code != "42501" || pe.Detail != "rule: "+rule {
			t.Fatalf("%s: got %v, want a denial by %s", sql, err, rule)
		}
	}

	want(email, "ada@example.com")
	want(total, "9.5")
	e.reload(t, reloadedPolicy)
	want(email, "[masked]") // the cached statement, masked now
	denied(total, "orders-closed")
	denied(total, "orders-closed") // every execution, not once
	denied(total, "orders-closed", pgx.QueryExecModeSimpleProtocol)
	want("SELECT 'still usable'", "still usable")

	// Inside a transaction block client and server agree that the denial
	// failed it.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, total); err == nil {
		t.Fatal("a denied statement ran inside a transaction")
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); pgError(t, err).Code != "25P02" {
		t.Fatalf("after a denial in a transaction: %v, want 25P02 (transaction aborted)", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	e.reload(t, testPolicy)
	want(email, "ada@example.com")
	want(total, "9.5") // the statement denied at its last Execute is allowed again

	c.Close(ctx)
	e.idle(t)
	var denials, allowedTotals int
	for _, cmd := range e.commands(t) {
		if cmd.Text != total {
			continue
		}
		switch {
		case cmd.Decision == "deny" && cmd.Rule == "orders-closed":
			denials++
		case cmd.Decision == "allow":
			allowedTotals++
		}
	}
	if denials != 4 || allowedTotals != 2 {
		t.Fatalf("recorded %d denials and %d allowed runs of %q, want 4 and 2", denials, allowedTotals, total)
	}
}

// TestReloadDecidesAtBind: a statement prepared before a reload that now
// denies it is refused at its Bind, before PostgreSQL plans it — planning
// runs an immutable function over constants, which could read what the
// new policy closes.
func TestReloadDecidesAtBind(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.pg.Exec(t, `CREATE FUNCTION public.leak(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
		BEGIN RAISE NOTICE 'leaked %', (SELECT string_agg(total::text, ',' ORDER BY id) FROM public.orders); RETURN $1; END $$`)
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Parse{Name: "s", Query: "SELECT public.leak(1)"}, &pgproto3.Sync{})
	r.expect("parse", "ParseComplete", "Ready I")
	e.reload(t, testPolicy+`  - name: no-leak
    when: sql.functions.exists(f, f.endsWith("leak"))
    action: deny
`)
	r.send(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	r.expect("bind after the reload", "Error ERROR 42501 rule: no-leak: denied by interlock policy rule no-leak", "Ready I")
	r.send(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	r.expect("bind again", "Error ERROR 42501 rule: no-leak: denied by interlock policy rule no-leak", "Ready I")
	e.reload(t, testPolicy)
	r.send(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	r.expect("bind after a reload that allows it again", "Notice leaked 9.5,20", "BindComplete", "Row 1", "Complete SELECT 1", "Ready I")
}

// TestReloadDecidesCursors: a cursor declared before a reload that closes
// its query's table returns no more rows, by FETCH or by an Execute of its
// portal, and is allowed again when a reload allows its query.
func TestReloadDecidesCursors(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Query{String: "BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT total::text FROM orders ORDER BY id; COMMIT"})
	r.expect("declare", "Complete BEGIN", "Complete DECLARE CURSOR", "Complete COMMIT", "Ready I")
	r.send(&pgproto3.Query{String: "FETCH 1 FROM c"})
	r.expect("fetch before the reload", "RowDescription", "Row 9.5", "Complete FETCH 1", "Ready I")
	e.reload(t, reloadedPolicy)
	r.send(&pgproto3.Query{String: "FETCH 1 FROM c"})
	r.expect("fetch after the reload", "Error ERROR 42501 rule: orders-closed: orders are closed to agents", "Ready I")
	r.send(&pgproto3.Query{String: "MOVE BACKWARD 1 IN c"})
	r.expect("move after the reload", "Error ERROR 42501 rule: orders-closed: orders are closed to agents", "Ready I")
	r.send(&pgproto3.Parse{Query: "FETCH ALL FROM c"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	r.expect("a prepared fetch after the reload", "Error ERROR 42501 rule: orders-closed: orders are closed to agents", "Ready I")
	r.send(&pgproto3.Execute{Portal: "c"}, &pgproto3.Sync{})
	r.expect("an Execute of the cursor's portal after the reload", "Error ERROR 42501 rule: orders-closed: orders are closed to agents", "Ready I")
	e.reload(t, testPolicy)
	r.send(&pgproto3.Query{String: "FETCH 1 FROM c"})
	r.expect("fetch after a reload that allows it again", "RowDescription", "Row 20", "Complete FETCH 1", "Ready I")
	r.send(&pgproto3.Query{String: "CLOSE c"})
	r.expect("close", "Complete CLOSE CURSOR", "Ready I")
}

// TestReloadCursorsTheRelayMisreads: a cursor whose name a protocol portal
// had before is still decided as the cursor; a DECLARE of an open
// cursor's name (which fails) does not replace the query the relay holds
// for it; and once the session declared more cursors than the relay keeps,
// a cursor it forgot is refused after a reload rather than run unknown.
func TestReloadCursorsTheRelayMisreads(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.rawConn(t, nil)
	r.ready()
	const declare = "BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT total::text FROM orders ORDER BY id; COMMIT"
	r.send(&pgproto3.Parse{Query: "SELECT 'harmless'"}, &pgproto3.Bind{DestinationPortal: "c"}, &pgproto3.Execute{Portal: "c"}, &pgproto3.Sync{})
	r.expect("a portal named c", "ParseComplete", "BindComplete", "Row harmless", "Complete SELECT 1", "Ready I")
	r.send(&pgproto3.Query{String: declare})
	r.expect("declare c", "Complete BEGIN", "Complete DECLARE CURSOR", "Complete COMMIT", "Ready I")
	r.send(&pgproto3.Query{String: "DECLARE c CURSOR WITH HOLD FOR SELECT 'harmless'"})
	r.expectError("a second DECLARE c", "42P03")
	e.reload(t, reloadedPolicy)
	r.send(&pgproto3.Execute{Portal: "c"}, &pgproto3.Sync{})
	r.expect("Execute of c after the reload", "Error ERROR 42501 rule: orders-closed: orders are closed to agents", "Ready I")
	r.send(&pgproto3.Query{String: "FETCH 1 FROM c"})
	r.expect("FETCH from c after the reload", "Error ERROR 42501 rule: orders-closed: orders are closed to agents", "Ready I")

	e.reload(t, testPolicy)
	var many strings.Builder
	many.WriteString("BEGIN;")
	for i := range 300 {
		fmt.Fprintf(&many, " DECLARE x%d CURSOR FOR SELECT 1;", i)
	}
	many.WriteString(" COMMIT")
	r.send(&pgproto3.Query{String: many.String()})
	r.ready()
	e.reload(t, reloadedPolicy)
	r.send(&pgproto3.Query{String: "FETCH 1 FROM c"})
	r.expectError("FETCH from a forgotten cursor after a reload", "no longer knows the query of cursor c")
}

// TestReloadDecidesWhatANameMayHold: after a reload, a Bind is decided for
// every statement its name may hold upstream, not only the one the relay
// took last — a candidate Parse still unanswered, a name it lost track of
// — so a statement the new policy denies cannot run behind another's text.
func TestReloadDecidesWhatANameMayHold(t *testing.T) {
	e := newEnv(t, envOptions{rewriter: postgres.NewMaskRewriter})
	const orders, harmless = "SELECT id FROM orders", "SELECT 'harmless'"
	bindDenied := func(t *testing.T, r *raw, name string, pipelined bool) {
		t.Helper()
		r.send(&pgproto3.Bind{PreparedStatement: name}, &pgproto3.Execute{}, &pgproto3.Sync{})
		if pipelined {
			r.expectError("the pipelined Parse", "42P05")
		}
		r.expectError("bind of "+name, "rule: orders-closed")
	}
	for _, tt := range []struct {
		name  string
		after func(t *testing.T, r *raw) // after the reload, before the Bind
	}{
		{"a refused Parse pipelined with the Bind", func(t *testing.T, r *raw) {
			r.send(&pgproto3.Parse{Name: "s", Query: harmless}, &pgproto3.Sync{})
			// The Bind goes before the Parse's answer is read.
		}},
		{"a denied Parse, then a refused one", func(t *testing.T, r *raw) {
			r.send(&pgproto3.Parse{Name: "s", Query: "DROP TABLE public.orders"}, &pgproto3.Sync{})
			r.ready()
			r.send(&pgproto3.Parse{Name: "s", Query: harmless}, &pgproto3.Sync{})
			r.ready()
		}},
		{"a Parse whose answer was dropped after a refused result", func(t *testing.T, r *raw) {
			r.send(&pgproto3.Parse{Query: "COPY customers TO STDOUT"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Name: "s", Query: harmless}, &pgproto3.Sync{})
			r.ready()
		}},
		{"a PREPARE of the name that fails", func(t *testing.T, r *raw) {
			r.send(&pgproto3.Query{String: "PREPARE s AS SELECT 1"})
			r.expectError("PREPARE s", "42P05")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.reload(t, testPolicy)
			r := e.rawConn(t, nil)
			r.ready()
			r.send(&pgproto3.Parse{Name: "s", Query: orders}, &pgproto3.Sync{})
			r.expect("parse", "ParseComplete", "Ready I")
			e.reload(t, reloadedPolicy)
			tt.after(t, r)
			bindDenied(t, r, "s", tt.name == "a refused Parse pipelined with the Bind")
		})
	}
}

// TestReloadDecidesDescribe: a statement a reload denies is not described
// either (its columns and types are the statement's).
func TestReloadDecidesDescribe(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Parse{Name: "s", Query: "SELECT total FROM orders"}, &pgproto3.Sync{})
	r.expect("parse", "ParseComplete", "Ready I")
	e.reload(t, reloadedPolicy)
	r.send(&pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
	r.expect("describe after the reload", "Error ERROR 42501 rule: orders-closed: orders are closed to agents", "Ready I")
	e.reload(t, testPolicy)
	r.send(&pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
	r.expect("describe when allowed again", "ParameterDescription", "RowDescription", "Ready I")
}

// TestReloadDecidesSQLPrepare: a statement prepared with SQL's PREPARE
// before a reload that denies its body is refused wherever it would run —
// EXECUTE (in any case, under EXPLAIN with or without ANALYZE, through the
// extended protocol) and a driver's Bind of its name — while one the new
// policy allows runs; a PREPARE of the name that fails upstream (the name
// exists) does not stand in for it, one after DEALLOCATE does; and a reload
// that allows it again lets it run again.
func TestReloadDecidesSQLPrepare(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Query{String: "PREPARE s AS SELECT total::text FROM orders WHERE id = 10; PREPARE h AS SELECT 'harmless'"})
	r.expect("prepare", "Complete PREPARE", "Complete PREPARE", "Ready I")
	r.send(&pgproto3.Query{String: "EXECUTE s"})
	r.expect("EXECUTE s before the reload", "RowDescription", "Row 9.5", "Complete SELECT 1", "Ready I")

	e.reload(t, reloadedPolicy)
	const closed = "Error ERROR 42501 rule: orders-closed: orders are closed to agents"
	for _, q := range []string{"EXECUTE s", "execute S", "EXPLAIN ANALYZE EXECUTE s", "EXPLAIN EXECUTE s"} {
		r.send(&pgproto3.Query{String: q})
		r.expect(q+" after the reload", closed, "Ready I")
	}
	r.send(&pgproto3.Parse{Query: "EXECUTE s"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	r.expect("EXECUTE s through the extended protocol", closed, "Ready I")
	r.send(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	r.expect("a Bind of s", closed, "Ready I")
	r.send(&pgproto3.Query{String: "EXECUTE h"})
	r.expect("EXECUTE h, allowed", "RowDescription", "Row harmless", "Complete SELECT 1", "Ready I")

	r.send(&pgproto3.Query{String: "PREPARE s AS SELECT 'other'"})
	r.expectError("PREPARE of an existing name", "42P05")
	r.send(&pgproto3.Query{String: "EXECUTE s"})
	r.expect("EXECUTE s after a PREPARE of s that failed", closed, "Ready I")

	e.reload(t, testPolicy)
	r.send(&pgproto3.Query{String: "EXECUTE s"})
	r.expect("EXECUTE s after a reload that allows it again", "RowDescription", "Row 9.5", "Complete SELECT 1", "Ready I")

	e.reload(t, reloadedPolicy)
	r.send(&pgproto3.Query{String: "DEALLOCATE s; PREPARE s AS SELECT 'other'"})
	r.expect("DEALLOCATE and PREPARE again", "Complete DEALLOCATE", "Complete PREPARE", "Ready I")
	r.send(&pgproto3.Query{String: "EXECUTE s"})
	r.expect("EXECUTE of the new s", "RowDescription", "Row other", "Complete SELECT 1", "Ready I")
}

// TestReloadPreparedTheRelayCannotFollow: after a reload, a prepared
// statement is run only where the relay knows what it holds. A protocol
// statement that EXECUTEs a closed one stays refused after an SQL EXECUTE
// of it was refused; a chain of EXECUTEs deeper than the relay follows is
// refused (when made, and when run); and a name prepared by a statement the relay could not follow
// — one of two a pipelined name may hold, or one whose Parse's answer it
// dropped — is refused until prepared again.
func TestReloadPreparedTheRelayCannotFollow(t *testing.T) {
	const (
		orders  = "PREPARE s AS SELECT total::text FROM orders WHERE id = 10"
		closed  = "Error ERROR 42501 rule: orders-closed: orders are closed to agents"
		unknown = "cannot tell what the prepared statement \"s\" holds"
	)
	t.Run("a prepared EXECUTE", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Query{String: orders})
		r.expect("prepare", "Complete PREPARE", "Ready I")
		r.send(&pgproto3.Parse{Name: "e", Query: "EXECUTE s"}, &pgproto3.Sync{})
		r.expect("parse e", "ParseComplete", "Ready I")
		e.reload(t, reloadedPolicy)
		r.send(&pgproto3.Query{String: "EXECUTE e"})
		r.expect("EXECUTE e", closed, "Ready I")
		r.send(&pgproto3.Bind{PreparedStatement: "e"}, &pgproto3.Execute{}, &pgproto3.Sync{})
		r.expect("a Bind of e after its EXECUTE was refused", closed, "Ready I")
	})
	t.Run("a chain deeper than followed", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Query{String: orders})
		r.expect("prepare", "Complete PREPARE", "Ready I")
		prev := "s"
		for i := 9; i >= 2; i-- {
			name := fmt.Sprintf("e%d", i)
			r.send(&pgproto3.Parse{Name: name, Query: "EXECUTE " + prev}, &pgproto3.Sync{})
			r.expect("parse "+name, "ParseComplete", "Ready I")
			prev = name
		}
		// One more is deeper than the relay follows: refused, before and
		// after a reload.
		r.send(&pgproto3.Parse{Name: "e1", Query: "EXECUTE e2"}, &pgproto3.Sync{})
		r.expectError("parse e1", "deep at most")
		e.reload(t, reloadedPolicy)
		r.send(&pgproto3.Query{String: "EXECUTE e2"})
		r.expectError("EXECUTE e2", "deep at most")
		r.send(&pgproto3.Query{String: "EXECUTE e3"})
		r.expect("EXECUTE e3, within the depth", closed, "Ready I")
	})
	t.Run("one of two a pipelined name may hold", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Parse{Name: "p", Query: orders}, &pgproto3.Sync{})
		r.expect("parse p", "ParseComplete", "Ready I")
		// The Parse of p fails upstream (p exists), so the Execute runs
		// PREPARE s, not PREPARE t.
		r.send(&pgproto3.Parse{Name: "p", Query: "PREPARE t AS SELECT 'harmless'"}, &pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "p"}, &pgproto3.Execute{}, &pgproto3.Sync{})
		r.expectError("the second Parse of p", "42P05")
		r.expect("the Execute of p", "BindComplete", "Complete PREPARE", "Ready I")
		e.reload(t, reloadedPolicy)
		r.send(&pgproto3.Query{String: "EXECUTE s"})
		r.expectError("EXECUTE s", unknown)
		r.send(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{})
		r.expectError("a Bind of s", unknown)
		r.send(&pgproto3.Query{String: "DEALLOCATE s; PREPARE s AS SELECT 'again'"})
		r.expect("prepared again", "Complete DEALLOCATE", "Complete PREPARE", "Ready I")
		r.send(&pgproto3.Query{String: "EXECUTE s"})
		r.expect("EXECUTE of s prepared again", "RowDescription", "Row again", "Complete SELECT 1", "Ready I")
	})
	t.Run("a Parse whose answer was dropped", func(t *testing.T) {
		const masked = testPolicy + `masks:
  - name: pii
    columns: [email]
`
		e := newEnv(t, envOptions{policy: masked, rewriter: postgres.NewMaskRewriter})
		r := e.rawConn(t, nil)
		r.ready()
		// The COPY's result is refused (an unqualified table under column
		// masks), so the Parse's answer after it is dropped.
		r.send(&pgproto3.Parse{Query: "COPY customers TO STDOUT"}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Parse{Name: "x", Query: orders}, &pgproto3.Sync{})
		r.ready()
		r.send(&pgproto3.Bind{PreparedStatement: "x"}, &pgproto3.Execute{}, &pgproto3.Sync{})
		r.expect("the Execute of x", "BindComplete", "Complete PREPARE", "Ready I")
		e.reload(t, reloadedPolicy)
		r.send(&pgproto3.Query{String: "EXECUTE s"})
		r.expectError("EXECUTE s", unknown)
	})
}

// TestReloadUnnamedSurvivesDeallocateAll: DEALLOCATE ALL (or DISCARD ALL)
// run through the extended protocol leaves the unnamed statement, which
// is still decided again after a reload.
func TestReloadUnnamedSurvivesDeallocateAll(t *testing.T) {
	for _, all := range []string{"DEALLOCATE ALL", "DISCARD ALL"} {
		t.Run(all, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			r := e.rawConn(t, nil)
			r.ready()
			r.send(&pgproto3.Parse{Query: "SELECT total::text FROM orders WHERE id = 10"}, &pgproto3.Sync{})
			r.expect("parse the unnamed statement", "ParseComplete", "Ready I")
			r.send(&pgproto3.Parse{Name: "d", Query: all}, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{})
			r.expect(all, "ParseComplete", "BindComplete", "Complete "+all, "Ready I")
			e.reload(t, reloadedPolicy)
			r.send(&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			r.expect("a Bind of the unnamed statement", "Error ERROR 42501 rule: orders-closed: orders are closed to agents", "Ready I")
		})
	}
}
