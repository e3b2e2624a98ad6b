package sqlfacts

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// FuzzClassify feeds arbitrary text to Classify and checks that:
//   - it never panics, and never returns statements together with an error;
//   - every statement's Commands starts with its Command;
//   - a cached answer equals a fresh parse's, on the literal-blind paths
//     (the cache is first primed with the same input with every literal and
//     comment replaced: the fast cache answers when there was no comment,
//     the normalized cache otherwise) and on the exact path (the same
//     input again);
//   - the package's decoding of the scanner's tokens matches pg_query.Scan,
//     and nestingBound bounds the depth of the parse tree;
//   - each statement's Text, classified alone, is one statement with the
//     same facts and the same Text: Text is the whole statement and nothing
//     else.
//
// The seed corpus is in testdata/fuzz/FuzzClassify.
func FuzzClassify(f *testing.F) {
	f.Fuzz(func(t *testing.T, sql string) {
		if !strings.ContainsRune(sql, 0) {
			checkScanMatchesPgQuery(t, sql)
			checkNestingBound(t, sql)
		}
		fresh := NewClassifier(0)
		want, wantErr := fresh.Classify(sql)
		if wantErr != nil && want != nil {
			t.Fatalf("Classify(%q) returned statements and the error %v", sql, wantErr)
		}
		if wantErr == nil && want == nil {
			t.Fatalf("Classify(%q) returned nil, nil", sql)
		}

		cached := NewClassifier(8)
		if variant, ok := literalVariant(sql); ok {
			cached.Classify(variant)
		}
		got, gotErr := cached.Classify(sql)
		if !sameResult(got, gotErr, want, wantErr) {
			t.Fatalf("Classify(%q) after its literal variant = %+v, %v; a fresh parse gives %+v, %v",
				sql, got, gotErr, want, wantErr)
		}
		got, gotErr = cached.Classify(sql)
		if !sameResult(got, gotErr, want, wantErr) {
			t.Fatalf("Classify(%q) repeated = %+v, %v; a fresh parse gives %+v, %v",
				sql, got, gotErr, want, wantErr)
		}

		for _, st := range want {
			if _, known := kindRank[st.Kind]; !known || st.Command == "" {
				t.Fatalf("Classify(%q): statement %+v has no command or an unknown kind", sql, st)
			}
			if len(st.Commands) == 0 || st.Commands[0] != st.Command {
				t.Fatalf("Classify(%q): statement %+v: Commands does not start with Command", sql, st)
			}
			alone, err := fresh.Classify(st.Text)
			if err != nil {
				t.Fatalf("Classify(%q): Text %q alone fails: %v", sql, st.Text, err)
			}
			if len(alone) != 1 || !reflect.DeepEqual(alone[0], st) {
				t.Fatalf("Classify(%q): statement %+v; its Text alone gives %+v", sql, st, alone)
			}
		}
	})
}

// literalVariant returns sql with the text of every literal token and every
// comment replaced by a different one of the same token type, so that it has
// the same normalized key as sql (unless a literal steers the parser).
func literalVariant(sql string) (string, bool) {
	res, err := pg_query.Scan(sql)
	if err != nil {
		return "", false
	}
	var b strings.Builder
	last := 0
	changed := false
	for _, tk := range res.Tokens {
		start, end := int(tk.Start), int(tk.End)
		if start < last || end > len(sql) || end < start {
			return "", false
		}
		var repl string
		switch tk.Token {
		case pg_query.Token_SCONST:
			repl = "'v'"
		case pg_query.Token_ICONST:
			repl = "7"
		case pg_query.Token_FCONST:
			repl = "7.5"
		case pg_query.Token_BCONST:
			repl = "B'1'"
		case pg_query.Token_XCONST:
			repl = "X'1'"
		case pg_query.Token_C_COMMENT:
			repl = "/*v*/"
		case pg_query.Token_SQL_COMMENT:
			repl = "--v"
		default:
			continue
		}
		b.WriteString(sql[last:start])
		b.WriteString(repl)
		last = end
		changed = true
	}
	b.WriteString(sql[last:])
	return b.String(), changed
}

func TestLiteralVariantSharesKey(t *testing.T) {
	for _, sql := range []string{
		"SELECT * FROM t WHERE a = 'x' AND b = 10 AND c = 1.5 AND d = B'01' AND e = X'ff' -- c",
		"/* a */ INSERT INTO t VALUES (E'\\n', $$y$$, 0x1F, 1_000)",
	} {
		variant, ok := literalVariant(sql)
		if !ok {
			t.Fatalf("no variant for %q", sql)
		}
		a, errA := scan(sql)
		b, errB := scan(variant)
		if err := errors.Join(errA, errB); err != nil {
			t.Fatal(err)
		}
		if normalizedKey(sql, a) != normalizedKey(variant, b) {
			t.Errorf("%q and its variant %q have different keys", sql, variant)
		}
	}
}

// checkScanMatchesPgQuery compares the package's own decoding of the
// scanner's answer with pg_query.Scan's.
func checkScanMatchesPgQuery(t *testing.T, sql string) {
	t.Helper()
	got, gotErr := scan(sql)
	res, wantErr := pg_query.Scan(sql)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("scan(%q) error %v, pg_query.Scan error %v", sql, gotErr, wantErr)
	}
	if wantErr != nil {
		return
	}
	var want []token
	for _, tk := range res.Tokens {
		if tk.Token == pg_query.Token_SQL_COMMENT || tk.Token == pg_query.Token_C_COMMENT {
			continue
		}
		want = append(want, token{kind: tk.Token, start: int(tk.Start), end: int(tk.End)})
	}
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("scan(%q) = %v, pg_query.Scan gives %v", sql, got, want)
	}
}

func TestScanMatchesPgQuery(t *testing.T) {
	for _, sql := range []string{
		"",
		"SELECT 1",
		"/* c */ SELECT 'a', E'b', $$c$$, 1.5, 0x1F, B'101', X'1F', U&'\\0041' UESCAPE '!' -- d",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; SELECT 'ü'",
		"SELECT 'unterminated",
		strings.Repeat("SELECT 1; ", 1000),
	} {
		checkScanMatchesPgQuery(t, sql)
	}
}
