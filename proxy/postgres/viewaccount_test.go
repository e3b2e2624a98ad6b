package postgres_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy/postgres"
)

// TestSkippedBatchNotQueued: after an error PostgreSQL skips the rest of
// its batch, answering nothing up to the Sync, so what the client sends
// meanwhile is not kept by the gateway waiting for an answer: 200,000
// Executes (2 MB on the wire) would otherwise take the gateway tens of
// MB. The client gets what PostgreSQL would have answered, and the
// session goes on.
func TestSkippedBatchNotQueued(t *testing.T) {
	var most atomic.Int64
	e := newEnv(t, envOptions{handled: func(_ pgproto3.FrontendMessage, v postgres.RetainedView) {
		if n := int64(v.PendingEntries); n > most.Load() {
			most.Store(n)
		}
	}})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Bind{PreparedStatement: "nosuch"}, &pgproto3.Flush{})
	if got := filter(untilMsg[*pgproto3.ErrorResponse](r)); len(got) != 1 || !strings.Contains(got[0], "26000") {
		t.Fatalf("a Bind of no statement: %q", got)
	}
	const n = 200_000
	msgs := make([]pgproto3.FrontendMessage, 0, n+2)
	for range n / 2 {
		msgs = append(msgs, &pgproto3.Execute{}, &pgproto3.Query{String: "SELECT 'skipped'"})
	}
	r.send(append(msgs, &pgproto3.Sync{})...)
	r.expect("the rest of the failed batch", "Ready I")
	if most.Load() > 100 {
		t.Errorf("the gateway kept up to %d messages of a batch upstream skips", most.Load())
	}
	r.send(&pgproto3.Query{String: "SELECT 'next'"})
	r.expect("a query after the batch", "RowDescription", "Row next", "Complete SELECT 1", "Ready I")
}

// pipelineEnv is an env whose sessions' pending queues may hold limit
// bytes, and the most any held after a client message.
func pipelineEnv(t *testing.T, limit int64) (*env, *atomic.Int64) {
	most := new(atomic.Int64)
	e := newEnv(t, envOptions{pendingLimit: limit, handled: func(_ pgproto3.FrontendMessage, v postgres.RetainedView) {
		if v.PendingBytes > most.Load() {
			most.Store(v.PendingBytes)
		}
	}})
	return e, most
}

