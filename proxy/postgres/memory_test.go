package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestLargeMessageMemory: messages over 1 MiB are held against the
// handler's memory for large messages, shared by its sessions. A client's
// statement or Bind larger than the whole budget is refused (53200) and
// the session goes on; ones that fit run, one after the other and across
// sessions, so what a message held is given back after it; a result value
// larger than the budget ends its session, saying why.
func TestLargeMessageMemory(t *testing.T) {
	const mib = 1 << 20
	e := newEnv(t, envOptions{largeMessages: 4 * mib})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	connect := func() *pgconn.PgConn {
		t.Helper()
		c, err := pgconn.Connect(ctx, e.connString(""))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	wantOOM := func(what string, err error) {
		t.Helper()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "53200" {
			t.Fatalf("%s: %v, want 53200", what, err)
		}
	}
	length := func(c *pgconn.PgConn, size int) (string, error) {
		t.Helper()
		res := c.ExecParams(ctx, "SELECT length($1::text)::text", [][]byte{[]byte(strings.Repeat("x", size))}, nil, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 {
			return "", res.Err
		}
		return string(res.Rows[0][0]), nil
	}
	c := connect()
	defer c.Close(ctx)

	_, err := c.Exec(ctx, "SELECT '"+strings.Repeat("x", 5*mib)+"'").ReadAll()
	wantOOM("a 5 MiB statement", err)
	_, err = length(c, 5*mib)
	wantOOM("a 5 MiB Bind", err)
	for i := range 3 { // 3 MiB each: only one fits at a time
		if got, err := length(c, 3*mib); err != nil || got != "3145728" {
			t.Fatalf("3 MiB Bind %d: %q, %v", i, got, err)
		}
	}
	c2 := connect()
	if got, err := length(c2, 3*mib); err != nil || got != "3145728" {
		t.Fatalf("3 MiB Bind in a second session: %q, %v", got, err)
	}
	c2.Close(ctx)
	if got, err := length(c, 3*mib); err != nil || got != "3145728" {
		t.Fatalf("3 MiB Bind after the second session ended: %q, %v", got, err)
	}

	_, err = c.Exec(ctx, "SELECT repeat('x', 5 * 1024 * 1024)").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "53200" || pe.Severity != "FATAL" || !strings.Contains(pe.Message, "memory for large messages") {
		t.Fatalf("a 5 MiB result value: %v, want FATAL 53200", err)
	}
	c3 := connect()
	defer c3.Close(ctx)
	if got, err := length(c3, 3*mib); err != nil || got != "3145728" {
		t.Fatalf("3 MiB Bind after a session ended by a large result: %q, %v", got, err)
	}
}

// TestLargeMessageMemoryInAFailedBatch: a Query that gets no room while
// the rest of its batch is being skipped after an error is skipped too,
// as upstream would skip it: one ReadyForQuery for the batch's Sync, and
// the session goes on.
func TestLargeMessageMemoryInAFailedBatch(t *testing.T) {
	e := newEnv(t, envOptions{largeMessages: 4 << 20})
	r := e.rawConn(t, nil)
	r.ready()
	r.send(&pgproto3.Parse{Query: "DELETE FROM orders"}, // denied: no WHERE
		&pgproto3.Query{String: "SELECT '" + strings.Repeat("x", 5<<20) + "'"}, &pgproto3.Sync{})
	r.expectError("the batch", "42501")
	r.send(&pgproto3.Query{String: "SELECT 'next'"})
	r.expect("the next query", "RowDescription", "Row next", "Complete SELECT 1", "Ready I")
}
