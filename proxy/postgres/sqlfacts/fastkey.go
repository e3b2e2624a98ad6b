package sqlfacts

import (
	"errors"
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// The fast cache answers a statement that differs from a classified one only
// in its literals without asking PostgreSQL's scanner, whose call through cgo
// costs more than everything else on the normalized cache's path. Its key is
// built by fastKey, a small lexer that finds only the constants and refuses
// whatever it does not plainly understand.
//
// Why a fast hit is sound. An entry is stored for an input A only with
// facts the normalized cache holds, or may hold, for A (after a parse of A
// that succeeded and is not literal-sensitive, or on a normalized hit), and
// only after A's constants, as fastKey found them, were checked against the
// tokens of PostgreSQL's scanner for A (verifyFast): the same constants at
// the same byte spans with the same token kinds, and every constant whose
// value the grammar inspects (steersParser) kept verbatim in the key. Let B
// be an input with the same key.
//
//  1. B's bytes outside its constants equal A's. The key is the input with
//     each constant replaced by a NUL and its class (a steering integer
//     also by its digits, which end where the next byte is not a digit),
//     and the input holds no NUL, so a key decodes into one sequence of
//     verbatim runs and constant classes.
//  2. The scanner is deterministic, and given the state it starts a
//     constant in and the bytes after the constant, how it lexes a
//     constant of each class fastKey accepts does not depend on the
//     constant's content. A '...' string without backslashes (and
//     standard_conforming_strings is on) ends at its first lone quote and
//     is SCONST, unless a quote follows after white space, which fastKey
//     refuses. Digits, or digits.digits, followed by a byte that cannot
//     continue a number (fastKey refuses the others) are one token: a
//     decimal is FCONST, an integer ICONST if it fits an int32 and FCONST
//     if not, and fastKey applies that same rule and puts the class in the
//     key. Nor does the token before a constant depend on its content: the
//     constant starts with a quote in A and B alike, or with a digit, and
//     no rule of the scanner treats one digit differently from another
//     except at the start of a number (0x, 0o, 0b); what could glue onto a
//     constant from the left (E'...', U&'...', B'...', X'...', N'...', .5,
//     a digit after an identifier) is refused or is not a constant to
//     fastKey. After a constant the scanner is back in its initial state.
//  3. So, by induction over the constants, the scanner's tokens for B are
//     A's, with the constants' values and positions changed and nothing
//     else. The steering constants are equal in A and B, so B has A's
//     normalizedKey: the normalized cache would answer B with A's facts
//     (see the package documentation for why that is sound), and the fast
//     cache holds exactly those facts.
//
// Statement boundaries are semicolon tokens outside constants, so in B they
// sit at the same distance from the end of the constant before them as in A;
// the entry stores them that way (boundary) and Text is cut from B.

// constClass is a constant's token kind as PostgreSQL's scanner would report
// it. It is the byte that follows the NUL of a constant's marker in the key.
type constClass byte

const (
	classInt    constClass = 'i' // ICONST: an integer that fits an int32
	classFloat  constClass = 'f' // FCONST: a larger integer, or digits.digits
	classString constClass = 's' // SCONST: a plain '...' string
)

// steering returns the marker class of a constant that keeps its text in
// the key.
func (c constClass) steering() byte { return byte(c) - 'a' + 'A' }

func (c constClass) token() pg_query.Token {
	switch c {
	case classInt:
		return pg_query.Token_ICONST
	case classFloat:
		return pg_query.Token_FCONST
	case classString:
		return pg_query.Token_SCONST
	}
	return pg_query.Token_NUL
}

// constSpan is one constant fastKey found: its byte range in the input, its
// class, and whether it steers the grammar (and so keeps its text in the
// key).
type constSpan struct {
	start, end int
	class      constClass
	steers     bool
}

// fastKey returns sql's key for the fast cache and its constants, or ok
// false when sql is not for the fast path. The key is sql verbatim except
// that each constant is replaced by a NUL byte and its class; an integer
// whose value the grammar inspects (after ALTER, COLUMN, or FLOAT( ) is
// followed by its digits.
func fastKey(sql string) (key string, consts []constSpan, ok bool) {
	buf, consts, ok := appendFastKey(nil, nil, sql)
	return string(buf), consts, ok
}

// prevToken is what fastKey remembers of the token before the current one,
// which is all it needs to tell a steering integer.
type prevToken uint8

const (
	prevOther           prevToken = iota
	prevAlterOrColumn             // the keyword ALTER or COLUMN
	prevFloat                     // the keyword FLOAT
	prevParenAfterFloat           // ( after FLOAT
)

// byteClass sorts bytes for appendFastKey's main loop.
type byteClass uint8

const (
	byteOther byteClass = iota
	byteSpace
	byteIdent // ident_start
	byteDigit
	byteSpecial // a byte with a case of its own: - / " $ ' . ( and NUL
)

var byteClasses = func() (t [256]byteClass) {
	for b := range 256 {
		switch {
		case isSQLSpace(byte(b)):
			t[b] = byteSpace
		case isIdentStart(byte(b)):
			t[b] = byteIdent
		case isDigit(byte(b)):
			t[b] = byteDigit
		}
	}
	for _, b := range []byte("-/\"$'.(\x00") {
		t[b] = byteSpecial
	}
	return t
}()

// appendFastKey is fastKey appending to caller-provided buffers, so that a
// lookup need not allocate.
func appendFastKey(key []byte, consts []constSpan, sql string) ([]byte, []constSpan, bool) {
	copied := 0 // sql[:copied] is in key
	prev := prevOther
	n := len(sql)
	for i := 0; i < n; {
		b := sql[i]
		var end int
		var class constClass
		var steers bool
		switch byteClasses[b] {
		case byteSpace:
			i++
			continue
		case byteOther:
			prev = prevOther
			i++
			continue
		case byteIdent:
			j := i + 1
			for j < n && isIdentCont(sql[j]) {
				j++
			}
			prev = keywordToken(sql[i:j])
			i = j
			continue
		case byteDigit:
			var integer, ok bool
			end, class, integer, ok = numericConstant(sql, i)
			if !ok {
				return key, consts, false
			}
			steers = integer && (prev == prevAlterOrColumn || prev == prevParenAfterFloat)
		default: // byteSpecial
			switch {
			case b == 0:
				return key, consts, false // NUL is the markers' first byte
			case b == '-' && i+1 < n && sql[i+1] == '-':
				i = endOfLineComment(sql, i)
				continue
			case b == '/' && i+1 < n && sql[i+1] == '*':
				e, ok := endOfBlockComment(sql, i)
				if !ok {
					return key, consts, false
				}
				i = e
				continue
			case b == '"':
				if i > 0 && sql[i-1] == '&' {
					return key, consts, false // U&"...": escapes decoded by the grammar
				}
				e, ok := endOfQuoted(sql, i, '"')
				if !ok {
					return key, consts, false
				}
				prev, i = prevOther, e
				continue
			case b == '$':
				j := i + 1
				for j < n && isDigit(sql[j]) {
					j++
				}
				if j == i+1 || (j < n && isIdentCont(sql[j])) {
					return key, consts, false // a dollar quote, or junk after $n
				}
				prev, i = prevOther, j
				continue
			case b == '.' && i+1 < n && isDigit(sql[i+1]):
				return key, consts, false // .5, or t.1, which the scanner reads as t and .1
			case b == '(':
				if prev == prevFloat {
					prev = prevParenAfterFloat
				} else {
					prev = prevOther
				}
				i++
				continue
			case b == '\'':
				var ok bool
				end, ok = stringConstant(sql, i)
				if !ok {
					return key, consts, false
				}
				class = classString
			default: // a lone - / or .
				prev = prevOther
				i++
				continue
			}
		}
		// A constant: sql[i:end], of class class.
		key = append(key, sql[copied:i]...)
		if steers {
			key = append(key, 0, class.steering())
			key = append(key, sql[i:end]...)
		} else {
			key = append(key, 0, byte(class))
		}
		consts = append(consts, constSpan{start: i, end: end, class: class, steers: steers})
		prev, copied, i = prevOther, end, end
	}
	key = append(key, sql[copied:]...)
	return key, consts, true
}

// keywordToken tells the keywords that precede a steering integer; the
// scanner matches keywords case-insensitively, and only unquoted.
func keywordToken(ident string) prevToken {
	switch {
	case len(ident) == len("alter") && ident[0]|0x20 == 'a' && strings.EqualFold(ident, "alter"),
		len(ident) == len("column") && ident[0]|0x20 == 'c' && strings.EqualFold(ident, "column"):
		return prevAlterOrColumn
	case len(ident) == len("float") && ident[0]|0x20 == 'f' && strings.EqualFold(ident, "float"):
		return prevFloat
	}
	return prevOther
}

// endOfLineComment returns the end of the -- comment at i: the newline (\n
// or \r, as the scanner counts them) that ends it, or the end of the input.
func endOfLineComment(sql string, i int) int {
	for i < len(sql) && sql[i] != '\n' && sql[i] != '\r' {
		i++
	}
	return i
}

// endOfBlockComment returns the end of the /* comment at i, which nests as
// in PostgreSQL, or false when it is not closed.
func endOfBlockComment(sql string, i int) (int, bool) {
	depth := 0
	for i+1 < len(sql) {
		switch {
		case sql[i] == '/' && sql[i+1] == '*':
			depth++
			i += 2
		case sql[i] == '*' && sql[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i, true
			}
		default:
			i++
		}
	}
	return 0, false
}

// endOfQuoted returns the end of the quoted text at i, whose quote q is
// written twice inside it, or false when it is not closed.
func endOfQuoted(sql string, i int, q byte) (int, bool) {
	for j := i + 1; j < len(sql); j++ {
		if sql[j] != q {
			continue
		}
		if j+1 < len(sql) && sql[j+1] == q {
			j++
			continue
		}
		return j + 1, true
	}
	return 0, false
}

// stringConstant returns the end of the plain '...' string at i, or false
// for one that is not plainly an SCONST of its own: a prefix glued to it
// (E'...', B'...', X'...', N'...', U&'...'), a backslash in it, no closing quote, or another
// quote after white space, which the scanner may join to it (SQL's string
// continuation across a newline).
func stringConstant(sql string, i int) (int, bool) {
	if i > 0 && (isIdentCont(sql[i-1]) || sql[i-1] == '&') {
		return 0, false
	}
	end, ok := endOfQuoted(sql, i, '\'')
	if !ok || strings.IndexByte(sql[i:end], '\\') >= 0 {
		return 0, false
	}
	j := end
	for j < len(sql) {
		switch {
		case isSQLSpace(sql[j]):
			j++
		case sql[j] == '-' && j+1 < len(sql) && sql[j+1] == '-':
			j = endOfLineComment(sql, j)
		default:
			return end, sql[j] != '\''
		}
	}
	return end, true
}

// numericConstant returns the end and class of the number at i, which is
// an integer (digits) or not (digits.digits). It refuses every other form of
// number (exponents, underscores, 0x, 0o and 0b prefixes, a trailing dot)
// and a number followed by anything that the scanner could read as part of
// it or reject as junk after it.
func numericConstant(sql string, i int) (end int, class constClass, integer, ok bool) {
	j := i + countDigits(sql[i:])
	integer = true
	if j < len(sql) && sql[j] == '.' {
		if j+1 >= len(sql) || !isDigit(sql[j+1]) {
			return 0, 0, false, false // 1. and 1..: a numeric and a range are lexed specially
		}
		j++
		j += countDigits(sql[j:])
		integer = false
	}
	if j < len(sql) && (isIdentCont(sql[j]) || sql[j] == '.') {
		return 0, 0, false, false
	}
	class = classFloat
	if integer && fitsInt32(sql[i:j]) {
		class = classInt
	}
	return j, class, integer, true
}

// fitsInt32 reports whether a string of decimal digits is at most
// 2147483647, the scanner's test for ICONST (pg_strtoint32).
func fitsInt32(digits string) bool {
	digits = strings.TrimLeft(digits, "0")
	const maxInt32 = "2147483647"
	switch {
	case len(digits) < len(maxInt32):
		return true
	case len(digits) > len(maxInt32):
		return false
	}
	return digits <= maxInt32
}

func countDigits(s string) int {
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	return n
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// isIdentStart and isIdentCont are the scanner's ident_start and ident_cont:
// every byte from 0x80 up is a letter to it.
func isIdentStart(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || b == '_' || b >= 0x80
}

func isIdentCont(b byte) bool { return identCont[b] }

var identCont = func() (t [256]bool) {
	for b := range 256 {
		t[b] = isIdentStart(byte(b)) || isDigit(byte(b)) || b == '$'
	}
	return t
}()

// fastShape is one statement of a fast cache entry: its facts, and its
// boundaries placed relative to the constants, since those are the only
// bytes that move between inputs with the same key.
type fastShape struct {
	facts
	start, end boundary
}

// A boundary is a byte offset stored as the number of constants before it
// and the distance from the end of the last of them (from the start of the
// input when there is none). semicolon says where the semicolon that makes
// it a boundary is: the byte before it (-1), the byte at it (+1), or none
// (0: the start or end of the input).
type boundary struct {
	consts, offset, semicolon int
}

// offsetIn returns the boundary's byte offset in an input whose constants
// are consts, or false if it does not fall where it should.
func (b boundary) offsetIn(sql string, consts []constSpan) (int, bool) {
	if b.consts > len(consts) {
		return 0, false
	}
	pos := b.offset
	if b.consts > 0 {
		pos += consts[b.consts-1].end
	}
	if pos < 0 || pos > len(sql) {
		return 0, false
	}
	switch b.semicolon {
	case -1:
		return pos, pos > 0 && sql[pos-1] == ';'
	case 1:
		return pos, pos < len(sql) && sql[pos] == ';'
	}
	return pos, true
}

// errFastMismatch is wrapped by verifyFast's errors: fastKey and PostgreSQL's
// scanner read the input differently.
var errFastMismatch = errors.New("fast lexer disagrees with the scanner")

// verifyFast checks fastKey's constants for sql against the scanner's tokens
// toks (see the soundness argument at the top of this file) and converts the
// statements' spans into boundaries. It fails, and nothing may be stored,
// when the two disagree on any constant's span or kind, when a constant the
// grammar inspects is not kept verbatim in the key, or when a statement
// boundary is not a semicolon token outside every constant.
func verifyFast(sql string, consts []constSpan, toks []token, shapes []shape) ([]fastShape, error) {
	m := 0 // constants of toks seen
	prev, prev2 := pg_query.Token_NUL, pg_query.Token_NUL
	for _, t := range toks {
		if isConstant(t.kind) || t.kind == pg_query.Token_USCONST {
			if m >= len(consts) {
				return nil, fmt.Errorf("%w: the scanner's constant %d at bytes %d..%d is not one here", errFastMismatch, m+1, t.start, t.end)
			}
			c := consts[m]
			if c.start != t.start || c.end != t.end || c.class.token() != t.kind {
				return nil, fmt.Errorf("%w: constant %d is %s at bytes %d..%d, here %c at %d..%d",
					errFastMismatch, m+1, t.kind, t.start, t.end, c.class, c.start, c.end)
			}
			if steersParser(t.kind, prev, prev2) && !c.steers {
				return nil, fmt.Errorf("%w: constant %d steers the grammar but is not kept in the key", errFastMismatch, m+1)
			}
			m++
		}
		prev, prev2 = t.kind, prev
	}
	if m != len(consts) {
		return nil, fmt.Errorf("%w: %d constants here, the scanner has %d", errFastMismatch, len(consts), m)
	}

	out := make([]fastShape, len(shapes))
	for i, s := range shapes {
		start, end := 0, len(sql)
		startSemi, endSemi := 0, 0
		if s.span.before >= 0 {
			t := toks[s.span.before]
			start, startSemi = t.end, -1
			if t.kind != pg_query.Token_ASCII_59 || t.end != t.start+1 {
				return nil, fmt.Errorf("%w: statement %d does not start after a semicolon", errFastMismatch, i+1)
			}
		}
		if s.span.after >= 0 {
			t := toks[s.span.after]
			end, endSemi = t.start, 1
			if t.kind != pg_query.Token_ASCII_59 || t.end != t.start+1 {
				return nil, fmt.Errorf("%w: statement %d does not end before a semicolon", errFastMismatch, i+1)
			}
		}
		var err1, err2 error
		out[i].facts = s.facts
		out[i].start, err1 = boundaryAt(sql, consts, start, startSemi)
		out[i].end, err2 = boundaryAt(sql, consts, end, endSemi)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("statement %d: %w", i+1, err)
		}
	}
	return out, nil
}

// boundaryAt converts byte offset pos of sql into a boundary, checking that
// the semicolon it names is one and is outside every constant.
func boundaryAt(sql string, consts []constSpan, pos, semicolon int) (boundary, error) {
	b := boundary{semicolon: semicolon}
	for b.consts < len(consts) && consts[b.consts].end <= pos {
		b.consts++
	}
	b.offset = pos
	if b.consts > 0 {
		b.offset -= consts[b.consts-1].end
	}
	if semicolon != 0 {
		q := pos // the semicolon's byte
		if semicolon < 0 {
			q = pos - 1
		}
		if q < 0 || q >= len(sql) || sql[q] != ';' {
			return b, fmt.Errorf("%w: no semicolon at byte %d", errFastMismatch, q)
		}
		for _, c := range consts {
			if c.start <= q && q < c.end {
				return b, fmt.Errorf("%w: the semicolon at byte %d is inside a constant", errFastMismatch, q)
			}
		}
	}
	if got, ok := b.offsetIn(sql, consts); !ok || got != pos {
		return b, fmt.Errorf("%w: boundary at byte %d does not map back", errFastMismatch, pos)
	}
	return b, nil
}

// materializeFast builds the statements of a fast cache entry for sql, whose
// constants are consts, or returns false if a boundary does not fall on its
// semicolon (which the key's equality rules out; checked all the same).
func materializeFast(sql string, consts []constSpan, shapes []fastShape) ([]Statement, bool) {
	stmts := make([]Statement, len(shapes))
	for i, s := range shapes {
		start, ok1 := s.start.offsetIn(sql, consts)
		end, ok2 := s.end.offsetIn(sql, consts)
		if !ok1 || !ok2 || start > end {
			return nil, false
		}
		commands, tables, functions := cloneLists(s.commands, s.tables, s.functions)
		stmts[i] = Statement{
			Command:   s.command,
			Kind:      s.kind,
			Commands:  commands,
			Tables:    tables,
			Functions: functions,
			HasWhere:  s.hasWhere,
			Text:      trimSQLSpace(sql[start:end]),
		}
	}
	return stmts, true
}
