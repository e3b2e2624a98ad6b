package postgres_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy/postgres"
)

// maskPolicy adds masks to testPolicy.
const maskPolicy = testPolicy + `
masks:
  - name: pii
    columns: [email]
    detectors: [email]
  - name: money
    columns: [orders.total]
`

// TestCatalogueConnectionShared: the sessions of one target, address and
// database share one catalogue connection and its table names, and the
// connection outlives the last of them by Options.MetadataIdle, so the next
// short session finds it open.
func TestCatalogueConnectionShared(t *testing.T) {
	const idle = 2 * time.Second
	e := newEnv(t, envOptions{policy: maskPolicy, rewriter: postgres.NewMaskRewriter, metadataIdle: idle})
	backends := func() string {
		return e.pg.Query(t, "SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity WHERE application_name = 'interlock metadata'")
	}
	read := func(c *pgx.Conn, sql string) string {
		t.Helper()
		var v string
		if err := c.QueryRow(ctxT(t), sql, pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return v
	}
	// When the catalogue connection last ran a look-up.
	lastLookUp := func() string {
		return e.pg.Query(t, "SELECT coalesce(max(query_start)::text, '') FROM pg_stat_activity WHERE application_name = 'interlock metadata'")
	}
	a, b := e.pgx(t), e.pgx(t)
	// Session a looks up customers' name; session b finds it looked up.
	if got := read(a, "SELECT email FROM customers WHERE id = 1"); got != "[masked]" {
		t.Errorf("session a: %q", got)
	}
	first, lookedUp := backends(), lastLookUp()
	if strings.Contains(first, ",") || first == "" || lookedUp == "" {
		t.Fatalf("catalogue connections after one session's masked result: %q (last look-up %q), want one", first, lookedUp)
	}
	if got := read(b, "SELECT email FROM customers WHERE id = 2"); got != "[masked]" {
		t.Errorf("session b: %q", got)
	}
	if got := backends(); got != first {
		t.Fatalf("catalogue connections for two sessions: %q, want the one %q", got, first)
	}
	if got := lastLookUp(); got != lookedUp {
		t.Errorf("session b looked customers up again (at %s, after %s): the names are not shared", got, lookedUp)
	}
	// The first session ends; the second looks up a new table (orders)
	// over the same connection.
	a.Close(ctxT(t))
	if got := read(b, "SELECT total FROM orders WHERE id = 10"); got != "[masked]" {
		t.Errorf("session b after a ended: %q", got)
	}
	if got := lastLookUp(); got == lookedUp {
		t.Errorf("no look-up of orders: the last was still at %s", got)
	}
	// The last session ends; a new one within the idle time finds the
	// connection open.
	b.Close(ctxT(t))
	e.idle(t)
	c := e.pgx(t)
	if got := read(c, "SELECT email FROM customers WHERE id = 1"); got != "[masked]" {
		t.Errorf("session c: %q", got)
	}
	if got := backends(); got != first {
		t.Errorf("catalogue connections for a session after the others ended: %q, want the first one %q", got, first)
	}
	// Unused for the idle time, it closes.
	c.Close(ctxT(t))
	waitFor(t, "the catalogue connection closed after its idle time", func() bool { return backends() == "" })

	// Handler.Close (the gateway's shutdown) closes an idle one at once.
	d := e.pgx(t)
	read(d, "SELECT email FROM customers WHERE id = 1")
	d.Close(ctxT(t))
	e.idle(t)
	start := time.Now()
	e.handler.Close()
	waitFor(t, "the catalogue connection closed by Handler.Close", func() bool { return backends() == "" })
	if waited := time.Since(start); waited >= idle {
		t.Errorf("closed after %s, not before the idle time (%s)", waited, idle)
	}
}

// TestResultRewriting runs results through the handler's rewriter with the
// policy's masks (postgres.NewMaskRewriter).
func TestResultRewriting(t *testing.T) {
	e := newEnv(t, envOptions{policy: maskPolicy, rewriter: postgres.NewMaskRewriter})

	t.Run("psql simple query", func(t *testing.T) {
		out, err := e.psql(t, "SELECT id, email, 'write to ' || name || '@corp.example' FROM customers ORDER BY id")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if out != "1|[masked]|write to [masked:email]\n2|[masked]|write to [masked:email]\n" {
			t.Errorf("psql: %q", out)
		}
	})

	t.Run("pgx prepared, described by the statement only", func(t *testing.T) {
		c := e.pgx(t)
		var email string
		// pgx prepares with Describe of the statement and executes without
		// describing the portal: the handler asks upstream itself.
		if err := c.QueryRow(ctxT(t), "SELECT email FROM customers WHERE id = $1", 2).Scan(&email); err != nil || email != "[masked]" {
			t.Errorf("email %q %v", email, err)
		}
	})

	t.Run("binary column refused, session goes on", func(t *testing.T) {
		c := e.pgx(t)
		var total float64
		err := c.QueryRow(ctxT(t), "SELECT total FROM orders WHERE id = $1", 10).Scan(&total)
		pe := pgError(t, err)
		if pe.Code != "42501" || !strings.Contains(pe.Message, "binary") {
			t.Errorf("binary masked column: %+v", pe)
		}
		var name string
		if err := c.QueryRow(ctxT(t), "SELECT name FROM customers WHERE id = $1", 1).Scan(&name); err != nil || name != "Ada" {
			t.Errorf("after the refusal: %q %v", name, err)
		}
	})

	t.Run("text format of the same column", func(t *testing.T) {
		c := e.pgx(t)
		rows, err := c.Query(ctxT(t), "SELECT total::text FROM orders ORDER BY id", pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || strings.Join(vals, ",") != "[masked],[masked]" {
			t.Errorf("totals %q %v", vals, err)
		}
	})

	t.Run("refusal in a pipeline drops the rest up to Sync", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(
			&pgproto3.Parse{Query: "SELECT total FROM orders WHERE id = 10"}, &pgproto3.Bind{ResultFormatCodes: []int16{1}}, &pgproto3.Execute{},
			&pgproto3.Parse{Query: "SELECT 2"}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Sync{})
		got := r.ready()
		if len(got) != 4 || got[0] != "ParseComplete" || got[1] != "BindComplete" ||
			!strings.HasPrefix(got[2], "Error ERROR 42501") || got[3] != "Ready I" {
			t.Errorf("pipeline: %v", got)
		}
		r.send(&pgproto3.Query{String: "SELECT 3"})
		if got := r.ready(); !eq(got, []string{"RowDescription", "Row 3", "Complete SELECT 1", "Ready I"}) {
			t.Errorf("after: %v", got)
		}
	})

	// The statements pipelined after a refused result have run upstream
	// by the time it is refused; the batch must still fail there as the
	// client is told it failed.
	refusedThenInsert := func(body string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "SELECT total FROM orders WHERE id = 10"}, &pgproto3.Bind{ResultFormatCodes: []int16{1}}, &pgproto3.Execute{},
			&pgproto3.Parse{Query: "INSERT INTO notes (body) VALUES ('" + body + "')"}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Sync{},
		}
	}
	notes := func(body string) string {
		return e.pg.Query(t, "SELECT count(*) FROM public.notes WHERE body = '"+body+"'")
	}

	t.Run("refusal in a pipeline rolls back what follows it", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(refusedThenInsert("pipelined")...)
		got := r.ready()
		if len(got) != 4 || !strings.HasPrefix(got[2], "Error ERROR 42501") || got[3] != "Ready I" {
			t.Errorf("pipeline: %v", got)
		}
		if n := notes("pipelined"); n != "0" {
			t.Errorf("the INSERT after the refused SELECT committed: %s rows", n)
		}
		// The batch after it is not held back by anything.
		r.send(&pgproto3.Parse{Query: "INSERT INTO notes (body) VALUES ('after')"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		if got := r.ready(); !eq(got, []string{"ParseComplete", "BindComplete", "Complete INSERT 0 1", "Ready I"}) {
			t.Errorf("next batch: %v", got)
		}
		if n := notes("after"); n != "1" {
			t.Errorf("the next batch's INSERT: %s rows", n)
		}
	})

	t.Run("refusal in a pipeline inside a transaction aborts it", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Query{String: "BEGIN"})
		if got := r.ready(); !eq(got, []string{"Complete BEGIN", "Ready T"}) {
			t.Fatalf("BEGIN: %v", got)
		}
		r.send(refusedThenInsert("in-block")...)
		got := r.ready()
		if len(got) != 4 || !strings.HasPrefix(got[2], "Error ERROR 42501") || got[3] != "Ready E" {
			t.Errorf("pipeline in a transaction: %v", got)
		}
		// Upstream agrees that the transaction failed: COMMIT rolls back.
		r.send(&pgproto3.Query{String: "COMMIT"})
		if got := r.ready(); !eq(got, []string{"Complete ROLLBACK", "Ready I"}) {
			t.Errorf("COMMIT: %v", got)
		}
		if n := notes("in-block"); n != "0" {
			t.Errorf("the INSERT after the refused SELECT committed: %s rows", n)
		}
	})

	t.Run("pgx batch with a refused read", func(t *testing.T) {
		c := e.pgx(t)
		b := &pgx.Batch{}
		b.Queue("SELECT total FROM orders WHERE id = $1", 10)
		b.Queue("INSERT INTO notes (body) VALUES ($1)", "batched")
		err := c.SendBatch(ctxT(t), b).Close()
		if pe := pgError(t, err); pe.Code != "42501" {
			t.Errorf("batch: %+v", pe)
		}
		if n := notes("batched"); n != "0" {
			t.Errorf("the batched INSERT committed: %s rows", n)
		}
	})

	t.Run("simple query refusal of the last statement", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		// The mask refuses nothing in text format, so refuse through COPY
		// BINARY; as a Query's last statement it may be refused.
		r.send(&pgproto3.Query{String: "SELECT 5; COPY customers TO STDOUT (FORMAT binary)"})
		got := r.ready()
		if len(got) != 5 || got[0] != "RowDescription" || got[1] != "Row 5" || !strings.HasPrefix(got[3], "Error ERROR 42501") || got[4] != "Ready I" {
			t.Errorf("got %v", got)
		}
	})

	t.Run("a statement that may be refused must not have statements after it", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		// Refusing the COPY would tell the client its query failed while
		// PostgreSQL still ran the INSERT: the query is denied whole.
		r.send(&pgproto3.Query{String: "COPY customers TO STDOUT (FORMAT binary); INSERT INTO notes (body) VALUES ('after a refusal')"})
		got := r.ready()
		if len(got) != 2 || !strings.HasPrefix(got[0], "Error ERROR 0A000 rule: interlock-guard") || !strings.Contains(got[0], "COPY") || got[1] != "Ready I" {
			t.Errorf("got %v", got)
		}
		if n := notes("after a refusal"); n != "0" {
			t.Errorf("the INSERT ran: %s rows", n)
		}
		// The session goes on.
		r.send(&pgproto3.Query{String: "SELECT 6"})
		if got := r.ready(); len(got) != 4 || got[1] != "Row 6" {
			t.Errorf("after the denial: %v", got)
		}
	})

	t.Run("FETCH from a binary cursor is binary", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		// total is masked by column; in binary format it cannot be.
		r.send(&pgproto3.Query{String: "BEGIN; DECLARE c BINARY CURSOR FOR SELECT id, total FROM orders ORDER BY id"})
		r.ready()
		r.send(&pgproto3.Query{String: "FETCH 1 FROM c"})
		got := r.ready()
		if len(got) != 2 || !strings.HasPrefix(got[0], "Error ERROR 42501") || !strings.Contains(got[0], "binary") || got[1] != "Ready T" {
			t.Errorf("binary FETCH of a masked column: %v", got)
		}
		// A FETCH followed by more statements is denied: its cursor may be
		// binary.
		r.send(&pgproto3.Query{String: "FETCH 1 FROM c; SELECT 7"})
		if got := r.ready(); len(got) != 2 || !strings.Contains(got[0], "interlock-guard") {
			t.Errorf("FETCH not last: %v", got)
		}
		r.send(&pgproto3.Query{String: "ROLLBACK"})
		r.ready()
	})

	t.Run("COPY TO STDOUT masked", func(t *testing.T) {
		c := e.pgx(t)
		var buf bytes.Buffer
		if _, err := c.PgConn().CopyTo(ctxT(t), &buf, "COPY customers (id, email, name) TO STDOUT"); err != nil {
			t.Fatal(err)
		}
		if buf.String() != "1\t[masked]\tAda\n2\t[masked]\tBob\n" {
			t.Errorf("copy: %q", buf.String())
		}
	})

	t.Run("counted and recorded", func(t *testing.T) {
		if got := e.counter(t, "interlock_masked_values_total", map[string]string{"rule": "pii", "target": "shop"}); got < 5 {
			t.Errorf("masked values for pii: %v", got)
		}
		e.idle(t)
		found := false
		for _, c := range e.commands(t) {
			if strings.HasPrefix(c.Text, "SELECT id, email") && c.Masked == 4 && strings.Join(c.MaskRules, ",") == "pii" {
				found = true
			}
		}
		if !found {
			t.Errorf("no recorded command with 4 masked values: %+v", e.commands(t))
		}
	})
}
