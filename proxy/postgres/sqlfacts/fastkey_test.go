package sqlfacts

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

func TestFastKeyRefuses(t *testing.T) {
	for _, tt := range []struct{ name, sql string }{
		{"dollar quote", "SELECT $$x$$"},
		{"tagged dollar quote", "SELECT $tag$x$tag$"},
		{"lone dollar", "SELECT $ FROM t"},
		{"identifier after a parameter", "SELECT $1a"},
		{"underscore after a parameter", "SELECT $1_0"},
		{"dollar after a parameter", "SELECT $1$"},
		{"escape string", "SELECT E'x'"},
		{"lower-case escape string", "SELECT e'x'"},
		{"bit string", "SELECT B'01'"},
		{"hex string", "SELECT X'ff'"},
		{"national string", "SELECT N'x'"},
		{"unicode string", "SELECT U&'x'"},
		{"lower-case unicode string", "SELECT u&'x'"},
		{"unicode identifier", `SELECT * FROM U&"a"`},
		{"lower-case unicode identifier", `SELECT * FROM u&"a"`},
		{"quote after a digit", "SELECT 1'x'"},
		{"quote after a non-ASCII letter", "SELECT é'x'"},
		{"backslash in a string", `SELECT 'a\b'`},
		{"unterminated string", "SELECT 'abc"},
		{"unterminated quoted identifier", `SELECT "abc`},
		{"unterminated comment", "SELECT 1 /* x"},
		{"unterminated nested comment", "SELECT 1 /* /* */"},
		{"string continuation", "SELECT 'a'\n'b'"},
		{"string continuation after a carriage return", "SELECT 'a'\r'b'"},
		{"string continuation across a comment", "SELECT 'a' -- c\n 'b'"},
		{"string after a string", "SELECT 'a' 'b'"},
		{"identifier after an integer", "SELECT 1a"},
		{"non-ASCII after an integer", "SELECT 1é"},
		{"dollar after an integer", "SELECT 1$"},
		{"underscore in an integer", "SELECT 1_000"},
		{"hexadecimal", "SELECT 0x1F"},
		{"octal", "SELECT 0o17"},
		{"binary", "SELECT 0b101"},
		{"exponent", "SELECT 1e5"},
		{"decimal exponent", "SELECT 1.5e3"},
		{"trailing dot", "SELECT 1."},
		{"trailing dot before a space", "SELECT 1. FROM t"},
		{"range", "SELECT 1..2"},
		{"two dots", "SELECT 1.5.3"},
		{"identifier after a decimal", "SELECT 1.5x"},
		{"leading dot", "SELECT .5"},
		{"dot digit after a name", "SELECT t.1"},
		{"NUL", "SELECT 1\x00"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if key, consts, ok := fastKey(tt.sql); ok {
				t.Errorf("fastKey(%q) = %q, %v, true; want it refused", tt.sql, key, consts)
			}
		})
	}
}

