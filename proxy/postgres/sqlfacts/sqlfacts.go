package sqlfacts

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
)

// Statement is what policy is told about one SQL statement.
type Statement struct {
	// Command is the statement's verb, upper-case: SELECT, INSERT, CREATE,
	// GRANT, ... (see the package documentation for the full list), or
	// OTHER for a statement type this package does not know.
	Command string
	// Kind is one of the Kind constants: read, write, ddl, dcl, tcl,
	// procedural, session or other.
	Kind string
	// Commands are the commands of every statement that runs as part of
	// this one, without repeats: Command first, then those nested in it in
	// the order of the parse tree (see the package documentation), so
	// EXPLAIN ANALYZE DELETE ... gives EXPLAIN, DELETE.
	Commands []string
	// Tables are the relations the statement references anywhere, without
	// repeats, in the order of the parse tree, schema-qualified as written
	// (a catalog part is left out). CTE
	// names are not relations and are left out.
	Tables []string
	// Functions are the functions the statement calls anywhere, CALL's
	// procedure included, named like Tables.
	Functions []string
	// HasWhere: when the statement runs any UPDATE or DELETE (its own, a
	// data-modifying CTE's at any depth, EXPLAIN ANALYZE's, a PREPARE's
	// body, COPY's query), whether every one of them has a WHERE (WHERE
	// CURRENT OF counts); otherwise, whether the statement itself (or the
	// SELECT that EXPLAIN or PREPARE holds) has one at its top level.
	HasWhere bool
	// Text is the statement's own text, cut out of the input at the
	// semicolons around it and trimmed of white space.
	Text string
}

// ErrSyntax is wrapped by every error Classify returns for input that
// PostgreSQL's parser rejects, or that cannot reach it intact (a NUL byte,
// invalid UTF-8).
var ErrSyntax = errors.New("sql syntax error")

// SyntaxError carries the parser's message and where it stopped. It
// unwraps to ErrSyntax.
type SyntaxError struct {
	Message string
	// Position is PostgreSQL's cursor position: 1-based, in characters,
	// 0 when unknown. It is what an ErrorResponse's P field carries.
	Position int
}

func (e *SyntaxError) Error() string {
	if e.Position <= 0 {
		return fmt.Sprintf("%s: %s", ErrSyntax, e.Message)
	}
	return fmt.Sprintf("%s: %s at position %d", ErrSyntax, e.Message, e.Position)
}

func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// maxCachedInput bounds the inputs the caches keep, so that a cache's size
// in entries also bounds its memory.
const maxCachedInput = 64 << 10

// Stats counts how Classify answered. Each call is counted at most once
// among the hits: ExactHits for a repeated input, FastHits for an input
// that differs from a classified one only in its literals, answered from
// its bytes alone, and NormalizedHits for one answered from the cache keyed
// by PostgreSQL's scanner (literals that the fast cache's lexer does not
// take, or a difference in white space or comments). Parses counts full
// parses, failed ones included. FastRejected counts inputs whose literals
// the fast cache's lexer and PostgreSQL's scanner found in different places
// or of different kinds, so that no fast entry was stored for them; it is
// expected to stay zero.
type Stats struct {
	ExactHits      uint64
	FastHits       uint64
	NormalizedHits uint64
	Parses         uint64
	FastRejected   uint64
}

// Classifier turns SQL text into Statements. It is safe for concurrent use.
type Classifier struct {
	exact      *lru[[]Statement] // input text → statements
	fast       *lru[[]fastShape] // fastKey → facts and boundaries
	normalized *lru[[]shape]     // normalized key → facts and spans

	exactHits, fastHits, normalizedHits, parses, fastRejected atomic.Uint64
}

// shape is one statement's facts with its place in the token stream, which
// is all the normalized cache needs to rebuild the Statement for another
// input with the same key.
type shape struct {
	facts
	span span
}

