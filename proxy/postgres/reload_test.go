package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
