package postgres_test

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy/postgres"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
)

// The gateway's own guards. Most tests here try to make the server read a
// statement differently from the gateway: the server runs `DELETE FROM
// orders`, which the policy denies, hidden inside what the gateway reads as
// one harmless SELECT.

// procedural lets DO blocks run, and denies writes to orders.
const procedural = `
default: allow
rules:
  - name: orders-read-only
    when: sql.kind == "write" && "orders" in sql.tables
    action: deny
    message: orders are read-only
`

// smuggleSJIS is one SELECT of an escape string (E'...') to a UTF-8 reader (ぁ, then
// an escaped quote), and to a server reading SJIS (in which \xe3\x81 and
// \x81\x5c are characters) a SELECT, then the DELETE.
const smuggleSJIS = "SELECT E'\xe3\x81\x81\\'; DELETE FROM orders; --'"

// smuggleSCS is one SELECT with standard_conforming_strings on, a SELECT
// and the DELETE with it off.
const smuggleSCS = `SELECT 'a\'' ; DELETE FROM orders; --'`

func ordersLeft(t *testing.T, e *env) {
	t.Helper()
	if got := e.pg.Query(t, "SELECT count(*) FROM public.orders"); got != "2" {
		t.Fatalf("orders left: %s, want 2 — the smuggled DELETE ran", got)
	}
}

// TestStartupParameterSpelling: PostgreSQL reads start-up parameter names
// without regard to case, so the gateway's pins hold for every spelling,
// and a packet giving one setting twice is refused.
func TestStartupParameterSpelling(t *testing.T) {
	e := newEnv(t, envOptions{policy: procedural})
	for _, tc := range []struct{ param, value, show, want string }{
		{"CLIENT_ENCODING", "SJIS", "client_encoding", "UTF8"},
		{"Client_Encoding", "BIG5", "client_encoding", "UTF8"},
		{"STANDARD_CONFORMING_STRINGS", "off", "standard_conforming_strings", "on"},
	} {
		// pgconn wrote its parameters in map order, so the unpinned
		// spelling won only some of the time: try a few.
		for range 4 {
			r := e.rawConn(t, map[string]string{tc.param: tc.value})
			r.ready()
			r.send(&pgproto3.Query{String: "SHOW " + tc.show})
			if got := filter(r.ready()); !eq(got, []string{"RowDescription", "Row " + tc.want, "Complete SHOW", "Ready I"}) {
				t.Fatalf("%s=%s: SHOW %s: %q", tc.param, tc.value, tc.show, got)
			}
			r.send(&pgproto3.Query{String: smuggleSJIS})
			r.ready()
			r.send(&pgproto3.Terminate{})
		}
	}
	ordersLeft(t, e)

	r := e.rawConn(t, map[string]string{"client_encoding": "UTF8", "CLIENT_ENCODING": "SJIS"})
	got := untilMsg[*pgproto3.ErrorResponse](r)
	if last := got[len(got)-1]; !strings.Contains(last, "FATAL 08P01") || !strings.Contains(last, "more than once") {
		t.Errorf("two spellings of client_encoding: %q", got)
	}
}

// TestUnsafeDefaultEncoding: a role's or database's default encoding
// applies when the client asks for none; one the gateway cannot read
// alongside the server refuses the session with a reason.
func TestUnsafeDefaultEncoding(t *testing.T) {
	e := newEnv(t, envOptions{policy: procedural})
	e.pg.Exec(t, "CREATE DATABASE sjis")
	e.pg.Exec(t, "ALTER DATABASE sjis SET client_encoding = 'SJIS'")
	r := e.rawConn(t, map[string]string{"database": "sjis"})
	got := untilMsg[*pgproto3.ErrorResponse](r)
	if last := got[len(got)-1]; !strings.Contains(last, "FATAL 0A000") || !strings.Contains(last, "client_encoding=SJIS") {
		t.Errorf("session with a SJIS default: %q", got)
	}
	// Asking for UTF8 at start-up outranks the default.
	r = e.rawConn(t, map[string]string{"database": "sjis", "client_encoding": "UTF8"})
	r.ready()
	r.send(&pgproto3.Query{String: "SHOW client_encoding"})
	r.expect("SHOW client_encoding", "RowDescription", "Row UTF8", "Complete SHOW", "Ready I")
}