func TestFastKey(t *testing.T) {
	type c = constSpan
	for _, tt := range []struct {
		sql    string
		key    string
		consts []constSpan
	}{
		{
			sql:    "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
			key:    "SELECT abalance FROM pgbench_accounts WHERE aid = \x00i;",
			consts: []c{{50, 55, classInt, false}},
		},
		{
			sql:    "SELECT 2147483647, 2147483648, 0002147483647, 1.5, 'x'",
			key:    "SELECT \x00i, \x00f, \x00i, \x00f, \x00s",
			consts: []c{{7, 17, classInt, false}, {19, 29, classFloat, false}, {31, 44, classInt, false}, {46, 49, classFloat, false}, {51, 54, classString, false}},
		},
		{
			sql:    "SELECT 'it''s', ''",
			key:    "SELECT \x00s, \x00s",
			consts: []c{{7, 14, classString, false}, {16, 18, classString, false}},
		},
		{
			sql:    "SELECT 'a -- b /* c ; $1\n d', 2",
			key:    "SELECT \x00s, \x00i",
			consts: []c{{7, 28, classString, false}, {30, 31, classInt, false}},
		},
		{
			sql:    `SELECT "a""b;'c", "x -- 1" FROM t WHERE x = 1`,
			key:    `SELECT "a""b;'c", "x -- 1" FROM t WHERE x = ` + "\x00i",
			consts: []c{{44, 45, classInt, false}},
		},
		{
			sql:    "SELECT $1, $22, x1, a$1, é1, _2 FROM t WHERE a = 3",
			key:    "SELECT $1, $22, x1, a$1, é1, _2 FROM t WHERE a = \x00i",
			consts: []c{{50, 51, classInt, false}},
		},
		{
			sql:    "SELECT 1 -- 2 '3'\rFROM t /* 4 /* 5 */ '6' */ WHERE a = 7",
			key:    "SELECT \x00i -- 2 '3'\rFROM t /* 4 /* 5 */ '6' */ WHERE a = \x00i",
			consts: []c{{7, 8, classInt, false}, {55, 56, classInt, false}},
		},
		{
			sql:    "SELECT 1 +/* c */2 -- end",
			key:    "SELECT \x00i +/* c */\x00i -- end",
			consts: []c{{7, 8, classInt, false}, {17, 18, classInt, false}},
		},
		{
			sql:    "SELECT 1; SELECT 'a;b';SELECT 2",
			key:    "SELECT \x00i; SELECT \x00s;SELECT \x00i",
			consts: []c{{7, 8, classInt, false}, {17, 22, classString, false}, {30, 31, classInt, false}},
		},
		{
			sql:    "SELECT 'a' /* c */\n-- d\n",
			key:    "SELECT \x00s /* c */\n-- d\n",
			consts: []c{{7, 10, classString, false}},
		},
		// The integers the grammar range-checks keep their text.
		{
			sql:    "ALTER INDEX i ALTER COLUMN 1 SET STATISTICS 100",
			key:    "ALTER INDEX i ALTER COLUMN \x00I1 SET STATISTICS \x00i",
			consts: []c{{27, 28, classInt, true}, {44, 47, classInt, false}},
		},
		{
			sql:    "alter index i alter 99999999999 set statistics 1.5",
			key:    "alter index i alter \x00F99999999999 set statistics \x00f",
			consts: []c{{20, 31, classFloat, true}, {47, 50, classFloat, false}},
		},
		{
			sql:    "SELECT 1::Float /* c */ ( 53 ), 2::float(2.5)",
			key:    "SELECT \x00i::Float /* c */ ( \x00I53 ), \x00i::float(\x00f)",
			consts: []c{{7, 8, classInt, false}, {26, 28, classInt, true}, {32, 33, classInt, false}, {41, 44, classFloat, false}},
		},
		{
			sql:    `SELECT 1::"float"(53), x(1), alter_(2)`,
			key:    "SELECT \x00i::\"float\"(\x00i), x(\x00i), alter_(\x00i)",
			consts: []c{{7, 8, classInt, false}, {18, 20, classInt, false}, {25, 26, classInt, false}, {36, 37, classInt, false}},
		},
		{
			sql:    "SELECT * FROM t",
			key:    "SELECT * FROM t",
			consts: nil,
		},
	} {
		key, consts, ok := fastKey(tt.sql)
		if !ok {
			t.Errorf("fastKey(%q) refused it", tt.sql)
			continue
		}
		if key != tt.key {
			t.Errorf("fastKey(%q) key = %q, want %q", tt.sql, key, tt.key)
		}
		if !reflect.DeepEqual(consts, tt.consts) {
			t.Errorf("fastKey(%q) constants = %v, want %v", tt.sql, consts, tt.consts)
		}
		// Every accepted input here is one the scanner reads the same way.
		toks, err := scan(tt.sql)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := verifyFast(tt.sql, consts, toks, nil); err != nil {
			t.Errorf("verifyFast(%q): %v", tt.sql, err)
		}
	}
}

func TestFitsInt32(t *testing.T) {
	for _, s := range []string{
		"0", "7", "000", "2147483646", "2147483647", "2147483648", "2147483650",
		"9999999999", "10000000000", "02147483647", "002147483648", "99999999999999999999999",
	} {
		_, err := strconv.ParseInt(s, 10, 32)
		if got, want := fitsInt32(s), err == nil; got != want {
			t.Errorf("fitsInt32(%q) = %v, want %v", s, got, want)
		}
	}
}

// classifyCold is what a Classifier without caches says about sql.
func classifyCold(sql string) ([]Statement, error) {
	return NewClassifier(0).Classify(sql)
}

