package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pgError returns err's *pgconn.PgError or fails.
func pgError(t *testing.T, err error) *pgconn.PgError {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("want a PostgreSQL error, got %v", err)
	}
	return pgErr
}

func TestSimpleQueries(t *testing.T) {
	e := newEnv(t, envOptions{})

	t.Run("psql allowed", func(t *testing.T) {
		out, err := e.psql(t, "SELECT id, name FROM customers ORDER BY id")
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		if out != "1|Ada\n2|Bob\n" {
			t.Errorf("psql output %q", out)
		}
	})

	t.Run("upstream login is the gateway's", func(t *testing.T) {
		out, err := e.psql(t, "SELECT current_user, session_user")
		if err != nil || out != "app|app\n" {
			t.Errorf("psql: %v %q", err, out)
		}
	})

	t.Run("pgx allowed", func(t *testing.T) {
		c := e.pgx(t)
		var n int
		if err := c.QueryRow(ctxT(t), "SELECT count(*) FROM customers WHERE id > $1", 0).Scan(&n); err != nil || n != 2 {
			t.Errorf("count: %d, %v", n, err)
		}
	})

	t.Run("psql denied drop", func(t *testing.T) {
		out, err := e.psql(t, "DROP TABLE customers")
		if err == nil {
			t.Fatalf("DROP succeeded:\n%s", out)
		}
		if !strings.Contains(out, "ERROR:  schema and privilege changes are not allowed for agents") ||
			!strings.Contains(out, "DETAIL:  rule: no-ddl") {
			t.Errorf("psql did not show the denial:\n%s", out)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.customers"); got != "2" {
			t.Errorf("after the denied DROP, customers has %q rows", got)
		}
		if got := e.counter(t, "interlock_blocked_commands_total", map[string]string{"rule": "no-ddl", "workload": "agent", "protocol": "postgres", "target": "shop"}); got != 1 {
			t.Errorf("blocked commands for no-ddl: %v, want 1", got)
		}
	})

	t.Run("pgx denied drop keeps the session", func(t *testing.T) {
		c := e.pgx(t)
		_, err := c.Exec(ctxT(t), "DROP TABLE customers")
		pe := pgError(t, err)
		if pe.Code != "42501" || pe.Severity != "ERROR" || pe.Detail != "rule: no-ddl" ||
			pe.Message != "schema and privilege changes are not allowed for agents" {
			t.Errorf("denial: %+v", pe)
		}
		var one int
		if err := c.QueryRow(ctxT(t), "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Errorf("session unusable after a denial: %v", err)
		}
	})

	t.Run("default message names the rule", func(t *testing.T) {
		out, err := e.psql(t, "DELETE FROM customers")
		if err == nil || !strings.Contains(out, "no-unbounded-delete") {
			t.Errorf("unbounded delete: %v\n%s", err, out)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.customers"); got != "2" {
			t.Errorf("after the denied DELETE, customers has %q rows", got)
		}
	})

	t.Run("multi-statement with a denied statement runs none", func(t *testing.T) {
		out, err := e.psql(t, "INSERT INTO notes (body) VALUES ('first'); DROP TABLE notes; INSERT INTO notes (body) VALUES ('second')")
		if err == nil || !strings.Contains(out, "rule: no-ddl") {
			t.Errorf("multi-statement: %v\n%s", err, out)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
			t.Errorf("notes has %q rows; no statement of a denied query may run", got)
		}
	})

	t.Run("multi-statement allowed", func(t *testing.T) {
		out, err := e.psql(t, "INSERT INTO notes (body) VALUES ('a'); INSERT INTO notes (body) VALUES ('b'); SELECT count(*) FROM notes")
		if err != nil || !strings.HasSuffix(out, "2\n") {
			t.Errorf("multi-statement: %v\n%s", err, out)
		}
		e.pg.Exec(t, "DELETE FROM public.notes")
	})

	t.Run("data-modifying CTE denied by a write rule", func(t *testing.T) {
		c := e.pgx(t)
		_, err := c.Exec(ctxT(t), "WITH gone AS (DELETE FROM orders WHERE id = 10 RETURNING *) SELECT count(*) FROM gone")
		if pe := pgError(t, err); pe.Code != "42501" || pe.Detail != "rule: orders-read-only" {
			t.Errorf("CTE: %+v", pe)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.orders"); got != "2" {
			t.Errorf("orders has %q rows after the denied CTE", got)
		}
	})

	t.Run("unparsable SQL denied", func(t *testing.T) {
		c := e.pgx(t)
		_, err := c.Exec(ctxT(t), "SELEC id FROM customers")
		pe := pgError(t, err)
		if pe.Code != "42601" || pe.Message != `syntax error at or near "SELEC"` || pe.Position != 1 ||
			!strings.Contains(pe.Detail, "interlock did not forward the statement") {
			t.Errorf("unparsable: %+v", pe)
		}
	})

	t.Run("review without a reviewer is a denial", func(t *testing.T) {
		c := e.pgx(t)
		_, err := c.Exec(ctxT(t), "TRUNCATE orders")
		pe := pgError(t, err)
		if pe.Message != "this statement needs a human's review, and this gateway has no reviewer; denied" || pe.Detail != "rule: truncate-needs-review" {
			t.Errorf("review: %+v", pe)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.orders"); got != "2" {
			t.Errorf("orders has %q rows after the held TRUNCATE", got)
		}
	})

	t.Run("empty query", func(t *testing.T) {
		c := e.pgx(t)
		if _, err := c.Exec(ctxT(t), "-- nothing"); err != nil {
			t.Errorf("empty query: %v", err)
		}
	})

	t.Run("upstream errors pass through", func(t *testing.T) {
		c := e.pgx(t)
		_, err := c.Exec(ctxT(t), "SELECT * FROM no_such_table")
		if pe := pgError(t, err); pe.Code != "42P01" {
			t.Errorf("missing table: %+v", pe)
		}
		var n int
		if err := c.QueryRow(ctxT(t), "SELECT 2").Scan(&n); err != nil || n != 2 {
			t.Errorf("after an upstream error: %v", err)
		}
	})

	t.Run("commands recorded", func(t *testing.T) {
		var sawDrop, sawSelect bool
		for _, c := range e.commands(t) {
			if c.Text == "DROP TABLE customers" && c.Decision == "deny" && c.Rule == "no-ddl" {
				sawDrop = true
			}
			if c.Text == "SELECT id, name FROM customers ORDER BY id" && c.Decision == "allow" && c.Rows == 2 && c.Tag == "SELECT 2" {
				sawSelect = true
			}
		}
		if !sawDrop || !sawSelect {
			t.Errorf("recordings: drop %v, select %v; commands: %+v", sawDrop, sawSelect, e.commands(t))
		}
	})
}