// TestSettingsChangedUpstream: code running upstream (a DO block here) can
// change the settings that decide how the server reads SQL, where the
// gateway's SET guard cannot see it. A statement that would read
// differently (one with a backslash) pipelined behind it waits for the
// server's report of the change, which ends the session; in an
// extended-protocol batch, which reports only at its Sync, it is denied.
func TestSettingsChangedUpstream(t *testing.T) {
	e := newEnv(t, envOptions{policy: procedural})
	for _, tc := range []struct{ change, smuggle string }{
		{"DO $$ BEGIN EXECUTE 'SET client_encoding = ''SJIS'''; END $$", smuggleSJIS},
		{"DO $$ BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); END $$", smuggleSCS},
	} {
		t.Run("simple", func(t *testing.T) {
			r := e.rawConn(t, nil)
			r.ready()
			r.send(&pgproto3.Query{String: tc.change}, &pgproto3.Query{String: tc.smuggle})
			got := r.until(func(m pgproto3.BackendMessage) bool {
				er, ok := m.(*pgproto3.ErrorResponse)
				return ok && er.Severity == "FATAL"
			})
			if !strings.Contains(got[len(got)-1], "interlock ended the session") {
				t.Errorf("%s, then the smuggling query: %q", tc.change, got)
			}
			ordersLeft(t, e)
		})
		t.Run("extended", func(t *testing.T) {
			r := e.rawConn(t, nil)
			r.ready()
			r.send(&pgproto3.Parse{Query: tc.change}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: tc.smuggle}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			got := r.ready()
			joined := strings.Join(got, "\n")
			if !strings.Contains(joined, "Error ERROR 0A000 rule: interlock-guard") || !strings.Contains(joined, "backslash") {
				t.Errorf("%s, then the smuggling statement in one batch: %q", tc.change, got)
			}
			ordersLeft(t, e)
		})
	}
	// Without a change ahead of it, a pipelined statement with a backslash
	// runs as usual, once what is ahead of it has finished.
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Query{String: "SELECT pg_sleep(0.05)"}, &pgproto3.Query{String: `SELECT 'a\b'`})
	r.ready()
	r.expect("pipelined backslash statement", "RowDescription", `Row a\b`, "Complete SELECT 1", "Ready I")
}

// TestStalePortalDescription: a portal's description is trusted for an
// Execute only until something runs that may have replaced the portal;
// here a cursor of the same name, over a masked column (orders.total), after
// the portal the client described (of orders.id) was gone.
func TestStalePortalDescription(t *testing.T) {
	e := newEnv(t, envOptions{policy: maskPolicy, rewriter: postgres.NewMaskRewriter})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Parse{Name: "a", Query: "SELECT id FROM orders ORDER BY id"},
		&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "a"},
		&pgproto3.Describe{ObjectType: 'P', Name: "p"}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
	r.ready()
	r.send(&pgproto3.Query{String: "DECLARE p CURSOR WITH HOLD FOR SELECT total FROM orders ORDER BY id"})
	r.ready()
	r.send(&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
	got := filter(r.ready())
	if !eq(got, []string{"Row [masked]", "Row [masked]", "Complete SELECT 2", "Ready I"}) {
		t.Errorf("rows of the cursor that replaced a described portal: %q", got)
	}
}

