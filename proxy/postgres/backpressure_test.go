package postgres_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy/postgres"
)

// pipeline is n unnamed Parse, Bind, Execute of SELECT 1: about 1.5 KiB
// of pending entries each.
func pipeline(n int) []pgproto3.FrontendMessage {
	msgs := make([]pgproto3.FrontendMessage, 0, 3*n)
	for range n {
		msgs = append(msgs, &pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{})
	}
	return msgs
}

// TestRefusedResultEndsWaitForRoom: after the masks refuse a result the
// relay drops upstream's answers up to ReadyForQuery, so the pending
// queue no longer drains: the client goroutine, waiting for room, must
// not wait for it (the Sync that would bring ReadyForQuery is still in
// the client's pipeline), and skips the rest of the batch as after an
// upstream error. The client gets the refusal and ReadyForQuery, as it
// would an error of PostgreSQL's, and the batch still fails.
func TestRefusedResultEndsWaitForRoom(t *testing.T) {
	e := newEnv(t, envOptions{policy: maskPolicy, rewriter: postgres.NewMaskRewriter, pendingLimit: 32 << 10})
	r := e.rawConn(t, nil)
	r.ready()
	r.conn.SetDeadline(time.Now().Add(20 * time.Second))
	msgs := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "COPY customers TO STDOUT"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "INSERT INTO notes (body) VALUES ('must not commit')"}, &pgproto3.Bind{}, &pgproto3.Execute{}}
	msgs = append(msgs, pipeline(300)...)
	r.send(append(msgs, &pgproto3.Sync{})...)
	got := filter(r.ready())
	if len(got) < 2 || !strings.Contains(got[len(got)-2], "42501") {
		t.Fatalf("a pipeline after a refused result: %q, want the refusal and ReadyForQuery", got)
	}
	if got := e.pg.Query(t, "SELECT count(*) FROM public.notes"); got != "0" {
		t.Errorf("notes has %s rows: the refused result's batch committed", got)
	}
	r.send(&pgproto3.Query{String: "SELECT 'next'"})
	r.expect("a query after the batch", "RowDescription", "Row next", "Complete SELECT 1", "Ready I")
}

// TestEndedCopyStillWaitsForRoom: once the client ended a COPY FROM
// STDIN its entry is answered (only the Sync after it waits for the
// client), so what the client pipelines after the CopyDone is bounded as
// any pipeline is, though upstream's ReadyForQuery has not come yet.
func TestEndedCopyStillWaitsForRoom(t *testing.T) {
	const limit = 32 << 10
	e, most := pipelineEnv(t, limit)
	r := e.rawConn(t, nil)
	r.ready()
	r.conn.SetDeadline(time.Now().Add(20 * time.Second))
	r.send(&pgproto3.Parse{Query: "COPY notes (body) FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	untilMsg[*pgproto3.CopyInResponse](r)
	const n = 1000
	msgs := append([]pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("copied\n")}, &pgproto3.CopyDone{}}, pipeline(n)...)
	r.send(append(msgs, &pgproto3.Sync{})...)
	got := strings.Join(filter(r.ready()), "\n")
	if c := strings.Count(got, "Complete SELECT 1"); c != n || !strings.Contains(got, "Complete COPY 1") {
		t.Fatalf("%d of %d statements after the COPY answered: %.200q", c, n, got)
	}
	if most.Load() > limit+1024 {
		t.Errorf("the pending queue held up to %d bytes after a COPY ended, over its %d-byte limit", most.Load(), limit)
	}
}

// TestLargeMessageNotHeldWhileWaiting: a large client message (over
// 1 MiB, held in the handler's memory for large messages while it is
// handled) does not keep its share while the client goroutine waits for
// room: upstream's answer to what came before it may need that memory,
// and would wait for it until the session ends for want of it.
func TestLargeMessageNotHeldWhileWaiting(t *testing.T) {
	const mib = 1 << 20
	e := newEnv(t, envOptions{pendingLimit: 32 << 10, largeMessages: 3 * mib})
	r := e.rawConn(t, nil)
	r.ready()
	r.conn.SetDeadline(time.Now().Add(30 * time.Second))
	long := "SELECT 'long' /*" + strings.Repeat("x", 2*mib) + "*/"
	r.send(&pgproto3.Query{String: "SELECT length(repeat('y', 2 * 1024 * 1024)::text || pg_sleep(0.2)::text), repeat('y', 2 * 1024 * 1024)"},
		&pgproto3.Query{String: long})
	got := filter(r.ready())
	if len(got) != 4 || !strings.HasPrefix(got[1], "Row ") {
		t.Fatalf("a large row before a large query: %.300q", got)
	}
	r.expect("the large query", "RowDescription", "Row long", "Complete SELECT 1", "Ready I")
}

// TestClientGoneWhileWaitingForRoom: a client that leaves while the
// gateway waits for upstream to answer its pipeline ends the session as
// "client closed the connection", and the statement that was running
// upstream is recorded with its outcome unknown.
func TestClientGoneWhileWaitingForRoom(t *testing.T) {
	e := newEnv(t, envOptions{pendingLimit: 32 << 10})
	r := e.rawConn(t, nil)
	r.ready()
	msgs := append([]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "INSERT INTO notes (body) SELECT 'slow' FROM pg_sleep(1)"},
		&pgproto3.Bind{}, &pgproto3.Execute{}}, pipeline(300)...)
	r.send(msgs...)
	time.Sleep(200 * time.Millisecond)
	r.conn.Close()
	e.idle(t)
	sums, err := e.store.List()
	if err != nil || len(sums) != 1 {
		t.Fatalf("sessions %+v %v", sums, err)
	}
	evs, err := e.store.Events(sums[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	var insert bool
	for _, ev := range evs {
		if c := ev.Command; c != nil && c.Command == "INSERT" {
			insert = true
			if !strings.Contains(c.Error, "client closed the connection") && c.Tag == "" {
				t.Errorf("the INSERT: %+v", c)
			}
		}
		if ev.End != nil && ev.End.Reason != "client closed the connection" {
			t.Errorf("the session ended: %q", ev.End.Reason)
		}
	}
	if !insert {
		t.Errorf("the INSERT is not recorded")
	}
}