// NewClassifier returns a Classifier whose three caches (exact text, fast
// literal-blind key, and normalized key) each hold up to cacheSize entries.
// A cacheSize of zero or less disables caching: every call parses.
func NewClassifier(cacheSize int) *Classifier {
	return &Classifier{
		exact:      newLRU[[]Statement](cacheSize),
		fast:       newLRU[[]fastShape](cacheSize),
		normalized: newLRU[[]shape](cacheSize),
	}
}

// Stats returns the counters since the Classifier was made.
func (c *Classifier) Stats() Stats {
	return Stats{
		ExactHits:      c.exactHits.Load(),
		FastHits:       c.fastHits.Load(),
		NormalizedHits: c.normalizedHits.Load(),
		Parses:         c.parses.Load(),
		FastRejected:   c.fastRejected.Load(),
	}
}

// Classify returns one Statement per statement in sql, in order. Input that
// holds no statement (empty, only comments or semicolons) gives none and no
// error. Errors for input the parser rejects wrap ErrSyntax (and are a
// *SyntaxError); any other error is this package failing, and the input
// must be treated as unclassified.
func (c *Classifier) Classify(sql string) ([]Statement, error) {
	if stmts, ok := c.exact.get(sql); ok {
		c.exactHits.Add(1)
		return cloneStatements(stmts), nil
	}
	// fastKey relies on this check running first: its markers start with
	// a NUL byte, which the input therefore cannot hold.
	if err := checkEncoding(sql); err != nil {
		return nil, err
	}
	cacheable := len(sql) <= maxCachedInput && c.fast.capacity > 0

	// The fast key and the constants are built in stack buffers; most
	// statements fit them, and a lookup then allocates nothing.
	var keyBuf [512]byte
	var constBuf [32]constSpan
	var fkey []byte
	var consts []constSpan
	fastOK := false
	if cacheable {
		fkey, consts, fastOK = appendFastKey(keyBuf[:0], constBuf[:0], sql)
		if fastOK {
			if shapes, ok := c.fast.getBytes(fkey); ok {
				// Not put in the exact cache: inputs that reach here are
				// ones whose literals vary, and rarely repeat.
				if stmts, ok := materializeFast(sql, consts, shapes); ok {
					c.fastHits.Add(1)
					return stmts, nil
				}
			}
		}
		// The caches keep the input and the statements' texts, which are
		// slices of it: copy it so that they do not pin a larger string
		// the caller cut it from. The constants' offsets stay valid.
		sql = strings.Clone(sql)
	}

	toks, scanErr := scan(sql)
	var key string
	if scanErr == nil && cacheable {
		key = normalizedKey(sql, toks)
		if shapes, ok := c.normalized.get(key); ok {
			c.normalizedHits.Add(1)
			stmts := materialize(sql, toks, shapes)
			c.exact.put(sql, stmts)
			if fastOK {
				c.storeFast(sql, fkey, consts, toks, shapes)
			}
			return cloneStatements(stmts), nil
		}
	}

	shapes, literalSensitive, err := c.parse(sql, toks, scanErr)
	if err != nil {
		return nil, err
	}
	stmts := materialize(sql, toks, shapes)
	if cacheable {
		c.exact.put(sql, stmts)
		if !literalSensitive {
			c.normalized.put(key, shapes)
			if fastOK {
				c.storeFast(sql, fkey, consts, toks, shapes)
			}
		}
	}
	return cloneStatements(stmts), nil
}

// storeFast puts the shapes of sql, which has the fast key fkey and the
// constants consts, in the fast cache, provided that fastKey and the scanner
// agree on sql (verifyFast). shapes must be ones the normalized cache holds,
// or may hold, for sql's normalized key: any input the entry will answer
// has that same normalized key.
//
// It is called on a normalized hit too, not only after a parse, so that an
// evicted fast entry comes back while its normalized entry lives; the
// answer is the one the normalized cache gives either way.
func (c *Classifier) storeFast(sql string, fkey []byte, consts []constSpan, toks []token, shapes []shape) {
	fs, err := verifyFast(sql, consts, toks, shapes)
	if err != nil {
		c.fastRejected.Add(1)
		return
	}
	c.fast.put(string(fkey), fs)
}