// TestCopyInExtendedProtocol: libpq runs COPY FROM STDIN through the
// extended protocol with a Sync right after the Execute, which the server
// ignores in copy-in mode, and another after CopyDone; one ReadyForQuery
// answers both, and the session goes on.
func TestCopyInExtendedProtocol(t *testing.T) {
	e := newEnv(t, envOptions{policy: procedural})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Parse{Query: "COPY notes (body) FROM STDIN"}, &pgproto3.Bind{},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
	untilMsg[*pgproto3.CopyInResponse](r)
	r.send(&pgproto3.CopyData{Data: []byte("copied\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	r.expect("end of the COPY", "Complete COPY 1", "Ready I")
	r.send(&pgproto3.Query{String: "SELECT body FROM notes"})
	r.expect("the next query", "RowDescription", "Row copied", "Complete SELECT 1", "Ready I")
}

// TestStatementTooLong: SQL text beyond the gateway's limit is denied
// without being kept in memory (read past, not read whole), and the session
// goes on.
func TestStatementTooLong(t *testing.T) {
	e := newEnv(t, envOptions{policy: procedural})
	long := "SELECT '" + strings.Repeat("x", 17<<20) + "'"
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Query{String: long})
	// What came back, cut short: a result would be 17 MiB long.
	brief := func(msgs []string) []string {
		for i, m := range msgs {
			if len(m) > 200 {
				msgs[i] = m[:200] + "…"
			}
		}
		return msgs
	}
	if got := filter(r.ready()); len(got) != 2 || !strings.Contains(got[0], "Error ERROR 54000 rule: interlock-guard") || !strings.Contains(got[0], "limit of 16 MiB") {
		t.Errorf("17 MiB Query: %q", brief(got))
	}
	r.send(&pgproto3.Parse{Query: long}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if got := filter(r.ready()); len(got) != 2 || !strings.Contains(got[0], "Error ERROR 54000") {
		t.Errorf("17 MiB Parse: %q", brief(got))
	}
	// Below the limit a long statement runs.
	r.send(&pgproto3.Query{String: "SELECT length('" + strings.Repeat("x", 1<<20) + "')"})
	r.expect("1 MiB statement", "RowDescription", "Row 1048576", "Complete SELECT 1", "Ready I")
}

// TestRecordingOrderPipelined: the session log lists statements in the
// order the client sent them, also when a denied one was pipelined behind
// one still running (which is recorded when its result comes).
func TestRecordingOrderPipelined(t *testing.T) {
	e := newEnv(t, envOptions{policy: procedural})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Query{String: "SELECT pg_sleep(0.2)"}, &pgproto3.Query{String: "DELETE FROM orders"},
		&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "DELETE FROM orders WHERE id = 10"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	r.ready()
	if got := filter(r.ready()); len(got) != 2 || !strings.Contains(got[0], "orders are read-only") {
		t.Fatalf("pipelined DELETE: %q", got)
	}
	if got := filter(r.ready()); len(got) < 2 || !strings.Contains(got[len(got)-2], "orders are read-only") {
		t.Fatalf("batch with a denied DELETE: %q", got)
	}
	r.send(&pgproto3.Terminate{})
	e.idle(t)
	var order []string
	for _, c := range e.commands(t) {
		order = append(order, c.Decision+" "+c.Text)
	}
	want := []string{"allow SELECT pg_sleep(0.2)", "deny DELETE FROM orders", "allow SELECT 1", "deny DELETE FROM orders WHERE id = 10"}
	if !eq(order, want) {
		t.Errorf("recorded:\n%s\nwant:\n%s", strings.Join(order, "\n"), strings.Join(want, "\n"))
	}
}

// TestPreparedNameReplacedInSQL: SQL's PREPARE and DEALLOCATE share their
// names with the protocol's prepared statements; a Bind after `DEALLOCATE
// s; PREPARE s AS ...` runs the new statement, and is not recorded as the
// one the gateway saw parsed under that name.
func TestPreparedNameReplacedInSQL(t *testing.T) {
	e := newEnv(t, envOptions{policy: procedural})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Parse{Name: "s", Query: "SELECT id FROM customers WHERE id = 1"}, &pgproto3.Sync{})
	r.ready()
	r.send(&pgproto3.Query{String: "DEALLOCATE s; PREPARE s AS INSERT INTO notes (body) VALUES ('replaced')"})
	r.ready()
	r.send(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	r.expect("Bind of the replaced statement", "BindComplete", "Complete INSERT 0 1", "Ready I")
	r.send(&pgproto3.Terminate{})
	e.idle(t)
	cmds := e.commands(t)
	last := cmds[len(cmds)-1]
	if strings.Contains(last.Text, "SELECT id FROM customers") || last.Tag != "INSERT 0 1" {
		t.Errorf("the replaced statement's execution recorded as %+v", last)
	}
}

// shortSighted classifies as the real classifier does but drops a
// query's last statement: a gateway reading less than the server runs.
type shortSighted struct{ postgres.Classifier }

func (s shortSighted) Classify(sql string) ([]sqlfacts.Statement, error) {
	stmts, err := s.Classifier.Classify(sql)
	if len(stmts) > 1 {
		stmts = stmts[:len(stmts)-1]
	}
	return stmts, err
}

// TestMoreResultsThanStatements: when the server runs more statements of a
// query than the gateway read (what the guards above prevent), the session
// ends with the reason instead of passing results it cannot place.
func TestMoreResultsThanStatements(t *testing.T) {
	e := newEnv(t, envOptions{policy: procedural, classifier: shortSighted{sqlfacts.NewClassifier(16)}})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Query{String: "SELECT 1; SELECT 2"})
	got := untilMsg[*pgproto3.ErrorResponse](r)
	if last := got[len(got)-1]; !strings.Contains(last, "FATAL") || !strings.Contains(last, "interlock ended the session") {
		t.Errorf("a query of more statements than the gateway read: %q", got)
	}
}

// TestNestedCommandsDenied: the gateway hands the policy every command a
// statement runs (sql.commands) and has_where of all of them, so a rule
// against unbounded deletes holds however the DELETE is wrapped.
func TestNestedCommandsDenied(t *testing.T) {
	e := newEnv(t, envOptions{policy: `
default: allow
rules:
  - name: no-unbounded-delete
    when: '"DELETE" in sql.commands && !sql.has_where'
    action: deny
`})
	for _, sql := range []string{
		"DELETE FROM customers",
		"EXPLAIN ANALYZE DELETE FROM customers",
		"WITH d AS (DELETE FROM customers RETURNING 1) SELECT count(*) FROM d",
		"WITH d AS (DELETE FROM customers RETURNING 1) DELETE FROM orders WHERE id = 10",
		"PREPARE p AS DELETE FROM customers",
	} {
		out, err := e.psql(t, sql)
		if err == nil || !strings.Contains(out, "no-unbounded-delete") {
			t.Errorf("%s: not denied (%v)\n%s", sql, err, out)
		}
	}
	if got := e.pg.Query(t, "SELECT count(*) FROM public.customers"); got != "2" {
		t.Fatalf("customers left: %s", got)
	}
	if out, err := e.psql(t, "EXPLAIN ANALYZE DELETE FROM notes WHERE id = 0"); err != nil {
		t.Errorf("a bounded DELETE under EXPLAIN ANALYZE: %v\n%s", err, out)
	}
}

// TestRecordingOfSkippedStatements: statements that were decided and
// forwarded but never ran, because an earlier one of their query or batch
// failed, are in the session log with why, as they are in the command
// metrics.
func TestRecordingOfSkippedStatements(t *testing.T) {
	e := newEnv(t, envOptions{policy: procedural})
	r := e.rawConn(t, nil)
	r.ready()
	// 1/0 fails when planned, at Bind; the INSERT's Execute is skipped.
	r.send(&pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Name: "ins", Query: "INSERT INTO notes (body) VALUES ('batch')"}, &pgproto3.Bind{PreparedStatement: "ins"}, &pgproto3.Execute{},
		&pgproto3.Sync{})
	r.ready()
	r.send(&pgproto3.Query{String: "SELECT 1/0; INSERT INTO notes (body) VALUES ('query')"})
	r.ready()
	r.send(&pgproto3.Terminate{})
	e.idle(t)
	if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
		t.Fatalf("notes: %s rows, want none", got)
	}
	var log []string
	for _, c := range e.commands(t) {
		log = append(log, c.Text+" → "+c.Error)
	}
	want := []string{
		"SELECT 1/0 → not run: an earlier message of its batch failed (division by zero)",
		"INSERT INTO notes (body) VALUES ('batch') → not run: an earlier message of its batch failed (division by zero)",
		"SELECT 1/0 → division by zero",
		"INSERT INTO notes (body) VALUES ('query') → not run: an earlier statement of its query failed",
	}
	if !eq(log, want) {
		t.Errorf("recorded:\n%s\nwant:\n%s", strings.Join(log, "\n"), strings.Join(want, "\n"))
	}
}

