package sqlfacts

import (
	"fmt"
	"testing"
)

const benchSQL = "SELECT c.id, c.name, o.total FROM customers c JOIN orders o ON o.customer_id = c.id " +
	"WHERE c.id = %d AND o.created_at > '2024-01-%02d' ORDER BY o.total DESC LIMIT 10"

// pgbenchSQL is pgbench's select-only transaction in the simple query
// protocol: one statement whose literal never repeats.
const pgbenchSQL = "SELECT abalance FROM pgbench_accounts WHERE aid = %d;"

// BenchmarkClassify compares a full parse (cold), a repeated statement
// (exact), and statements that differ from a cached one only in their
// literals: on the byte-level literal-blind cache (normalized, pgbench),
// and on the cache keyed by PostgreSQL's scanner, which inputs the
// byte-level lexer refuses (here an E'...' string) still take (scanner).
func BenchmarkClassify(b *testing.B) {
	b.Run("cold", func(b *testing.B) {
		c := NewClassifier(0)
		sql := fmt.Sprintf(benchSQL, 42, 1)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Classify(sql); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("exact", func(b *testing.B) {
		c := NewClassifier(1024)
		sql := fmt.Sprintf(benchSQL, 42, 1)
		if _, err := c.Classify(sql); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Classify(sql); err != nil {
				b.Fatal(err)
			}
		}
		if s := c.Stats(); s.Parses != 1 {
			b.Fatalf("stats %+v: want only exact hits", s)
		}
	})
	variants := func(text func(i int) string) []string {
		sqls := make([]string, 256)
		for i := range sqls {
			sqls[i] = text(i)
		}
		return sqls
	}
	b.Run("normalized", func(b *testing.B) {
		benchLiteralBlind(b, variants(func(i int) string { return fmt.Sprintf(benchSQL, i, i%28+1) }))
	})
	b.Run("pgbench", func(b *testing.B) {
		benchLiteralBlind(b, variants(func(i int) string { return fmt.Sprintf(pgbenchSQL, 1+i*7919%100000) }))
	})
	b.Run("scanner", func(b *testing.B) {
		benchLiteralBlind(b, variants(func(i int) string { return fmt.Sprintf("SELECT * FROM t WHERE a = %d AND b = E'%d'", i, i) }))
	})
}

// benchLiteralBlind classifies the texts round robin. They are more than
// the exact cache holds, so every lookup misses it and is answered by a
// literal-blind cache.
func benchLiteralBlind(b *testing.B, sqls []string) {
	const cacheSize = 64
	c := NewClassifier(cacheSize)
	if _, err := c.Classify(sqls[0]); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i = (i + 1) % len(sqls)
		if _, err := c.Classify(sqls[i]); err != nil {
			b.Fatal(err)
		}
	}
	if s := c.Stats(); s.Parses != 1 {
		b.Fatalf("stats %+v: want no parse after the first", s)
	}
}