// TestPipelineWaitsForRoom: a client that pipelines far more than the
// pending queue may hold, in one write, before it reads an answer, gets
// every answer; the gateway stops reading it while upstream catches up,
// so the queue stays near its limit, and a COPY FROM STDIN in the
// pipeline, whose entry waits for the client's data, does not stall it.
func TestPipelineWaitsForRoom(t *testing.T) {
	const limit = 64 << 10
	e, most := pipelineEnv(t, limit)
	e.pg.Exec(t, "CREATE TABLE public.piped (n int); GRANT ALL ON public.piped TO app")
	r := e.rawConn(t, nil)
	r.ready()
	const n = 3000
	msgs := make([]pgproto3.FrontendMessage, 0, 3*n+4)
	for range n {
		msgs = append(msgs, &pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{})
	}
	msgs = append(msgs, &pgproto3.Query{String: "COPY piped FROM STDIN"}, &pgproto3.CopyData{Data: []byte("7\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	r.send(msgs...)
	got := strings.Join(filter(r.ready()), "\n")
	if c := strings.Count(got, "Complete SELECT 1"); c != n {
		t.Fatalf("%d of %d pipelined statements answered", c, n)
	}
	r.expect("the Sync after the COPY", "Ready I")
	if most.Load() > limit+1024 {
		t.Errorf("the pending queue held up to %d bytes, over its %d-byte limit", most.Load(), limit)
	}
	// A COPY whose own entry is over the limit: the wait for room ends
	// when upstream asks for the data.
	long := "COPY piped FROM STDIN /*" + strings.Repeat("x", 2*limit) + "*/"
	r.send(&pgproto3.Query{String: long}, &pgproto3.CopyData{Data: []byte("8\n")}, &pgproto3.CopyDone{})
	r.expect("a COPY over the limit", "CopyInResponse", "Complete COPY 1", "Ready I")
	r.send(&pgproto3.Query{String: "SELECT count(*) FROM piped"})
	r.expect("the COPYs' rows", "RowDescription", "Row 2", "Complete SELECT 1", "Ready I")
}

// TestRetainedReturnsToNothing: whatever a long session does — statements
// named and unnamed, prepared with Parse and PREPARE, replaced, closed
// while portals keep them, pipelined across Syncs, denied, refused for
// the budget, failed, in transaction blocks, cursors, policy reloads —
// once it holds nothing (its transaction ended, its statements, cursors
// and denied names closed), the gateway's view of it is empty and charged
// nothing: a drift up would end in refusing every statement (53200), a
// drift down in a budget that no longer bounds.
func TestRetainedReturnsToNothing(t *testing.T) {
	views := make(chan postgres.RetainedView, 1)
	// A small pending limit: the pipelines below wait for room, and the
	// queue's bytes must return to nothing too.
	e := newEnv(t, envOptions{retained: 64 << 10, pendingLimit: 16 << 10, handled: func(msg pgproto3.FrontendMessage, v postgres.RetainedView) {
		if _, ok := msg.(*pgproto3.Flush); ok {
			views <- v
		}
	}})
	r := e.rawConn(t, nil)
	r.ready()
	rng := rand.New(rand.NewPCG(1, 2))
	name := func(prefix string, n int) string { return fmt.Sprintf("%s%d", prefix, rng.IntN(n)) }
	s, p, q, cu := func() string { return name("s", 4) }, func() string { return name("p", 4) },
		func() string { return name("q", 3) }, func() string { return name("c", 3) }
	sel := func(i int) string {
		pad := strings.Repeat("y", rng.IntN(3000)) // a few fill the budget: some are refused
		if rng.IntN(3) == 0 {
			return fmt.Sprintf("SELECT id FROM customers WHERE id > %d /* %s */", i, pad)
		}
		return fmt.Sprintf("SELECT %d /* %s */", i, pad)
	}
	policies := []string{testPolicy, testPolicy + `
  - name: no-customers
    when: '"customers" in sql.tables'
    action: deny
`}
	ops := []func(i int){
		func(i int) {
			n, pt := s(), p()
			r.send(&pgproto3.Parse{Name: n, Query: sel(i)}, &pgproto3.Bind{PreparedStatement: n, DestinationPortal: pt},
				&pgproto3.Execute{Portal: pt}, &pgproto3.Sync{})
		},
		func(i int) {
			r.send(&pgproto3.Parse{Query: sel(i)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		},
		func(int) { r.send(&pgproto3.Close{ObjectType: 'S', Name: s()}, &pgproto3.Sync{}) },
		func(int) { r.send(&pgproto3.Close{ObjectType: 'P', Name: p()}, &pgproto3.Sync{}) },
		func(i int) { r.send(&pgproto3.Query{String: "PREPARE " + q() + " AS " + sel(i)}) },
		func(int) { r.send(&pgproto3.Query{String: "DEALLOCATE " + q()}) },
		func(int) { r.send(&pgproto3.Query{String: "EXECUTE " + q()}) },
		func(i int) {
			c := cu()
			r.send(&pgproto3.Query{String: "BEGIN; DECLARE " + c + " CURSOR FOR " + sel(i)},
				&pgproto3.Query{String: "FETCH 1 FROM " + c},
				&pgproto3.Query{String: []string{"COMMIT", "ROLLBACK", "CLOSE " + c + "; COMMIT"}[rng.IntN(3)]})
		},
		func(i int) { // a statement closed while a portal of the block keeps it
			n, pt := s(), p()
			r.send(&pgproto3.Query{String: "BEGIN"},
				&pgproto3.Parse{Name: n, Query: sel(i)}, &pgproto3.Bind{PreparedStatement: n, DestinationPortal: pt}, &pgproto3.Sync{},
				&pgproto3.Close{ObjectType: 'S', Name: n}, &pgproto3.Sync{},
				&pgproto3.Execute{Portal: pt}, &pgproto3.Sync{},
				&pgproto3.Query{String: []string{"COMMIT", "ROLLBACK"}[rng.IntN(2)]})
		},
		func(int) {
			r.send(&pgproto3.Bind{PreparedStatement: "nosuch", DestinationPortal: p()}, &pgproto3.Execute{}, &pgproto3.Sync{})
		},
		func(int) { // never forwarded: a syntax error
			r.send(&pgproto3.Parse{Name: s(), Query: "SELEC 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		},
		func(int) { // a denied name, and a portal denied for it
			d := name("d", 3)
			r.send(&pgproto3.Parse{Name: d, Query: "DELETE FROM orders"}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: d, DestinationPortal: p()}, &pgproto3.Sync{})
		},
		func(int) { r.send(&pgproto3.Query{String: "DISCARD ALL"}) },
		func(i int) { // pipelined across a Sync that ends the transaction
			n, p1, p2 := s(), p(), p()
			r.send(&pgproto3.Parse{Name: n, Query: sel(i)}, &pgproto3.Bind{PreparedStatement: n, DestinationPortal: p1}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: n, DestinationPortal: p2}, &pgproto3.Execute{Portal: p2}, &pgproto3.Sync{})
		},
		func(i int) { // a Query in the middle of a batch
			n, pt := s(), p()
			r.send(&pgproto3.Parse{Name: n, Query: sel(i)}, &pgproto3.Bind{PreparedStatement: n, DestinationPortal: pt},
				&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Execute{Portal: pt}, &pgproto3.Sync{})
		},
		func(i int) { // BEGIN as Parse, Bind, Execute
			n, pt := s(), p()
			r.send(&pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Name: n, Query: sel(i)}, &pgproto3.Bind{PreparedStatement: n, DestinationPortal: pt}, &pgproto3.Sync{},
				&pgproto3.Query{String: "ROLLBACK"})
		},
		func(int) { // a failed block
			r.send(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Query{String: "SELECT 1/0"},
				&pgproto3.Bind{PreparedStatement: s(), DestinationPortal: p()}, &pgproto3.Sync{},
				&pgproto3.Query{String: "ROLLBACK"})
		},
		func(int) { e.reload(t, policies[rng.IntN(2)]) },
		func(i int) {
			n, pt := s(), p()
			r.send(&pgproto3.Parse{Name: n, Query: "DECLARE " + pt + " CURSOR WITH HOLD FOR " + sel(i)},
				&pgproto3.Bind{PreparedStatement: n}, &pgproto3.Execute{}, &pgproto3.Sync{})
		},
		func(int) { r.send(&pgproto3.Query{String: "CLOSE " + p()}) },
		func(i int) { // a candidate for a name held upstream
			n := s()
			r.send(&pgproto3.Parse{Name: n, Query: sel(i)}, &pgproto3.Sync{},
				&pgproto3.Parse{Name: n, Query: sel(i + 1)}, &pgproto3.Bind{PreparedStatement: n, DestinationPortal: p()}, &pgproto3.Sync{})
		},
		func(i int) {
			r.send(&pgproto3.Query{String: "BEGIN"})
			for range 3 {
				pt := p()
				r.send(&pgproto3.Parse{Query: sel(i)}, &pgproto3.Bind{DestinationPortal: pt}, &pgproto3.Execute{Portal: pt, MaxRows: 1}, &pgproto3.Sync{})
			}
			r.send(&pgproto3.Query{String: "COMMIT"})
		},
		func(i int) {
			n := q()
			r.send(&pgproto3.Query{String: "DEALLOCATE " + n + "; PREPARE " + n + " AS " + sel(i)})
		},
		func(int) { r.send(&pgproto3.Query{String: "DEALLOCATE ALL"}) },
		func(i int) { // a Close of a portal skipped after an error: in doubt
			n, pt := s(), p()
			r.send(&pgproto3.Query{String: "BEGIN"},
				&pgproto3.Parse{Name: n, Query: sel(i)}, &pgproto3.Bind{PreparedStatement: n, DestinationPortal: pt}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: "nosuch"}, &pgproto3.Close{ObjectType: 'P', Name: pt}, &pgproto3.Sync{},
				&pgproto3.Execute{Portal: pt}, &pgproto3.Sync{},
				&pgproto3.Query{String: "ROLLBACK"})
		},
		func(i int) {
			r.send(&pgproto3.Parse{Query: "PREPARE " + q() + " AS " + sel(i)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		},
		func(int) {
			r.send(&pgproto3.Parse{Query: "DEALLOCATE " + q()}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		},
		func(i int) { // a pipeline of the unnamed statement
			var msgs []pgproto3.FrontendMessage
			for j := range 1 + rng.IntN(30) {
				msgs = append(msgs, &pgproto3.Parse{Query: sel(i + j)}, &pgproto3.Bind{}, &pgproto3.Execute{})
			}
			r.send(append(msgs, &pgproto3.Sync{})...)
		},
		func(i int) { // a statement closed and prepared again while its portal lives
			n, p1, p2 := s(), p(), p()
			r.send(&pgproto3.Query{String: "BEGIN"},
				&pgproto3.Parse{Name: n, Query: sel(i)}, &pgproto3.Bind{PreparedStatement: n, DestinationPortal: p1},
				&pgproto3.Close{ObjectType: 'S', Name: n}, &pgproto3.Sync{},
				&pgproto3.Parse{Name: n, Query: sel(i + 1)}, &pgproto3.Bind{PreparedStatement: n, DestinationPortal: p2},
				&pgproto3.Execute{Portal: p1}, &pgproto3.Sync{},
				&pgproto3.Query{String: "COMMIT"})
		},
		func(i int) {
			n, pt := s(), p()
			r.send(&pgproto3.Parse{Name: n, Query: sel(i)}, &pgproto3.Bind{PreparedStatement: n, DestinationPortal: pt},
				&pgproto3.Execute{Portal: pt, MaxRows: 1}, &pgproto3.Close{ObjectType: 'P', Name: pt}, &pgproto3.Sync{})
		},
		func(int) { r.send(&pgproto3.Query{String: "PREPARE " + q() + " AS EXECUTE " + q()}) },
	}
	// settle reads up to the answer of a query sent after what was sent:
	// how many ReadyForQuery come before depends on errors upstream.
	settle := func(i int) {
		mark := fmt.Sprintf("mark%d", i)
		r.send(&pgproto3.Query{String: "SELECT '" + mark + "'"})
		r.until(func(m pgproto3.BackendMessage) bool { return describeMsg(m) == "Row "+mark })
		r.ready()
	}
	holdNothing := func() postgres.RetainedView {
		r.send(&pgproto3.Query{String: "ROLLBACK"}, &pgproto3.Query{String: "CLOSE ALL"}, &pgproto3.Query{String: "DISCARD ALL"})
		readyN(r, 3)
		var msgs []pgproto3.FrontendMessage
		for _, n := range []string{"", "s0", "s1", "s2", "s3", "d0", "d1", "d2"} {
			msgs = append(msgs, &pgproto3.Close{ObjectType: 'S', Name: n})
		}
		r.send(append(msgs, &pgproto3.Sync{})...)
		readyN(r, 1)
		r.send(&pgproto3.Flush{})
		return <-views
	}
	var ran []int
	for i := range 2000 {
		r.conn.SetDeadline(time.Now().Add(10 * time.Second))
		k := rng.IntN(len(ops))
		ran = append(ran, k)
		ops[k](i)
		settle(i)
		if i%50 == 49 {
			if v := holdNothing(); v != (postgres.RetainedView{}) {
				t.Fatalf("after %d operations (the last: %v) a session holding nothing has a view of %+v", i+1, ran, v)
			}
			ran = ran[:0]
		}
	}
}