// TestSettleLexingCases: what waits or is denied behind running code, and
// what goes on at once, in the pipelines drivers send.
func TestSettleLexingCases(t *testing.T) {
	e := newEnv(t, envOptions{policy: maskPolicy, rewriter: postgres.NewMaskRewriter})

	t.Run("after an error upstream", func(t *testing.T) {
		// Upstream skips to the Sync after the failed Parse; a later
		// Parse that would wait for upstream to be idle must not wait for
		// that Sync, which the client goroutine has not read yet.
		r := e.rawConn(t, nil)
		r.ready()
		r.conn.SetDeadline(time.Now().Add(10 * time.Second))
		r.send(&pgproto3.Parse{Name: "s1", Query: "SELECT * FROM no_such_table"}, &pgproto3.Describe{ObjectType: 'S', Name: "s1"},
			&pgproto3.Parse{Name: "s2", Query: `SELECT 'it\'s'`}, &pgproto3.Describe{ObjectType: 'S', Name: "s2"}, &pgproto3.Sync{})
		if got := filter(r.ready()); len(got) != 2 || !strings.Contains(got[0], "42P01") {
			t.Errorf("batch with a failed Parse: %q", got)
		}
	})

	t.Run("backslashes that read the same", func(t *testing.T) {
		// Parse/Bind/Execute per statement and one Sync, as JDBC's
		// executeBatch and pgx's exec mode send them.
		c, err := pgx.Connect(ctxT(t), e.connString("default_query_exec_mode=exec"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctxT(t))
		b := &pgx.Batch{}
		for i := range 3 {
			b.Queue(`INSERT INTO notes (body) SELECT E'line\n' || $1::text WHERE 'x' NOT LIKE 'a\_%'`, fmt.Sprint(i))
		}
		if err := c.SendBatch(ctxT(t), b).Close(); err != nil {
			t.Errorf("batch of inserts with E'\\n': %v", err)
		}
	})

	t.Run("a function replaces a portal at Bind", func(t *testing.T) {
		// Planning folds an IMMUTABLE function at Bind: this one closes
		// portal p, which the client described over orders.id, and opens
		// a cursor p over orders.total, which is masked.
		e.pg.Exec(t, `CREATE FUNCTION public.swap() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
DECLARE c refcursor := 'p';
BEGIN
  CLOSE c;
  OPEN c FOR SELECT total FROM public.orders ORDER BY id;
  RETURN 1;
END $$;
GRANT EXECUTE ON FUNCTION public.swap() TO app`)
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Query{String: "BEGIN"})
		r.ready()
		r.send(&pgproto3.Parse{Name: "a", Query: "SELECT id FROM orders ORDER BY id"},
			&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "a"}, &pgproto3.Describe{ObjectType: 'P', Name: "p"},
			&pgproto3.Parse{Name: "b", Query: "SELECT public.swap()"}, &pgproto3.Bind{DestinationPortal: "q", PreparedStatement: "b"},
			&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
		for _, m := range filter(r.ready()) {
			if m == "Row 9.5" || m == "Row 20" {
				t.Fatalf("orders.total relayed unmasked through a replaced portal: %s", m)
			}
		}
	})
}