// parse runs the full parse and computes every statement's shape. toks and
// scanErr are the scanner's answer for sql.
func (c *Classifier) parse(sql string, toks []token, scanErr error) ([]shape, bool, error) {
	if scanErr == nil && nestingBound(toks) > maxNesting {
		return nil, false, &SyntaxError{Message: "statement is nested too deeply to classify"}
	}
	// When the scanner failed, the parser, which runs the same scanner over
	// the same input, fails too, before it writes out any tree; it is asked
	// anyway because its error is the one PostgreSQL would report.
	c.parses.Add(1)
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, false, parseError(err)
	}
	if scanErr != nil {
		// The parser accepted what the scanner rejected: they disagree, so
		// neither is trusted.
		return nil, false, parseError(scanErr)
	}
	return shapesOf(sql, toks, tree)
}

// shapesOf computes the facts and span of every statement in a parse.
func shapesOf(sql string, toks []token, tree *pg_query.ParseResult) ([]shape, bool, error) {
	shapes := make([]shape, 0, len(tree.Stmts))
	anySensitive := false
	for i, raw := range tree.Stmts {
		sp, err := spanOf(sql, toks, int(raw.StmtLocation), int(raw.StmtLen))
		if err != nil {
			return nil, false, fmt.Errorf("locating statement %d: %w", i+1, err)
		}
		f, sensitive := factsOf(raw.Stmt, sp.tokensIn(toks))
		anySensitive = anySensitive || sensitive
		shapes = append(shapes, shape{facts: f, span: sp})
	}
	return shapes, anySensitive, nil
}

func materialize(sql string, toks []token, shapes []shape) []Statement {
	stmts := make([]Statement, len(shapes))
	for i, s := range shapes {
		stmts[i] = Statement{
			Command:   s.command,
			Kind:      s.kind,
			Commands:  s.commands,
			Tables:    s.tables,
			Functions: s.functions,
			HasWhere:  s.hasWhere,
			Text:      s.span.text(sql, toks),
		}
	}
	return stmts
}

// cloneStatements copies what the caches hold, so that a caller changing
// its result cannot change another caller's.
func cloneStatements(in []Statement) []Statement {
	out := make([]Statement, len(in))
	for i, s := range in {
		s.Commands, s.Tables, s.Functions = cloneLists(s.Commands, s.Tables, s.Functions)
		out[i] = s
	}
	return out
}

// cloneLists copies a statement's three lists into one allocation. Each
// copy's capacity is its length, so appending to one cannot overwrite the
// next. The copies are never nil.
func cloneLists(commands, tables, functions []string) ([]string, []string, []string) {
	buf := make([]string, 0, len(commands)+len(tables)+len(functions))
	buf = append(buf, commands...)
	buf = append(buf, tables...)
	buf = append(buf, functions...)
	c, t := len(commands), len(commands)+len(tables)
	return buf[:c:c], buf[c:t:t], buf[t:]
}

// checkEncoding rejects what PostgreSQL would reject before parsing and
// what the parser, which takes a C string, would silently cut short: a NUL
// byte and invalid UTF-8.
func checkEncoding(sql string) error {
	if i := strings.IndexByte(sql, 0); i >= 0 {
		return &SyntaxError{Message: "NUL byte in query", Position: utf8.RuneCountInString(sql[:i]) + 1}
	}
	if !utf8.ValidString(sql) {
		i := 0
		for i < len(sql) {
			r, size := utf8.DecodeRuneInString(sql[i:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			i += size
		}
		return &SyntaxError{Message: "invalid byte sequence for encoding UTF8", Position: utf8.RuneCountInString(sql[:i]) + 1}
	}
	return nil
}

func parseError(err error) error {
	var pe *parser.Error
	if errors.As(err, &pe) {
		return &SyntaxError{Message: pe.Message, Position: pe.Cursorpos}
	}
	return fmt.Errorf("parsing sql: %w", err)
}
