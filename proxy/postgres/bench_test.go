package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/interlock-dev/interlock/proxy/postgres"
)

// BenchmarkQuery runs a one-row SELECT over one connection, directly and
// through the in-process gateway (policy, masks and recording on), for
// profiling the handler's per-statement cost: go test -run '^$' -bench
// Query -cpuprofile cpu.out ./proxy/postgres/. The timing goals are checked
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
			})
		}
	}
}
