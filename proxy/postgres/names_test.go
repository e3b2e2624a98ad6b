package postgres_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy/postgres"
)

// TestParseOfANameInUse: PostgreSQL refuses a Parse of a named statement
// that exists and keeps the old one; the relay's view keeps it too, so a
// COPY's masks follow the statement that runs, not the refused text.
func TestParseOfANameInUse(t *testing.T) {
	e := newEnv(t, envOptions{policy: maskPolicy, rewriter: postgres.NewMaskRewriter})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Parse{Name: "s", Query: "COPY public.customers (email, name) TO STDOUT"}, &pgproto3.Sync{})
	r.expect("first parse", "ParseComplete", "Ready I")
	r.send(&pgproto3.Parse{Name: "s", Query: "COPY public.customers (name, email) TO STDOUT"}, &pgproto3.Sync{})
	r.expectError("second parse of s", "42P05")
	if got := r.copyOut(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}); got != "[masked]\tAda|[masked]\tBob" {
		t.Fatalf("copy of s: %q, want the first statement's rows with its e-mail column masked", got)
	}
}

// TestLongNamesRefused: PostgreSQL keeps statements and portals by the
// first 63 bytes of their names; the relay refuses longer ones rather than
// tell apart names the server does not.
func TestLongNamesRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.rawConn(t, nil)
	r.ready()
	long := strings.Repeat("s", 70)
	for _, msgs := range [][]pgproto3.FrontendMessage{
		{&pgproto3.Parse{Name: long, Query: "SELECT 1"}},
		{&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{DestinationPortal: long}},
		{&pgproto3.Bind{PreparedStatement: long}},
		{&pgproto3.Describe{ObjectType: 'S', Name: long}},
		{&pgproto3.Execute{Portal: long}},
		{&pgproto3.Close{ObjectType: 'P', Name: long}},
	} {
		r.send(append(msgs, &pgproto3.Sync{})...)
		got := filter(r.ready())
		if n := len(got); n < 2 || !strings.Contains(got[n-2], "42622") || !strings.Contains(got[n-2], "longer than 63 bytes") || got[n-1] != "Ready I" {
			t.Errorf("%T: %v, want 42622", msgs[len(msgs)-1], got)
		}
	}
	ok := strings.Repeat("s", 63)
	r.send(&pgproto3.Parse{Name: ok, Query: "SELECT 1"}, &pgproto3.Bind{PreparedStatement: ok}, &pgproto3.Execute{}, &pgproto3.Sync{})
	r.expect("a 63-byte name", "ParseComplete", "BindComplete", "Row 1", "Complete SELECT 1", "Ready I")
}