func TestFastCacheHit(t *testing.T) {
	c := NewClassifier(16)
	const n = 200
	for i := range n {
		sql := fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d;", int64(i)*104729*1000)
		got, err := c.Classify(sql)
		want, wantErr := classifyCold(sql)
		if !sameResult(got, err, want, wantErr) {
			t.Fatalf("Classify(%q) = %+v, %v; a cold classifier gives %+v, %v", sql, got, err, want, wantErr)
		}
	}
	// The integers up to 2147483647 are ICONST, the rest FCONST: two
	// keys, two parses.
	if s := c.Stats(); s != (Stats{FastHits: n - 2, Parses: 2}) {
		t.Errorf("stats %+v: want every input after the first of each kind answered by the fast cache", s)
	}
	// A fast hit leaves the exact cache alone.
	if got := c.exact.len(); got != 2 {
		t.Errorf("exact cache holds %d entries, want the 2 parsed inputs", got)
	}

	// pgbench's other statements, with literals of every class.
	c = NewClassifier(16)
	for i := range 50 {
		for _, sql := range []string{
			fmt.Sprintf("UPDATE pgbench_accounts SET abalance = abalance + %d WHERE aid = %d;", i-25, i*7),
			fmt.Sprintf("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%d, %d, %d, %d, CURRENT_TIMESTAMP);", i, i+1, i+2, -i),
			fmt.Sprintf("SELECT * FROM t WHERE name = '%s' AND price > %d.%02d", strings.Repeat("o'';--", i%4), i, i),
		} {
			got, err := c.Classify(sql)
			want, wantErr := classifyCold(sql)
			if !sameResult(got, err, want, wantErr) {
				t.Fatalf("Classify(%q) = %+v, %v; a cold classifier gives %+v, %v", sql, got, err, want, wantErr)
			}
		}
	}
	// The minus sign is not part of a literal: UPDATE's "+ -25" and "+ 0",
	// and INSERT's "0" and "-1", have different keys. Five parses.
	if s := c.Stats(); s != (Stats{FastHits: 150 - 5, Parses: 5}) {
		t.Errorf("stats %+v: want the fast cache to answer all but a few", s)
	}
}

func TestFastCacheMultiStatementText(t *testing.T) {
	c := NewClassifier(16)
	first := "INSERT INTO t VALUES ('a;b', 1);UPDATE t SET a = 'c' WHERE id = 2;  SELECT 3 ; "
	if _, err := c.Classify(first); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"INSERT INTO t VALUES ('x;;y;', 12345);UPDATE t SET a = '' WHERE id = 2.5;  SELECT 999999999999 ; ",
		"INSERT INTO t VALUES ('', 0);UPDATE t SET a = ';' WHERE id = 0.0;  SELECT 10000000000 ; ",
	} {
		got, err := c.Classify(sql)
		want, wantErr := classifyCold(sql)
		if !sameResult(got, err, want, wantErr) {
			t.Fatalf("Classify(%q) = %+v, %v; a cold classifier gives %+v, %v", sql, got, err, want, wantErr)
		}
	}
	got, err := c.Classify("INSERT INTO t VALUES ('', 0);UPDATE t SET a = ';' WHERE id = 0.0;  SELECT 10000000000 ; ")
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, st := range got {
		texts = append(texts, st.Text)
	}
	if want := []string{"INSERT INTO t VALUES ('', 0)", "UPDATE t SET a = ';' WHERE id = 0.0", "SELECT 10000000000"}; !reflect.DeepEqual(texts, want) {
		t.Errorf("texts %q, want %q", texts, want)
	}
	// The second input's literals differ in class from the first's (2.5 is
	// FCONST where 2 was ICONST), so it parsed; the third hit its entry,
	// twice, since a fast hit does not fill the exact cache.
	if s := c.Stats(); s.FastHits != 2 || s.ExactHits != 0 || s.Parses != 2 {
		t.Errorf("stats %+v: want two fast hits", s)
	}

	// Literals right next to the semicolons, and a statement that is only
	// a literal's worth of text away from the input's ends.
	c = NewClassifier(16)
	for _, sql := range []string{"SELECT 1;SELECT 'a'", "SELECT 22;SELECT 'bbb'", "SELECT 333;SELECT ''"} {
		got, err := c.Classify(sql)
		want, wantErr := classifyCold(sql)
		if !sameResult(got, err, want, wantErr) {
			t.Fatalf("Classify(%q) = %+v, %v; a cold classifier gives %+v, %v", sql, got, err, want, wantErr)
		}
	}
	if s := c.Stats(); s.FastHits != 2 || s.Parses != 1 {
		t.Errorf("stats %+v: want two fast hits", s)
	}
}

