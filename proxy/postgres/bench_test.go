package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/interlock-dev/interlock/proxy/postgres"
	"github.com/interlock-dev/interlock/proxy/proxytest"
)

// BenchmarkQuery runs a one-row SELECT over one connection, directly and
// through the in-process gateway (policy, masks and recording on), for
// profiling the handler's per-statement cost: go test -run '^$' -bench
// Query -cpuprofile cpu.out ./proxy/postgres/. cpu-µs/op is the process's
// CPU time per statement, kernel included: through the gateway less direct
// is what the gateway adds (PostgreSQL runs in its own process). The timing goals are checked
// by bench/pgbench, against the real binary.
func BenchmarkQuery(b *testing.B) {
	e := newEnv(b, envOptions{policy: maskPolicy, rewriter: postgres.NewMaskRewriter})
	for _, path := range []struct{ name, conn string }{
		{"direct", e.pg.ConnString("app", "app-secret", "postgres") + " sslmode=disable"},
		{"gateway", e.connString("")},
	} {
		for _, proto := range []string{"simple", "extended"} {
			b.Run(path.name+"/"+proto, func(b *testing.B) {
				ctx := context.Background()
				c, err := pgconn.Connect(ctx, path.conn)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close(ctx)
				const sql = "SELECT name FROM customers WHERE id = 1"
				if proto == "extended" {
					if _, err := c.Prepare(ctx, "q", sql, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				cpu := proxytest.CPUTime()
				for b.Loop() {
					var err error
					if proto == "simple" {
						_, err = c.Exec(ctx, sql).ReadAll()
					} else {
						err = c.ExecPrepared(ctx, "q", nil, nil, nil).Read().Err
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(proxytest.CPUTime()-cpu)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
			})
		}
	}
}

// BenchmarkSessionMemory reports what one more open session keeps in heap
// and stacks (KiB/session): direct, the client's own; through the
// in-process gateway (policy, masks, recording), client and gateway
// together, so the gateway's share is the difference of the two rows. Idle
// after log-in and one small query, and idle after a 200 KB result: what a
// session pins after a burst matters for a gateway holding many agents'
// sessions open. (After a megabyte the client's own retained buffers vary
// by more than the gateway's share.)
func BenchmarkSessionMemory(b *testing.B) {
	e := newEnv(b, envOptions{policy: maskPolicy, rewriter: postgres.NewMaskRewriter})
	const sessions = 20 // PostgreSQL's test server allows 60 connections
	for _, path := range []struct{ name, conn string }{
		{"direct", e.pg.ConnString("app", "app-secret", "postgres") + " sslmode=disable"},
		{"gateway", e.connString("")},
	} {
		for _, after := range []struct{ name, sql string }{
			{"idle", "SELECT email FROM customers WHERE id = 1"},
			{"after-200KiB", "SELECT repeat('x', 200000)"},
		} {
			b.Run(path.name+"/"+after.name, func(b *testing.B) {
				ctx := context.Background()
				// One session first: what the first one sets up for all
				// (caches, the catalogue connection) is not per session.
				c, err := pgconn.Connect(ctx, path.conn)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Exec(ctx, after.sql).ReadAll(); err != nil {
					b.Fatal(err)
				}
				c.Close(ctx)
				var total float64
				for b.Loop() {
					before := proxytest.InUse()
					conns := make([]*pgconn.PgConn, sessions)
					for i := range conns {
						c, err := pgconn.Connect(ctx, path.conn)
						if err != nil {
							b.Fatal(err)
						}
						conns[i] = c
						if _, err := c.Exec(ctx, after.sql).ReadAll(); err != nil {
							b.Fatal(err)
						}
					}
					total += float64(proxytest.InUse()-before) / sessions / 1024
					for _, c := range conns {
						c.Close(ctx)
					}
				}
				b.ReportMetric(total/float64(b.N), "KiB/session")
			})
		}
	}
}
