package postgres_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// raw is a hand-driven protocol session through the gateway.
type raw struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
}

// rawConn starts a session with params (user agent, database postgres by
// default) and reads up to the first ReadyForQuery.
func (e *env) rawConn(t *testing.T, params map[string]string) *raw {
	t.Helper()
	return e.rawConnVersion(t, pgproto3.ProtocolVersion30, params)
}

func (e *env) rawConnVersion(t *testing.T, version uint32, params map[string]string) *raw {
	t.Helper()
	conn, err := net.DialTimeout("tcp", e.listener, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := &raw{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
	p := map[string]string{"user": "agent", "database": "postgres"}
	for k, v := range params {
		p[k] = v
	}
	r.send(&pgproto3.StartupMessage{ProtocolVersion: version, Parameters: p})
	return r
}

func (r *raw) send(msgs ...pgproto3.FrontendMessage) {
	r.t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	if err := r.fe.Flush(); err != nil {
		r.t.Fatalf("sending: %v", err)
	}
}

// until reads messages up to and including one of type T and returns
// them, as strings for easy comparison, plus the last message.
func (r *raw) until(stop func(pgproto3.BackendMessage) bool) []string {
	r.t.Helper()
	var got []string
	for {
		m, err := r.fe.Receive()
		if err != nil {
			r.t.Fatalf("receiving after %v: %v", got, err)
		}
		got = append(got, describeMsg(m))
		if stop(m) {
			return got
		}
	}
}

func (r *raw) ready() []string {
	r.t.Helper()
	return untilMsg[*pgproto3.ReadyForQuery](r)
}

// untilMsg reads messages up to and including the first of type T.
func untilMsg[T pgproto3.BackendMessage](r *raw) []string {
	r.t.Helper()
	return r.until(func(m pgproto3.BackendMessage) bool { _, ok := m.(T); return ok })
}

// expect reads up to ReadyForQuery and fails the test unless what came,
// start-up noise aside, is want.
func (r *raw) expect(what string, want ...string) {
	r.t.Helper()
	if got := filter(r.ready()); !eq(got, want) {
		r.t.Errorf("%s: %q", what, got)
	}
}

// expectError reads up to ReadyForQuery and fails the test unless what
// came, start-up noise aside, is one error containing want, then
// ReadyForQuery.
func (r *raw) expectError(what, want string) {
	r.t.Helper()
	if got := filter(r.ready()); len(got) != 2 || !strings.HasPrefix(got[0], "Error ") || !strings.Contains(got[0], want) {
		r.t.Fatalf("%s: %q, want an error saying %q", what, got, want)
	}
}

func describeMsg(m pgproto3.BackendMessage) string {
	switch m := m.(type) {
	case *pgproto3.ReadyForQuery:
		return "Ready " + string(m.TxStatus)
	case *pgproto3.ErrorResponse:
		return fmt.Sprintf("Error %s %s %s: %s", m.Severity, m.Code, m.Detail, m.Message)
	case *pgproto3.CommandComplete:
		return "Complete " + string(m.CommandTag)
	case *pgproto3.DataRow:
		vals := make([]string, len(m.Values))
		for i, v := range m.Values {
			vals[i] = string(v)
		}
		return "Row " + strings.Join(vals, ",")
	case *pgproto3.ParameterStatus:
		return "Param " + m.Name
	case *pgproto3.NoticeResponse:
		return "Notice " + m.Message
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3.")
}

// filter drops start-up noise.
func filter(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		if !strings.HasPrefix(m, "Param ") && m != "BackendKeyData" && m != "AuthenticationOk" {
			out = append(out, m)
		}
	}
	return out
}

func eq(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

func TestExtendedProtocol(t *testing.T) {
	e := newEnv(t, envOptions{})

	t.Run("prepared statements", func(t *testing.T) {
		c := e.pgx(t)
		ctx := ctxT(t)
		if _, err := c.Prepare(ctx, "by_id", "SELECT name FROM customers WHERE id = $1"); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[int]string{1: "Ada", 2: "Bob"} {
			var name string
			if err := c.QueryRow(ctx, "by_id", id).Scan(&name); err != nil || name != want {
				t.Errorf("by_id(%d) = %q, %v", id, name, err)
			}
		}
		_, err := c.Prepare(ctx, "bad", "DELETE FROM orders WHERE id = $1")
		if pe := pgError(t, err); pe.Code != "42501" || pe.Detail != "rule: orders-read-only" {
			t.Errorf("prepare denied: %+v", pe)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE id > $1", 0).Scan(&n); err != nil || n != 2 {
			t.Errorf("after a denied prepare: %d %v", n, err)
		}
	})

	t.Run("denied with arguments, in and out of a transaction", func(t *testing.T) {
		c := e.pgx(t)
		ctx := ctxT(t)
		_, err := c.Exec(ctx, "DELETE FROM orders WHERE id = $1", 10)
		if pe := pgError(t, err); pe.Code != "42501" {
			t.Errorf("denied: %+v", pe)
		}
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO notes (body) VALUES ($1)", "in tx"); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, "UPDATE orders SET total = $1 WHERE id = 10", 0)
		pgError(t, err)
		if s := c.PgConn().TxStatus(); s != 'E' {
			t.Errorf("status %q after a denial in a transaction, want E", s)
		}
		if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
			t.Errorf("commit: %v, want ErrTxCommitRollback", err)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
			t.Errorf("notes has %q rows", got)
		}
		if got := e.pg.Query(t, "SELECT total FROM public.orders WHERE id = 10"); got != "9.5" {
			t.Errorf("order 10 total %q", got)
		}
	})

	t.Run("pipeline with a denied statement rolls back its implicit transaction", func(t *testing.T) {
		c := e.pgx(t)
		ctx := ctxT(t)
		p := c.PgConn().StartPipeline(ctx)
		p.SendQueryParams("INSERT INTO notes (body) VALUES ($1)", [][]byte{[]byte("one")}, nil, nil, nil)
		p.SendQueryParams("DELETE FROM orders WHERE id = $1", [][]byte{[]byte("10")}, nil, nil, nil)
		p.SendQueryParams("INSERT INTO notes (body) VALUES ($1)", [][]byte{[]byte("three")}, nil, nil, nil)
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
		var outcomes []string
		for {
			res, err := p.GetResults()
			if err != nil {
				var pe *pgconn.PgError
				if errors.As(err, &pe) {
					outcomes = append(outcomes, "error "+pe.Code)
					continue
				}
				t.Fatalf("pipeline: %v", err)
			}
			if res == nil {
				break
			}
			switch r := res.(type) {
			case *pgconn.ResultReader:
				tag, err := r.Close()
				if err != nil {
					outcomes = append(outcomes, "error "+pgError(t, err).Code)
				} else {
					outcomes = append(outcomes, tag.String())
				}
			case *pgconn.PipelineSync:
				outcomes = append(outcomes, "sync")
			}
		}
		if err := p.Close(); err != nil {
			t.Fatalf("closing pipeline: %v", err)
		}
		if got := strings.Join(outcomes, ", "); got != "INSERT 0 1, error 42501, sync" {
			t.Errorf("pipeline outcomes: %s", got)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
			t.Errorf("notes has %q rows: the pipeline's implicit transaction was not rolled back", got)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.orders"); got != "2" {
			t.Errorf("orders has %q rows", got)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT $1::int", 7).Scan(&n); err != nil || n != 7 {
			t.Errorf("after the pipeline: %d %v", n, err)
		}
	})

	t.Run("pgx batch with a denied statement", func(t *testing.T) {
		c := e.pgx(t)
		ctx := ctxT(t)
		b := &pgx.Batch{}
		b.Queue("INSERT INTO notes (body) VALUES ($1)", "batch one")
		b.Queue("DROP TABLE notes")
		b.Queue("INSERT INTO notes (body) VALUES ($1)", "batch three")
		err := c.SendBatch(ctx, b).Close()
		if pe := pgError(t, err); pe.Detail != "rule: no-ddl" {
			t.Errorf("batch: %+v", pe)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
			t.Errorf("notes has %q rows after the failed batch", got)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil || n != 2 {
			t.Errorf("after the batch: %d %v", n, err)
		}
	})

	t.Run("allowed batch", func(t *testing.T) {
		c := e.pgx(t)
		ctx := ctxT(t)
		b := &pgx.Batch{}
		for i := range 20 {
			b.Queue("INSERT INTO notes (body) VALUES ($1)", fmt.Sprint("n", i))
		}
		b.Queue("SELECT count(*) FROM notes")
		br := c.SendBatch(ctx, b)
		for range 20 {
			if _, err := br.Exec(); err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if err := br.QueryRow().Scan(&n); err != nil || n != 20 {
			t.Errorf("count %d %v", n, err)
		}
		if err := br.Close(); err != nil {
			t.Fatal(err)
		}
		e.pg.Exec(t, "DELETE FROM public.notes")
	})

	t.Run("a denied statement's name stays denied", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Parse{Name: "bad", Query: "DROP TABLE customers"}, &pgproto3.Sync{})
		if got := r.ready(); !eq(got, []string{"Error ERROR 42501 rule: no-ddl: schema and privilege changes are not allowed for agents", "Ready I"}) {
			t.Errorf("parse: %v", got)
		}
		r.send(&pgproto3.Bind{PreparedStatement: "bad"}, &pgproto3.Execute{}, &pgproto3.Sync{})
		if got := r.ready(); !eq(got, []string{"Error ERROR 42501 rule: no-ddl: schema and privilege changes are not allowed for agents", "Ready I"}) {
			t.Errorf("bind of the denied statement: %v", got)
		}
		r.send(&pgproto3.Describe{ObjectType: 'S', Name: "bad"}, &pgproto3.Sync{})
		if got := r.ready(); len(got) != 2 || !strings.Contains(got[0], "rule: no-ddl") {
			t.Errorf("describe of the denied statement: %v", got)
		}
		r.send(&pgproto3.Close{ObjectType: 'S', Name: "bad"}, &pgproto3.Sync{})
		if got := r.ready(); !eq(got, []string{"CloseComplete", "Ready I"}) {
			t.Errorf("close: %v", got)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.customers"); got != "2" {
			t.Errorf("customers has %q rows", got)
		}
	})

	t.Run("a denied unnamed statement never runs the previous one", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Parse{Query: "INSERT INTO notes (body) VALUES ('old unnamed')"}, &pgproto3.Sync{})
		if got := r.ready(); !eq(got, []string{"ParseComplete", "Ready I"}) {
			t.Fatalf("parse: %v", got)
		}
		r.send(&pgproto3.Parse{Query: "DROP TABLE notes"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		if got := r.ready(); !eq(got, []string{"Error ERROR 42501 rule: no-ddl: schema and privilege changes are not allowed for agents", "Ready I"}) {
			t.Errorf("denied unnamed: %v", got)
		}
		r.send(&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		got := r.ready()
		if len(got) != 2 || !strings.Contains(got[0], "42501") {
			t.Errorf("bind of the denied unnamed statement: %v", got)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
			t.Errorf("notes has %q rows: the old unnamed statement ran", got)
		}
	})

	t.Run("denial inside a pipeline in a transaction block", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Query{String: "BEGIN"})
		r.ready()
		r.send(
			&pgproto3.Parse{Query: "INSERT INTO notes (body) VALUES ('x')"}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Parse{Name: "s2", Query: "DROP TABLE notes"}, &pgproto3.Bind{PreparedStatement: "s2"}, &pgproto3.Execute{},
			&pgproto3.Sync{})
		want := []string{"ParseComplete", "BindComplete", "Complete INSERT 0 1",
			"Error ERROR 42501 rule: no-ddl: schema and privilege changes are not allowed for agents", "Ready E"}
		if got := r.ready(); !eq(got, want) {
			t.Errorf("pipeline:\n got %v\nwant %v", got, want)
		}
		r.send(&pgproto3.Query{String: "COMMIT"})
		if got := r.ready(); !eq(got, []string{"Complete ROLLBACK", "Ready I"}) {
			t.Errorf("commit: %v", got)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
			t.Errorf("notes has %q rows", got)
		}
	})

	t.Run("denial after a Flush inside a batch aborts the batch", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Parse{Query: "INSERT INTO notes (body) VALUES ('flushed')"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
		got := untilMsg[*pgproto3.CommandComplete](r)
		if !eq(got, []string{"ParseComplete", "BindComplete", "Complete INSERT 0 1"}) {
			t.Fatalf("before the denial: %v", got)
		}
		// Nothing is pending now, but upstream's batch is open: the
		// denial must abort it, as an error would.
		r.send(&pgproto3.Parse{Query: "DROP TABLE notes"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		if got := r.ready(); !eq(got, []string{"Error ERROR 42501 rule: no-ddl: schema and privilege changes are not allowed for agents", "Ready I"}) {
			t.Errorf("denial: %v", got)
		}
		r.send(&pgproto3.Query{String: "SELECT 1"})
		r.ready()
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
			t.Errorf("notes has %q rows: the aborted batch's INSERT was committed", got)
		}
	})

	t.Run("function call refused", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		// 1299 is now(); any function would do.
		r.send(&pgproto3.FunctionCall{Function: 1299})
		if got := r.ready(); !eq(got, []string{"Error ERROR 42501 : function call protocol is not allowed", "Ready I"}) {
			t.Errorf("function call: %v", got)
		}
		r.send(&pgproto3.Query{String: "SELECT 1"})
		if got := r.ready(); !eq(got, []string{"RowDescription", "Row 1", "Complete SELECT 1", "Ready I"}) {
			t.Errorf("after the function call: %v", got)
		}
	})

	t.Run("function call in a transaction fails it", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Query{String: "BEGIN"})
		r.ready()
		r.send(&pgproto3.FunctionCall{Function: 1299})
		if got := r.ready(); !eq(got, []string{"Error ERROR 42501 : function call protocol is not allowed", "Ready E"}) {
			t.Errorf("function call: %v", got)
		}
		r.send(&pgproto3.Query{String: "ROLLBACK"})
		if got := r.ready(); !eq(got, []string{"Complete ROLLBACK", "Ready I"}) {
			t.Errorf("rollback: %v", got)
		}
	})

	t.Run("pipelined simple queries with a denial in the middle", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Query{String: "DROP TABLE notes"}, &pgproto3.Query{String: "SELECT 3"})
		var got []string
		for range 3 {
			got = append(got, r.ready()...)
		}
		want := []string{"RowDescription", "Row 1", "Complete SELECT 1", "Ready I",
			"Error ERROR 42501 rule: no-ddl: schema and privilege changes are not allowed for agents", "Ready I",
			"RowDescription", "Row 3", "Complete SELECT 1", "Ready I"}
		if !eq(got, want) {
			t.Errorf("\n got %v\nwant %v", got, want)
		}
	})

	t.Run("multiple commands in one Parse", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Parse{Query: "SELECT 1; SELECT 2"}, &pgproto3.Sync{})
		if got := r.ready(); !eq(got, []string{"Error ERROR 42601 : cannot insert multiple commands into a prepared statement", "Ready I"}) {
			t.Errorf("%v", got)
		}
	})

	t.Run("client may terminate", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Terminate{})
		r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := r.fe.Receive(); err == nil {
			t.Error("the gateway kept the connection open after Terminate")
		}
	})

	t.Run("portal suspended and resumed", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Query{String: "BEGIN"})
		r.ready()
		r.send(&pgproto3.Parse{Query: "SELECT id FROM customers ORDER BY id"}, &pgproto3.Bind{DestinationPortal: "p"},
			&pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Sync{})
		want := []string{"ParseComplete", "BindComplete", "Row 1", "PortalSuspended", "Row 2", "PortalSuspended", "Ready T"}
		if got := r.ready(); !eq(got, want) {
			t.Errorf("\n got %v\nwant %v", got, want)
		}
		r.send(&pgproto3.Query{String: "COMMIT"})
		r.ready()
	})
}

// A prepared statement is decided once, at Parse, and counted at each
// execution, as it is recorded.
func TestPreparedCountedPerExecution(t *testing.T) {
	e := newEnv(t, envOptions{})
	c, err := pgconn.Connect(ctxT(t), e.connString(""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctxT(t))
	if _, err := c.Prepare(ctxT(t), "q", "SELECT name FROM customers WHERE id = $1", nil); err != nil {
		t.Fatal(err)
	}
	allowed := map[string]string{"protocol": "postgres", "decision": "allow"}
	before := e.counter(t, "interlock_commands_total", allowed)
	for i := range 3 {
		if err := c.ExecPrepared(ctxT(t), "q", [][]byte{[]byte(fmt.Sprint(i + 1))}, nil, nil).Read().Err; err != nil {
			t.Fatal(err)
		}
	}
	if got := e.counter(t, "interlock_commands_total", allowed) - before; got != 3 {
		t.Errorf("commands_total{allow} moved by %v for 3 executions, want 3", got)
	}
}