// TestFastCacheRefills checks that a fast entry evicted while its normalized
// entry lives comes back on the next normalized hit.
func TestFastCacheRefills(t *testing.T) {
	c := NewClassifier(16)
	classifyOne(t, c, "SELECT * FROM t WHERE id = 1")
	c.fast = newLRU[[]fastShape](16) // as if evicted
	classifyOne(t, c, "SELECT * FROM t WHERE id = 2")
	classifyOne(t, c, "SELECT * FROM t WHERE id = 3")
	if s := c.Stats(); s != (Stats{FastHits: 1, NormalizedHits: 1, Parses: 1}) {
		t.Errorf("stats %+v: want a normalized hit, then a fast hit", s)
	}
}

func TestFastCacheNotConfused(t *testing.T) {
	pairs := []struct{ a, b string }{
		{"SELECT * FROM t WHERE id = 1", "SELECT * FROM t WHERE id = 2147483648"},
		{"SELECT * FROM t WHERE id = 1", "SELECT * FROM t WHERE id = '1'"},
		{"SELECT * FROM t WHERE id = 1", "SELECT * FROM t WHERE id = 1.0"},
		{"SELECT 1::float(1)", "SELECT 1::float(0)"},
		{"SELECT 1::float(25)", "SELECT 1::float(54)"},
		{"ALTER INDEX i ALTER COLUMN 1 SET STATISTICS 100", "ALTER INDEX i ALTER COLUMN 0 SET STATISTICS 100"},
		{"ALTER INDEX i ALTER 1 SET STATISTICS 100", "ALTER INDEX i ALTER 0 SET STATISTICS 100"},
		{"EXPLAIN (ANALYZE 'off') DELETE FROM t", "EXPLAIN (ANALYZE 'on') DELETE FROM t"},
		{"EXPLAIN (ANALYZE 0) DELETE FROM t", "EXPLAIN (ANALYZE 1) DELETE FROM t"},
		{"COPY t TO 'x'", "COPY t TO ''"},
		{"SELECT 1 FROM t -- x", "SELECT 1 FROM t -- y\nWHERE false"},
		{"SELECT 'a';", "SELECT 'a;';"},
		{"SELECT set_config('app.user_id', '1', false)", "SELECT set_config('role', '1', false)"},
		{"SELECT pg_catalog.set_config('search_path', 'x', false)", "SELECT pg_catalog.set_config('ROLE', 'x', false)"},
		{"CREATE FUNCTION f() RETURNS int AS 'x' LANGUAGE 'sql'", "CREATE FUNCTION f() RETURNS int AS 'x' LANGUAGE 'c'"},
		// Facts that differ in commands or has_where alone.
		{"EXPLAIN ANALYZE DELETE FROM t WHERE a = 1", "EXPLAIN ANALYZE UPDATE t SET a = 1 WHERE a = 1"},
		{"WITH d AS (DELETE FROM t WHERE a = 1) DELETE FROM u WHERE a = 2", "WITH d AS (DELETE FROM t) DELETE FROM u WHERE a = 2"},
		{"MERGE INTO t USING s ON a = 1 WHEN MATCHED THEN DELETE", "MERGE INTO t USING s ON true WHEN MATCHED AND a = 1 THEN DELETE"},
	}
	for _, p := range pairs {
		for _, order := range [][2]string{{p.a, p.b}, {p.b, p.a}} {
			c := NewClassifier(16)
			c.Classify(order[0])
			got, gotErr := c.Classify(order[1])
			want, wantErr := classifyCold(order[1])
			if !sameResult(got, gotErr, want, wantErr) {
				t.Errorf("after %q, Classify(%q) = %+v, %v; a cold classifier gives %+v, %v",
					order[0], order[1], got, gotErr, want, wantErr)
			}
		}
	}
	// An EXPLAIN whose ANALYZE has a value depends on it: never cached.
	c := NewClassifier(16)
	c.Classify("EXPLAIN (ANALYZE 0) DELETE FROM t")
	if st := classifyOne(t, c, "EXPLAIN (ANALYZE 1) DELETE FROM t"); st.Kind != KindWrite {
		t.Errorf("EXPLAIN (ANALYZE 1): Kind = %s, want write", st.Kind)
	}
	if s := c.Stats(); s.FastHits != 0 || c.fast.len() != 0 {
		t.Errorf("EXPLAIN with an ANALYZE value reached the fast cache: %+v", s)
	}
}

