package sqlfacts

import (
	"encoding/binary"
	"fmt"
	"sort"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
	"google.golang.org/protobuf/encoding/protowire"
)

// A token is one lexeme of the input as PostgreSQL's own scanner
// (pg_query.Scan) sees it; start and end are byte offsets.
type token struct {
	kind       pg_query.Token
	start, end int
}

// scan lexes sql with PostgreSQL's scanner and returns its tokens without
// the comments, which the grammar never sees.
//
// The scanner's protobuf answer is decoded here rather than with
// pg_query.Scan, which builds a message per token: on the normalized cache's
// path that unmarshalling cost as much as the scan.
func scan(sql string) ([]token, error) {
	buf, err := parser.ScanToProtobuf(sql)
	if err != nil {
		return nil, err
	}
	toks := make([]token, 0, len(sql)/4)
	prevEnd := 0
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 {
			return nil, fmt.Errorf("decoding scan result: %w", protowire.ParseError(n))
		}
		buf = buf[n:]
		if num != 2 || typ != protowire.BytesType { // not a token: skip it
			n = protowire.ConsumeFieldValue(num, typ, buf)
			if n < 0 {
				return nil, fmt.Errorf("decoding scan result: %w", protowire.ParseError(n))
			}
			buf = buf[n:]
			continue
		}
		msg, n := protowire.ConsumeBytes(buf)
		if n < 0 {
			return nil, fmt.Errorf("decoding scan result: %w", protowire.ParseError(n))
		}
		buf = buf[n:]
		t, err := decodeToken(msg)
		if err != nil {
			return nil, fmt.Errorf("decoding token %d: %w", len(toks), err)
		}
		if t.start < prevEnd || t.end < t.start || t.end > len(sql) {
			return nil, fmt.Errorf("token %d spans bytes %d..%d of %d, after byte %d", len(toks), t.start, t.end, len(sql), prevEnd)
		}
		prevEnd = t.end
		if t.kind == pg_query.Token_SQL_COMMENT || t.kind == pg_query.Token_C_COMMENT {
			continue
		}
		toks = append(toks, t)
	}
	return toks, nil
}

// decodeToken decodes a pg_query.ScanToken: start = 1, end = 2, token = 4,
// all varints; keyword_kind (5) is not needed.
func decodeToken(b []byte) (token, error) {
	var t token
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return t, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.VarintType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return t, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return t, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			t.start = int(int32(v))
		case 2:
			t.end = int(int32(v))
		case 4:
			t.kind = pg_query.Token(int32(v))
		}
	}
	return t, nil
}

func isConstant(k pg_query.Token) bool {
	switch k {
	case pg_query.Token_SCONST, pg_query.Token_ICONST, pg_query.Token_FCONST,
		pg_query.Token_BCONST, pg_query.Token_XCONST:
		return true
	}
	return false
}

// normalizedKey encodes the token stream of sql with the value of every
// constant replaced by a placeholder; every other token keeps its kind and
// exact text. Comments are not in the stream. Two inputs with the same key
// therefore differ only in literal values, comments and white space.
//
// A few constants do steer the parser and keep their text:
//   - the string after UESCAPE: it is the escape character that decodes the
//     preceding U&"..." identifier, so it changes table and function names;
//   - the integer in FLOAT(n): the grammar rejects n < 1 or n > 53;
//   - the integer after ALTER [COLUMN] (ALTER TABLE ... ALTER COLUMN 3 SET
//     STATISTICS): the grammar rejects numbers outside 1..32767.
func normalizedKey(sql string, toks []token) string {
	buf := make([]byte, 0, len(sql)+2*len(toks))
	prev, prev2 := pg_query.Token_NUL, pg_query.Token_NUL // the two previous tokens
	for _, t := range toks {
		buf = binary.AppendUvarint(buf, uint64(t.kind))
		if !isConstant(t.kind) || steersParser(t.kind, prev, prev2) {
			text := sql[t.start:t.end]
			buf = binary.AppendUvarint(buf, uint64(len(text)))
			buf = append(buf, text...)
		}
		prev, prev2 = t.kind, prev
	}
	return string(buf)
}

// steersParser reports whether a constant of kind k, preceded by the
// tokens prev2 prev, is one whose value the grammar inspects.
func steersParser(k, prev, prev2 pg_query.Token) bool {
	switch k {
	case pg_query.Token_SCONST:
		return prev == pg_query.Token_UESCAPE
	case pg_query.Token_ICONST:
		return prev == pg_query.Token_ALTER || prev == pg_query.Token_COLUMN ||
			(prev == pg_query.Token_ASCII_40 && prev2 == pg_query.Token_FLOAT_P)
	}
	return false
}

