package postgres_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy/postgres"
)

// TestPortalTheRelayCannotVouchFor: a named portal's Bind that fails
// upstream (the name still holds a portal there, kept alive past the
// error by a savepoint) leaves the portal it held, and so does a Close
// upstream skips. The relay does not take such a portal for the one it saw
// bound last: a COPY through it is not masked by the wrong statement's
// columns, after a reload it is refused rather than run undecided, and a
// PREPARE it runs makes the names before it unknown.
func TestPortalTheRelayCannotVouchFor(t *testing.T) {
	const masked = testPolicy + `masks:
  - name: pii
    columns: [email]
`
	begin := func(t *testing.T, r *raw) {
		t.Helper()
		r.send(&pgproto3.Query{String: "BEGIN"})
		r.expect("begin", "Complete BEGIN", "Ready T")
	}
	// failBind binds name to portal p while p exists, inside a savepoint
	// it rolls back to: upstream keeps the portal p had.
	failBind := func(t *testing.T, r *raw, name string) {
		t.Helper()
		r.send(&pgproto3.Query{String: "SAVEPOINT a"})
		r.expect("savepoint", "Complete SAVEPOINT", "Ready T")
		r.send(&pgproto3.Bind{PreparedStatement: name, DestinationPortal: "p"}, &pgproto3.Sync{})
		r.expectError("a Bind of the portal p that exists", "42P03")
		r.send(&pgproto3.Query{String: "ROLLBACK TO a"})
		r.expect("rollback to", "Complete ROLLBACK", "Ready T")
	}
	t.Run("a COPY", func(t *testing.T) {
		e := newEnv(t, envOptions{policy: masked, rewriter: postgres.NewMaskRewriter})
		r := e.rawConn(t, nil)
		r.ready()
		begin(t, r)
		r.send(&pgproto3.Parse{Name: "c1", Query: "COPY public.customers (id, email) TO STDOUT"},
			&pgproto3.Parse{Name: "c2", Query: "COPY public.notes (id, body) TO STDOUT"},
			&pgproto3.Bind{PreparedStatement: "c1", DestinationPortal: "p"}, &pgproto3.Sync{})
		r.expect("bind p", "ParseComplete", "ParseComplete", "BindComplete", "Ready T")
		failBind(t, r, "c2")
		got := r.copyOut(&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
		if strings.Contains(got, "@example.") {
			t.Fatalf("the portal's COPY came out unmasked: %s", got)
		}
	})
	t.Run("after a reload", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		r := e.rawConn(t, nil)
		r.ready()
		begin(t, r)
		r.send(&pgproto3.Parse{Name: "o", Query: "SELECT total::text FROM orders WHERE id = 10"},
			&pgproto3.Parse{Name: "h", Query: "SELECT 'harmless'"},
			&pgproto3.Bind{PreparedStatement: "o", DestinationPortal: "p"}, &pgproto3.Sync{})
		r.expect("bind p", "ParseComplete", "ParseComplete", "BindComplete", "Ready T")
		e.reload(t, reloadedPolicy)
		failBind(t, r, "h")
		r.send(&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
		r.expectError("Execute p", `cannot tell what the portal "p" runs`)
	})
	t.Run("a skipped Close", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		r := e.rawConn(t, nil)
		r.ready()
		begin(t, r)
		r.send(&pgproto3.Parse{Name: "pp", Query: "PREPARE x AS SELECT total::text FROM orders WHERE id = 10"},
			&pgproto3.Bind{PreparedStatement: "pp", DestinationPortal: "p"}, &pgproto3.Sync{})
		r.expect("bind p", "ParseComplete", "BindComplete", "Ready T")
		r.send(&pgproto3.Query{String: "SAVEPOINT a"})
		r.expect("savepoint", "Complete SAVEPOINT", "Ready T")
		// The Close comes after an error in its batch: upstream skips it.
		r.send(&pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Close{ObjectType: 'P', Name: "p"}, &pgproto3.Sync{})
		r.ready()
		r.send(&pgproto3.Query{String: "ROLLBACK TO a"})
		r.expect("rollback to", "Complete ROLLBACK", "Ready T")
		r.send(&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
		r.expect("Execute p, which upstream kept", "Complete PREPARE", "Ready T")
		r.send(&pgproto3.Query{String: "COMMIT"})
		r.expect("commit", "Complete COMMIT", "Ready I")
		e.reload(t, reloadedPolicy)
		r.send(&pgproto3.Query{String: "EXECUTE x"})
		r.expectError("EXECUTE x", `cannot tell what the prepared statement "x" holds`)
	})
}

// TestPortalUnnamedAndFetchedInDoubt: the unnamed portal is in doubt too
// after a Bind of it that fails (a wrong parameter count) inside a
// savepoint, and an SQL FETCH of a protocol portal bound before a reload,
// or of one whose DECLARE failed, is decided again as an Execute would be.
func TestPortalUnnamedAndFetchedInDoubt(t *testing.T) {
	const masked = testPolicy + `masks:
  - name: pii
    columns: [email]
`
	query := func(t *testing.T, r *raw, sql string, want ...string) {
		t.Helper()
		r.send(&pgproto3.Query{String: sql})
		r.expect(sql, want...)
	}
	t.Run("the unnamed portal", func(t *testing.T) {
		e := newEnv(t, envOptions{policy: masked, rewriter: postgres.NewMaskRewriter})
		r := e.rawConn(t, nil)
		r.ready()
		// Savepoints through named portals: a Query would replace the
		// unnamed one.
		sql := func(name, text string) {
			t.Helper()
			r.send(&pgproto3.Parse{Name: name, Query: text}, &pgproto3.Bind{PreparedStatement: name, DestinationPortal: name},
				&pgproto3.Execute{Portal: name}, &pgproto3.Sync{})
			r.ready()
		}
		sql("b", "BEGIN")
		r.send(&pgproto3.Parse{Name: "c1", Query: "COPY public.customers (id, email) TO STDOUT"},
			&pgproto3.Parse{Name: "c2", Query: "COPY public.notes (id, body) TO STDOUT"},
			&pgproto3.Bind{PreparedStatement: "c1"}, &pgproto3.Sync{})
		r.expect("bind the unnamed portal", "ParseComplete", "ParseComplete", "BindComplete", "Ready T")
		sql("s", "SAVEPOINT a")
		r.send(&pgproto3.Bind{PreparedStatement: "c2", Parameters: [][]byte{[]byte("1")}}, &pgproto3.Sync{})
		r.expectError("a Bind with a parameter too many", "08P01")
		sql("rb", "ROLLBACK TO a")
		if got := r.copyOut(&pgproto3.Execute{}, &pgproto3.Sync{}); strings.Contains(got, "@example.") {
			t.Fatalf("the unnamed portal's COPY came out unmasked: %s", got)
		}
	})
	t.Run("FETCH of a portal bound before a reload", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		r := e.rawConn(t, nil)
		r.ready()
		query(t, r, "BEGIN", "Complete BEGIN", "Ready T")
		r.send(&pgproto3.Parse{Name: "o", Query: "SELECT total::text FROM orders WHERE id = 10"},
			&pgproto3.Bind{PreparedStatement: "o", DestinationPortal: "p"}, &pgproto3.Sync{})
		r.expect("bind p", "ParseComplete", "BindComplete", "Ready T")
		e.reload(t, reloadedPolicy)
		query(t, r, "FETCH ALL FROM p", "Error ERROR 42501 rule: orders-closed: orders are closed to agents", "Ready E")
	})
	t.Run("FETCH after a failed DECLARE", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		r := e.rawConn(t, nil)
		r.ready()
		query(t, r, "BEGIN", "Complete BEGIN", "Ready T")
		r.send(&pgproto3.Parse{Name: "o", Query: "SELECT total::text FROM orders WHERE id = 10"},
			&pgproto3.Bind{PreparedStatement: "o", DestinationPortal: "c"}, &pgproto3.Sync{})
		r.expect("bind c", "ParseComplete", "BindComplete", "Ready T")
		query(t, r, "SAVEPOINT a", "Complete SAVEPOINT", "Ready T")
		r.send(&pgproto3.Query{String: "DECLARE c CURSOR FOR SELECT 'harmless'"})
		r.expectError("DECLARE of the portal's name", "42P03")
		query(t, r, "ROLLBACK TO a", "Complete ROLLBACK", "Ready T")
		e.reload(t, reloadedPolicy)
		r.send(&pgproto3.Query{String: "FETCH ALL FROM c"})
		r.expectError("FETCH ALL FROM c", `cannot tell what the portal "c" runs`)
	})
}