// TestVerifyFast feeds verifyFast token lists that disagree with fastKey, as
// PostgreSQL's scanner would if the two lexers read an input differently,
// and checks that each is refused and that Classify's store counts it and
// stores nothing.
func TestVerifyFast(t *testing.T) {
	const sql = "SELECT 1, 'a'; ALTER INDEX i ALTER COLUMN 2 SET STATISTICS 3"
	_, consts, ok := fastKey(sql)
	if !ok {
		t.Fatal("fastKey refused the input")
	}
	toks, err := scan(sql)
	if err != nil {
		t.Fatal(err)
	}
	shapes := []shape{
		{facts: facts{command: "SELECT"}, span: span{before: -1, after: 4}},
		{facts: facts{command: "ALTER"}, span: span{before: 4, after: -1}},
	}
	fs, err := verifyFast(sql, consts, toks, shapes)
	if err != nil {
		t.Fatalf("verifyFast with the scanner's own tokens: %v", err)
	}
	want := []fastShape{
		{facts: facts{command: "SELECT"}, start: boundary{0, 0, 0}, end: boundary{2, 0, 1}},
		{facts: facts{command: "ALTER"}, start: boundary{2, 1, -1}, end: boundary{4, 0, 0}},
	}
	if !reflect.DeepEqual(fs, want) {
		t.Fatalf("verifyFast = %+v, want %+v", fs, want)
	}

	indexOf := func(kind pg_query.Token, nth int) int {
		for i, tk := range toks {
			if tk.kind == kind {
				if nth == 0 {
					return i
				}
				nth--
			}
		}
		t.Fatalf("no %s number %d", kind, nth)
		return -1
	}
	edit := func(f func(toks []token) []token) []token {
		return f(append([]token(nil), toks...))
	}
	iconst := indexOf(pg_query.Token_ICONST, 0)
	sconst := indexOf(pg_query.Token_SCONST, 0)
	steering := indexOf(pg_query.Token_ICONST, 1)
	for _, tt := range []struct {
		name   string
		toks   []token
		shapes []shape
	}{
		{"other kind", edit(func(ts []token) []token { ts[iconst].kind = pg_query.Token_FCONST; return ts }), shapes},
		{"bit string", edit(func(ts []token) []token { ts[sconst].kind = pg_query.Token_BCONST; return ts }), shapes},
		{"unicode string", edit(func(ts []token) []token { ts[sconst].kind = pg_query.Token_USCONST; return ts }), shapes},
		{"other start", edit(func(ts []token) []token { ts[sconst].start--; return ts }), shapes},
		{"other end", edit(func(ts []token) []token { ts[sconst].end++; return ts }), shapes},
		{"not a constant", edit(func(ts []token) []token { ts[iconst].kind = pg_query.Token_IDENT; return ts }), shapes},
		{"one more constant", edit(func(ts []token) []token {
			return append(ts, token{kind: pg_query.Token_ICONST, start: len(sql), end: len(sql)})
		}), shapes},
		{"one constant fewer", edit(func(ts []token) []token { return append(ts[:sconst], ts[sconst+1:]...) }), nil},
		{"steering constant not kept", edit(func(ts []token) []token {
			ts[steering+2].kind = pg_query.Token_ALTER // ALTER 3 for STATISTICS 3
			return ts
		}), shapes},
		{"boundary not a semicolon", toks, []shape{{span: span{before: -1, after: 3}}}},
		{"boundary after no semicolon", toks, []shape{{span: span{before: 3, after: -1}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if fs, err := verifyFast(sql, consts, tt.toks, tt.shapes); !errors.Is(err, errFastMismatch) {
				t.Fatalf("verifyFast = %+v, %v; want errFastMismatch", fs, err)
			}
			c := NewClassifier(16)
			key, _, _ := fastKey(sql)
			c.storeFast(sql, []byte(key), consts, tt.toks, tt.shapes)
			if s := c.Stats(); s.FastRejected != 1 || c.fast.len() != 0 {
				t.Errorf("stats %+v, %d fast entries: want it rejected and not stored", s, c.fast.len())
			}
		})
	}

	// A semicolon inside a constant is no boundary.
	const inString = "SELECT ';'"
	_, strConsts, _ := fastKey(inString)
	for _, semicolon := range []int{-1, 1} {
		pos := 9 + min(semicolon, 0)
		if _, err := boundaryAt(inString, strConsts, pos, semicolon); !errors.Is(err, errFastMismatch) {
			t.Errorf("boundaryAt(%d, %d), a semicolon inside a string: %v, want errFastMismatch", pos, semicolon, err)
		}
	}
}

// FuzzFastKey checks the fast cache against a cold classifier. For an input
// A and a mutation B of its constants (replacement text from repl, pieces
// separated by commas), a Classifier that has seen A must answer B as a
// cold Classifier does, whether B is a variant with constants of the same
// classes (which must have A's key, and is answered by the fast cache when
// A was stored) or has arbitrary text in their place. It also checks that
// fastKey never panics and, for input PostgreSQL's parser accepts, finds the
// constants PostgreSQL's scanner finds.
//
// The seed corpus is in testdata/fuzz/FuzzFastKey.
func FuzzFastKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, sql, repl string) {
		key, consts, ok := fastKey(sql)
		if !ok {
			return
		}
		if checkEncoding(sql) != nil {
			// fastKey may accept invalid UTF-8; Classify never asks it.
			return
		}
		if _, err := classifyCold(sql); err == nil {
			toks, err := scan(sql)
			if err != nil {
				t.Fatalf("the parser accepts %q, the scanner fails: %v", sql, err)
			}
			if _, err := verifyFast(sql, consts, toks, nil); err != nil {
				t.Fatalf("fastKey(%q) = %q, %v: %v", sql, key, consts, err)
			}
		}
		pieces := strings.Split(repl, ",")
		same := sameClassVariant(sql, consts, pieces)
		if sameKey, _, ok := fastKey(same); !ok || sameKey != key {
			t.Fatalf("%q has key %q; its variant %q has key %q (ok %v)", sql, key, same, sameKey, ok)
		}
		for _, b := range []string{same, rawVariant(sql, consts, pieces)} {
			warm := NewClassifier(8)
			warm.Classify(sql)
			got, gotErr := warm.Classify(b)
			want, wantErr := classifyCold(b)
			if !sameResult(got, gotErr, want, wantErr) {
				t.Fatalf("after %q, Classify(%q) = %+v, %v (stats %+v); a cold classifier gives %+v, %v",
					sql, b, got, gotErr, warm.Stats(), want, wantErr)
			}
			// Every input stored was accepted by the parser, and fastKey
			// agrees with the scanner on those (checked above for sql).
			if s := warm.Stats(); s.FastRejected != 0 {
				t.Fatalf("after %q and %q: stats %+v, want no rejection", sql, b, s)
			}
		}
	})
}