// A span locates one statement by the semicolon tokens around it: the
// statement's text lies between the end of token before (or the start of the
// input when before is -1) and the start of token after (or the end of the
// input when after is -1). Spans are stored as token indices so that they
// carry over to any input with the same normalized key.
type span struct {
	before, after int
}

// spanOf maps a statement's location and length, as the parser reports
// them, to the semicolon tokens around it. It fails when the parser's
// boundaries are not where the scanner put semicolons, which would mean the
// two disagree about the input.
func spanOf(sql string, toks []token, location, length int) (span, error) {
	sp := span{before: -1, after: -1}
	if location < 0 || location > len(sql) || length < 0 || location+length > len(sql) {
		return sp, fmt.Errorf("statement at byte %d, length %d, outside the input", location, length)
	}
	if location > 0 {
		sp.before = semicolonAt(toks, location-1)
		if sp.before < 0 {
			return sp, fmt.Errorf("no semicolon ends at byte %d where a statement starts", location)
		}
	}
	if length > 0 {
		end := location + length
		sp.after = semicolonAt(toks, end)
		if sp.after < 0 {
			return sp, fmt.Errorf("no semicolon starts at byte %d where a statement ends", end)
		}
	}
	return sp, nil
}

// semicolonAt returns the index of the semicolon token starting at byte
// offset pos, or -1. Tokens are in input order.
func semicolonAt(toks []token, pos int) int {
	i := sort.Search(len(toks), func(i int) bool { return toks[i].start >= pos })
	if i < len(toks) && toks[i].start == pos && toks[i].kind == pg_query.Token_ASCII_59 {
		return i
	}
	return -1
}

// bounds returns the byte range of a span's statement in sql.
func (sp span) bounds(sql string, toks []token) (start, end int) {
	start, end = 0, len(sql)
	if sp.before >= 0 {
		start = toks[sp.before].end
	}
	if sp.after >= 0 {
		end = toks[sp.after].start
	}
	return start, end
}

// tokensIn returns the tokens of a span's statement.
func (sp span) tokensIn(toks []token) []token {
	lo, hi := 0, len(toks)
	if sp.before >= 0 {
		lo = sp.before + 1
	}
	if sp.after >= 0 {
		hi = sp.after
	}
	return toks[lo:hi]
}

// text is the statement's own text: its byte range trimmed of the bytes
// PostgreSQL's scanner treats as white space (and nothing else, so a
// non-breaking space, which PostgreSQL reads as part of an identifier,
// stays). Comments next to the statement are part of it.
func (sp span) text(sql string, toks []token) string {
	start, end := sp.bounds(sql, toks)
	return trimSQLSpace(sql[start:end])
}

// trimSQLSpace trims s of the bytes PostgreSQL's scanner treats as white
// space.
func trimSQLSpace(s string) string {
	start, end := 0, len(s)
	for start < end && isSQLSpace(s[start]) {
		start++
	}
	for end > start && isSQLSpace(s[end-1]) {
		end--
	}
	return s[start:end]
}

func isSQLSpace(b byte) bool {
	switch b {
	case ' ', '\t', '\n', '\r', '\f', '\v':
		return true
	}
	return false
}

// copyTarget is where a COPY statement reads or writes.
type copyTarget int

const (
	copyUnknown copyTarget = iota
	copyClient             // STDIN or STDOUT: the client's end of the connection
	copyFile               // a file on the database server
	copyProgram            // a program run on the database server
)

// copyTargetOf reads the target of a top-level COPY from its tokens. The
// parse tree cannot tell COPY t TO STDOUT from a COPY to an empty file name
// (both leave the file name empty), and a fact must not hinge on a literal's value, so the
// token after the first FROM or TO outside parentheses decides: STDIN or
// STDOUT is the client, PROGRAM a program, a string a server file.
func copyTargetOf(toks []token) copyTarget {
	depth := 0
	seenCopy := false
	for i, t := range toks {
		switch {
		case !seenCopy:
			if t.kind != pg_query.Token_COPY {
				return copyUnknown
			}
			seenCopy = true
		case t.kind == pg_query.Token_ASCII_40:
			depth++
		case t.kind == pg_query.Token_ASCII_41:
			depth--
		case depth == 0 && (t.kind == pg_query.Token_FROM || t.kind == pg_query.Token_TO):
			next := pg_query.Token_NUL
			if i+1 < len(toks) {
				next = toks[i+1].kind
			}
			switch next {
			case pg_query.Token_STDIN, pg_query.Token_STDOUT:
				return copyClient
			case pg_query.Token_PROGRAM:
				return copyProgram
			case pg_query.Token_SCONST:
				return copyFile
			default:
				return copyUnknown
			}
		}
	}
	return copyUnknown
}