// TestCopyInEndedByError: a COPY FROM STDIN that upstream ends with an
// error (the client sends no CopyDone; the protocol does not need one)
// leaves the session's later Syncs answered as usual.
func TestCopyInEndedByError(t *testing.T) {
	e := newEnv(t, envOptions{policy: procedural})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Query{String: "COPY notes (id) FROM STDIN"})
	untilMsg[*pgproto3.CopyInResponse](r)
	r.send(&pgproto3.CopyData{Data: []byte("not-a-number\n")})
	r.ready()
	r.send(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Query{String: "SELECT 2"})
	r.expect("batch after the COPY", "ParseComplete", "BindComplete", "Row 1", "Complete SELECT 1", "Ready I")
	r.expect("query after the COPY", "RowDescription", "Row 2", "Complete SELECT 1", "Ready I")
}

// TestSyncDuringCopyIn: a Sync sent while a COPY FROM STDIN is taking data
// is ignored upstream, and the session goes on after the COPY.
func TestSyncDuringCopyIn(t *testing.T) {
	e := newEnv(t, envOptions{policy: procedural})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Query{String: "COPY notes (body) FROM STDIN"})
	untilMsg[*pgproto3.CopyInResponse](r)
	r.send(&pgproto3.CopyData{Data: []byte("x\n")}, &pgproto3.Sync{}, &pgproto3.CopyDone{})
	r.expect("the COPY", "Complete COPY 1", "Ready I")
	r.send(&pgproto3.Query{String: "SELECT 2"})
	r.expect("the query after it", "RowDescription", "Row 2", "Complete SELECT 1", "Ready I")
}