// sameClassVariant returns sql with every constant that does not steer the
// grammar replaced by one of the same class made from pieces.
func sameClassVariant(sql string, consts []constSpan, pieces []string) string {
	var b strings.Builder
	last := 0
	for i, c := range consts {
		b.WriteString(sql[last:c.start])
		last = c.end
		if c.steers {
			b.WriteString(sql[c.start:c.end])
			continue
		}
		p := pieces[i%len(pieces)]
		digits := strings.Map(func(r rune) rune {
			if '0' <= r && r <= '9' {
				return r
			}
			return -1
		}, p)
		switch c.class {
		case classInt:
			if len(digits) > 9 {
				digits = digits[:9]
			}
			b.WriteString("0" + digits)
		case classFloat:
			if len(p)%2 == 0 {
				b.WriteString("9999999999" + digits)
			} else {
				b.WriteString(digits + "0.5" + digits)
			}
		case classString:
			s := strings.ToValidUTF8(p, "?")
			s = strings.NewReplacer("'", "''", "\\", "/", "\x00", "").Replace(s)
			b.WriteString("'" + s + "'")
		}
	}
	b.WriteString(sql[last:])
	return b.String()
}

// rawVariant returns sql with every constant replaced by a piece as it is.
func rawVariant(sql string, consts []constSpan, pieces []string) string {
	var b strings.Builder
	last := 0
	for i, c := range consts {
		b.WriteString(sql[last:c.start])
		b.WriteString(pieces[i%len(pieces)])
		last = c.end
	}
	b.WriteString(sql[last:])
	return b.String()
}

func TestSameClassVariantKeepsKey(t *testing.T) {
	for _, sql := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
		"SELECT 'x', 1.5, 99999999999, 7 FROM t WHERE a = 'it''s'",
		"ALTER INDEX i ALTER COLUMN 2 SET STATISTICS 3",
	} {
		key, consts, ok := fastKey(sql)
		if !ok {
			t.Fatalf("fastKey refused %q", sql)
		}
		for _, repl := range []string{"", "1,22,'x''",
			"é\xff,\\,x" + strings.Repeat("9", 40)} {
			v := sameClassVariant(sql, consts, strings.Split(repl, ","))
			if k, _, _ := fastKey(v); k != key || !utf8.ValidString(v) {
				t.Errorf("variant %q of %q has key %q, want %q", v, sql, k, key)
			}
		}
	}
}
