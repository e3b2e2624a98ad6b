package sqlfacts

import (
	"fmt"
	"testing"
)

const benchSQL = "SELECT c.id, c.name, o.total FROM customers c JOIN orders o ON o.customer_id = c.id " +
	"WHERE c.id = %d AND o.created_at > '2024-01-%02d' ORDER BY o.total DESC LIMIT 10"

// BenchmarkClassify compares a full parse (cold), a repeated statement
// (exact), and a statement that differs from a cached one only in its
// literals (normalized).
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
	b.Run("normalized", func(b *testing.B) {
		// Cycling through more distinct texts than the exact cache holds
		// makes every lookup miss it and hit the one normalized entry.
		const cacheSize, variants = 64, 256
		c := NewClassifier(cacheSize)
		sqls := make([]string, variants)
		for i := range sqls {
			sqls[i] = fmt.Sprintf(benchSQL, i, i%28+1)
		}
		if _, err := c.Classify(sqls[0]); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i = (i + 1) % variants
			if _, err := c.Classify(sqls[i]); err != nil {
				b.Fatal(err)
			}
		}
		if s := c.Stats(); s.Parses != 1 {
			b.Fatalf("stats %+v: want only normalized and exact hits", s)
		}
	})
}