// TestLongCopyDataStreamed: a client's long CopyData goes upstream as it
// arrives instead of being held whole in the gateway's memory.
func TestLongCopyDataStreamed(t *testing.T) {
	e := newEnv(t, envOptions{policy: procedural})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Query{String: "COPY notes (body) FROM STDIN"})
	untilMsg[*pgproto3.CopyInResponse](r)

	const size, lineLen = 32 << 20, 1024
	line := []byte(strings.Repeat("x", lineLen-1) + "\n")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	hdr := []byte{'d', 0, 0, 0, 0}
	binary.BigEndian.PutUint32(hdr[1:], size+4)
	if _, err := r.conn.Write(hdr); err != nil {
		t.Fatal(err)
	}
	for range size / lineLen {
		if _, err := r.conn.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	r.send(&pgproto3.CopyDone{})
	got := filter(r.ready())
	runtime.ReadMemStats(&after)
	if !eq(got, []string{fmt.Sprintf("Complete COPY %d", size/lineLen), "Ready I"}) {
		t.Fatalf("COPY of one %d MiB CopyData: %q", size>>20, got)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > size/4 {
		t.Errorf("the gateway allocated %d MiB while relaying a %d MiB CopyData", grew>>20, size>>20)
	}
	if got := e.pg.Query(t, "SELECT count(*) FROM public.notes WHERE length(body) = 1023"); got != fmt.Sprint(size/lineLen) {
		t.Errorf("rows copied: %s", got)
	}

	// After a denied COPY in the extended protocol the relay discards the
	// client's messages up to the Sync, a long CopyData too.
	r.send(&pgproto3.Parse{Query: "COPY orders FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{})
	binary.BigEndian.PutUint32(hdr[1:], 4<<20+4)
	r.conn.Write(hdr)
	for range (4 << 20) / lineLen {
		r.conn.Write(line)
	}
	r.send(&pgproto3.CopyDone{}, &pgproto3.Sync{})
	if got := filter(r.ready()); len(got) != 2 || !strings.Contains(got[0], "orders are read-only") {
		t.Errorf("denied COPY with a long CopyData: %q", got)
	}
	r.send(&pgproto3.Query{String: "SELECT count(*) FROM orders"})
	r.expect("after it", "RowDescription", "Row 2", "Complete SELECT 1", "Ready I")
}