// TestTransactionAgreement: a statement denied inside a transaction block
// fails the transaction on both sides.
func TestTransactionAgreement(t *testing.T) {
	e := newEnv(t, envOptions{})

	t.Run("pgx", func(t *testing.T) {
		c := e.pgx(t)
		ctx := ctxT(t)
		if _, err := c.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "INSERT INTO notes (body) VALUES ('in tx')"); err != nil {
			t.Fatal(err)
		}
		_, err := c.Exec(ctx, "DROP TABLE notes")
		if pe := pgError(t, err); pe.Code != "42501" {
			t.Fatalf("DROP in tx: %+v", pe)
		}
		if s := c.PgConn().TxStatus(); s != 'E' {
			t.Errorf("client transaction status %q, want E", s)
		}
		_, err = c.Exec(ctx, "SELECT 1")
		if pe := pgError(t, err); pe.Code != "25P02" {
			t.Errorf("statement in the failed transaction: %+v, want 25P02 from upstream", pe)
		}
		res := c.PgConn().Exec(ctx, "COMMIT")
		rr, err := res.ReadAll()
		if err != nil || len(rr) != 1 || rr[0].CommandTag.String() != "ROLLBACK" {
			t.Errorf("COMMIT: %v %+v, want ROLLBACK", err, rr)
		}
		if s := c.PgConn().TxStatus(); s != 'I' {
			t.Errorf("status after COMMIT %q", s)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
			t.Errorf("notes has %q rows; the failed transaction wrote", got)
		}
	})

	t.Run("psql", func(t *testing.T) {
		script := "BEGIN;\nINSERT INTO notes (body) VALUES ('psql tx');\nDROP TABLE notes;\nCOMMIT;\n"
		out, err := e.psqlArgs(t, []string{"-v", "ON_ERROR_STOP=0", "-f", "-"}, script)
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		if !strings.Contains(out, "rule: no-ddl") || !strings.Contains(out, "ROLLBACK") {
			t.Errorf("psql output:\n%s", out)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
			t.Errorf("notes has %q rows after the rolled back transaction", got)
		}
	})

	t.Run("outside a transaction the session goes on", func(t *testing.T) {
		c := e.pgx(t)
		ctx := ctxT(t)
		_, err := c.Exec(ctx, "DROP TABLE notes")
		pgError(t, err)
		if s := c.PgConn().TxStatus(); s != 'I' {
			t.Errorf("status %q, want I", s)
		}
		if _, err := c.Exec(ctx, "INSERT INTO notes (body) VALUES ('after')"); err != nil {
			t.Errorf("insert after denial: %v", err)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "1" {
			t.Errorf("notes has %q rows", got)
		}
		e.pg.Exec(t, "DELETE FROM public.notes")
	})

	t.Run("pgx transaction helper", func(t *testing.T) {
		c := e.pgx(t)
		ctx := ctxT(t)
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO notes (body) VALUES ('tx helper')"); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "ALTER TABLE notes ADD COLUMN x int")
			return err
		})
		if pe := pgError(t, err); pe.Detail != "rule: no-ddl" {
			t.Errorf("BeginFunc: %+v", pe)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
			t.Errorf("notes has %q rows", got)
		}
	})
}
