package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/interlock-dev/interlock/proxy/proxytest"
)

// TestClosedStatementsLeaveTheView: a driver that prepares every new
// statement under a new name and closes the ones its cache evicts (pgx,
// psycopg; an agent's statements are rarely the same twice) must not make
// the gateway hold each statement it ever prepared for as long as the
// session lasts: once upstream answers a Close, DEALLOCATE or DISCARD ALL,
// the relay forgets what it removed.
func TestClosedStatementsLeaveTheView(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, e.connString(""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	pad := strings.Repeat("x", 2048)
	const n = 3000 // 3000 statements of 2 KiB: over 6 MiB if kept
	prepare := func(i int) string {
		t.Helper()
		name := fmt.Sprintf("s%d", i)
		if _, err := c.Prepare(ctx, name, fmt.Sprintf("SELECT '%s' || %d", pad, i), nil); err != nil {
			t.Fatal(err)
		}
		return name
	}
	for _, tc := range []struct {
		how     string
		release func(i int)
	}{
		{"Close", func(i int) {
			if err := c.Deallocate(ctx, prepare(i)); err != nil {
				t.Fatal(err)
			}
		}},
		{"DEALLOCATE", func(i int) {
			if _, err := c.Exec(ctx, "DEALLOCATE "+prepare(i)).ReadAll(); err != nil {
				t.Fatal(err)
			}
		}},
		{"DEALLOCATE ALL", func(i int) {
			prepare(i)
			if i%100 == 99 {
				if _, err := c.Exec(ctx, "DEALLOCATE ALL").ReadAll(); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(tc.how, func(t *testing.T) {
			tc.release(0) // caches warm
			before := proxytest.InUse()
			for i := 1; i <= n; i++ {
				tc.release(i)
			}
			if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil { // the last release applied
				t.Fatal(err)
			}
			if grew := proxytest.InUse() - before; grew > 2<<20 {
				t.Fatalf("the process grew by %d KiB over %d prepared and released statements", grew>>10, n)
			}
		})
	}
}