// TestNamesFollowUpstream: the relay's view of a statement name changes
// when upstream's does — not when a DEALLOCATE or Close that upstream
// skipped (after an error) is sent — so what runs under the name is masked
// and recorded as itself.
func TestNamesFollowUpstream(t *testing.T) {
	e := newEnv(t, envOptions{policy: maskPolicy, rewriter: postgres.NewMaskRewriter})
	r := e.rawConn(t, nil)
	r.ready()
	const emailFirst, nameFirst = "COPY public.customers (email, name) TO STDOUT", "COPY public.customers (name, email) TO STDOUT"
	copyRows := func() string {
		t.Helper()
		return r.copyOut(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	}
	// stillEmailFirst: s still holds emailFirst, which a Parse of the
	// name cannot replace, and its COPY is masked as emailFirst.
	stillEmailFirst := func(after string) {
		t.Helper()
		r.send(&pgproto3.Parse{Name: "s", Query: nameFirst}, &pgproto3.Sync{})
		if got := filter(r.ready()); len(got) != 2 || !strings.Contains(got[0], "42P05") {
			t.Fatalf("parse of s after %s: %v, want 42P05", after, got)
		}
		if got := copyRows(); got != "[masked]\tAda|[masked]\tBob" {
			t.Fatalf("after %s: %q", after, got)
		}
	}
	r.send(&pgproto3.Parse{Name: "s", Query: emailFirst}, &pgproto3.Sync{})
	r.expect("parse", "ParseComplete", "Ready I")

	// A DEALLOCATE after a failing statement of its query does not run.
	r.send(&pgproto3.Query{String: "SELECT 1/0; DEALLOCATE s"})
	r.ready()
	stillEmailFirst("a DEALLOCATE that did not run")

	// A Close after an error in its batch is skipped.
	r.send(&pgproto3.Bind{PreparedStatement: "nowhere"}, &pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
	r.ready()
	stillEmailFirst("a Close that was skipped")

	// A Close that ran frees the name, pipelined with the next Parse of it.
	r.send(&pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{},
		&pgproto3.Parse{Name: "s", Query: nameFirst}, &pgproto3.Sync{})
	r.expect("close", "CloseComplete", "Ready I")
	r.expect("parse after the close", "ParseComplete", "Ready I")
	if got := copyRows(); got != "Ada\t[masked]|Bob\t[masked]" {
		t.Fatalf("after a Close that ran: %q", got)
	}

	// So does a DEALLOCATE that ran.
	r.send(&pgproto3.Query{String: "DEALLOCATE s"}, &pgproto3.Parse{Name: "s", Query: emailFirst}, &pgproto3.Sync{})
	r.expect("deallocate", "Complete DEALLOCATE", "Ready I")
	r.expect("parse after the deallocate", "ParseComplete", "Ready I")
	if got := copyRows(); got != "[masked]\tAda|[masked]\tBob" {
		t.Fatalf("after a DEALLOCATE that ran: %q", got)
	}

	r.send(&pgproto3.Terminate{})
	e.idle(t)
	var texts []string
	for _, c := range e.commands(t) {
		if c.Command == "COPY" {
			texts = append(texts, c.Text)
		}
	}
	if want := []string{emailFirst, emailFirst, nameFirst, emailFirst}; strings.Join(texts, "\n") != strings.Join(want, "\n") {
		t.Fatalf("recorded COPYs:\n%s\nwant\n%s", strings.Join(texts, "\n"), strings.Join(want, "\n"))
	}
}

// TestNamesResolvedByUpstream: what a name runs is settled by upstream's
// answers, whatever the client pipelines and whatever removed the name
// behind the relay's back — a COPY through it is masked by its own
// columns or refused, never masked by another's.
func TestNamesResolvedByUpstream(t *testing.T) {
	e := newEnv(t, envOptions{policy: maskPolicy, rewriter: postgres.NewMaskRewriter})
	e.pg.Exec(t, `CREATE FUNCTION public.dealloc(n text) RETURNS void LANGUAGE plpgsql AS $$
		BEGIN EXECUTE 'DEALLOCATE ' || quote_ident(n); END $$`)
	r := e.rawConn(t, nil)
	r.ready()
	const totalFirst, idFirst = "COPY public.orders (total, id) TO STDOUT", "COPY public.orders (id, total) TO STDOUT"
	const totalFirstRows, idFirstRows = "[masked]\t10|[masked]\t11", "10\t[masked]|11\t[masked]"
	rows := r.copyOut
	copyS := []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}}

	// A Parse that fails, pipelined with the Bind of its name in the
	// next batch: upstream runs what the name held.
	rows(&pgproto3.Parse{Name: "s", Query: totalFirst}, &pgproto3.Sync{})
	got := rows(append([]pgproto3.FrontendMessage{&pgproto3.Parse{Name: "s", Query: idFirst}, &pgproto3.Sync{}}, copyS...)...)
	if got != "error 42P05|"+totalFirstRows {
		t.Fatalf("a refused Parse pipelined with a Bind of the name: %q", got)
	}

	// Removed by a function's dynamic SQL, made again by a Parse.
	rows(&pgproto3.Query{String: "SELECT public.dealloc('s')"})
	rows(&pgproto3.Parse{Name: "s", Query: idFirst}, &pgproto3.Sync{})
	if got := rows(copyS...); got != idFirstRows {
		t.Fatalf("after a dynamic DEALLOCATE and a new Parse: %q", got)
	}

	// Closed in a batch whose result the relay refused (it drops the rest
	// of the batch's answers, which upstream still ran), then made again.
	rows(&pgproto3.Parse{Query: "COPY customers TO STDOUT"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Parse{Name: "t", Query: totalFirst}, &pgproto3.Sync{})
	rows(&pgproto3.Parse{Name: "s", Query: totalFirst}, &pgproto3.Sync{})
	if got := rows(copyS...); got != totalFirstRows {
		t.Fatalf("after a Close in a refused batch and a new Parse: %q", got)
	}
	if got := rows(&pgproto3.Bind{PreparedStatement: "t"}, &pgproto3.Execute{}, &pgproto3.Sync{}); got != "error 42501" {
		t.Fatalf("a statement parsed in a refused batch (upstream may have it): %q, want it refused as unknown", got)
	}
}

// copyOut sends msgs and reads up to the ReadyForQuery of each batch in
// them, returning the COPY rows that came, and the SQLSTATE of each error,
// joined by "|".
func (r *raw) copyOut(msgs ...pgproto3.FrontendMessage) string {
	r.t.Helper()
	r.send(msgs...)
	batches := 0
	for _, m := range msgs {
		switch m.(type) {
		case *pgproto3.Sync, *pgproto3.Query:
			batches++
		}
	}
	var out []string
	for batches > 0 {
		m, err := r.fe.Receive()
		if err != nil {
			r.t.Fatal(err)
		}
		switch m := m.(type) {
		case *pgproto3.CopyData:
			out = append(out, strings.TrimSuffix(string(m.Data), "\n"))
		case *pgproto3.ErrorResponse:
			out = append(out, "error "+m.Code)
		case *pgproto3.ReadyForQuery:
			batches--
		}
	}
	return strings.Join(out, "|")
}

// TestRefusedResultFailsItsBatch: a result the masks refuse fails its
// batch upstream — what was pipelined after it in the batch does not
// commit — also when an earlier batch's error came first, and when the
// statement that runs is not the one the relay took last for its name.
func TestRefusedResultFailsItsBatch(t *testing.T) {
	e := newEnv(t, envOptions{policy: maskPolicy, rewriter: postgres.NewMaskRewriter})
	insert := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "INSERT INTO notes (body) VALUES ('must not commit')"}, &pgproto3.Bind{}, &pgproto3.Execute{}}
	notes := func(t *testing.T) {
		t.Helper()
		if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
			t.Fatalf("notes has %s rows: the refused result's batch committed", got)
		}
	}
	t.Run("after an earlier batch's error", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Parse{Name: "b", Query: "COPY customers TO STDOUT"}, &pgproto3.Sync{})
		r.expect("parse", "ParseComplete", "Ready I")
		msgs := []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "nowhere"}, &pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "b"}, &pgproto3.Execute{}}
		r.send(append(append(msgs, insert...), &pgproto3.Sync{})...)
		r.ready()
		r.ready()
		notes(t)
	})
	t.Run("a refused Parse's name", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Parse{Name: "s", Query: "COPY customers TO STDOUT"}, &pgproto3.Sync{})
		r.expect("parse", "ParseComplete", "Ready I")
		r.send(&pgproto3.Parse{Name: "s", Query: "SELECT 1"}, &pgproto3.Sync{}, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Flush{})
		r.ready()
		r.send(append(append([]pgproto3.FrontendMessage{&pgproto3.Execute{}}, insert...), &pgproto3.Sync{})...)
		r.ready()
		notes(t)
	})
}

// TestStrictRecordingNamesWhatMayRun: with strict recording the command is
// on disk before upstream says which statement a name runs; when the last
// Parse of the name is still unanswered, the event names both.
func TestStrictRecordingNamesWhatMayRun(t *testing.T) {
	e := newEnv(t, envOptions{strict: true})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Parse{Name: "s", Query: "SELECT 'first'"}, &pgproto3.Sync{})
	r.expect("parse", "ParseComplete", "Ready I")
	r.send(&pgproto3.Parse{Name: "s", Query: "SELECT 'second'"}, &pgproto3.Sync{}, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	r.ready()
	r.expect("bind", "BindComplete", "Row first", "Complete SELECT 1", "Ready I")
	r.send(&pgproto3.Terminate{})
	e.idle(t)
	var texts []string
	for _, c := range e.commands(t) {
		texts = append(texts, c.Text)
	}
	want := "SELECT 'second'\n-- or, if the Parse of this name is refused upstream, what it held: SELECT 'first'"
	if len(texts) != 1 || texts[0] != want {
		t.Fatalf("recorded %q, want %q", texts, want)
	}
}
