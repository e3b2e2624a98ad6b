package sshfacts

import (
	"fmt"
	"strings"
)

type tokenKind uint8

const (
	tokEOF tokenKind = iota
	tokWord
	tokOp
)

// token is one word or operator of a command. For words, text is the value
// after quote removal with every expansion kept as written.
type token struct {
	kind tokenKind
	text string

	// plain is true when the whole word was written as unquoted literal
	// characters: only such a word can be a reserved word.
	plain bool
	// plainPrefix is how many leading bytes of text were written as
	// unquoted literal characters: an assignment's NAME= must lie there.
	plainPrefix int
	// quoted is true when some part of the word was quoted or escaped.
	quoted bool
	// tildeAfterSep is an unquoted ~ right after an unquoted = or :, which
	// the shell expands only in a word that looks like an assignment.
	tildeAfterSep bool
	// changes is true when the shell may change the word: make it other
	// text than text, or several words, or none. That is any expansion or
	// substitution, quoted or not ($x, "${x}", $(...), `...`, <(...)),
	// $'...' and $"...", an unquoted glob (*, ?, [...]), brace expansion
	// ({a,b}, {1..3}) and a ~ or zsh's =cmd the shell expands. A word
	// without is one word whose value is text: quotes and backslashes
	// only keep characters literal.
	changes bool
	// inner holds what the substitutions inside the word run.
	inner parsed
}

// state is shared by every lexer working on one command: the limits and the
// facts found at any nesting level.
type state struct {
	tokens int

	// compound is set for syntax beyond one simple command, and for
	// expansions that make the shell evaluate text (see evaluates).
	compound     bool
	substitution bool
	expansion    bool
	glob         bool
	redirection  bool
}

type heredoc struct {
	delim     string
	quoted    bool
	stripTabs bool
}

// lexer splits s into tokens the way a POSIX shell's tokenizer does. A lexer
// with closeParen reads the body of $( ... ) or <( ... ) and stops at the
// ')' that closes it.
type lexer struct {
	st    *state
	s     string
	i     int
	depth int

	closeParen bool
	parens     int

	heredocs  []heredoc
	wantDelim string // the here-document operator whose delimiter comes next
}

// operators, longest first among those sharing a prefix.
var operators = []string{
	";;&", ";;", ";&", ";",
	"&&", "&>>", "&>", "&",
	"||", "|&", "|",
	"(", ")",
	"<<<", "<<-", "<<", "<&", "<>", "<",
	">>", ">&", ">|", ">",
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func isOperatorStart(c byte) bool {
	switch c {
	case ';', '&', '|', '(', ')', '<', '>':
		return true
	}
	return false
}

func isNameStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isNameChar(c byte) bool { return isNameStart(c) || ('0' <= c && c <= '9') }

// isRedirection reports whether an operator (with its IO number, if any)
// redirects.
func isRedirection(op string) bool {
	op = strings.TrimLeft(op, "0123456789")
	return op != "" && (op[0] == '<' || op[0] == '>' || op == "&>" || op == "&>>")
}

func (l *lexer) peek(off int) byte {
	if l.i+off < len(l.s) {
		return l.s[l.i+off]
	}
	return 0
}

func (l *lexer) enter() error {
	l.depth++
	if l.depth > MaxDepth {
		return fmt.Errorf("reading a construct nested %d deep: %w", l.depth, ErrTooComplex)
	}
	return nil
}

func (l *lexer) leave() { l.depth-- }

// next returns the next token, or tokEOF at the end of the text or, for a
// closeParen lexer, at the closing ')' (left unread, so the caller can tell
// the two apart).
func (l *lexer) next() (token, error) {
	for l.i < len(l.s) {
		c := l.s[l.i]
		switch {
		case isBlank(c):
			l.i++
			continue
		case c == '\\' && l.peek(1) == '\n':
			l.i += 2 // a line continuation between words is only a blank
			continue
		case c == '#':
			// A comment runs to the end of the line; the newline stays.
			if j := strings.IndexByte(l.s[l.i:], '\n'); j >= 0 {
				l.i += j
			} else {
				l.i = len(l.s)
			}
			continue
		}
		if err := l.count(); err != nil {
			return token{}, err
		}
		if c == '\n' {
			l.i++
			l.wantDelim = ""
			l.readHeredocs()
			return token{kind: tokOp, text: "\n"}, nil
		}
		if isOperatorStart(c) && !((c == '<' || c == '>') && l.peek(1) == '(') {
			if c == ')' && l.closeParen && l.parens == 0 {
				return token{kind: tokEOF}, nil
			}
			return l.operator(""), nil
		}
		tok, err := l.word()
		if err != nil {
			return token{}, err
		}
		if tok.plain && tok.text != "" && strings.Trim(tok.text, "0123456789") == "" &&
			(l.peek(0) == '<' || l.peek(0) == '>') && l.peek(1) != '(' {
			// An IO number: 2>file redirects descriptor 2.
			return l.operator(tok.text), nil
		}
		if l.wantDelim != "" {
			if strings.ContainsAny(tok.text, "$`") {
				// bash decodes $'E\x4fF' to EOF, dash reads $'EOF' as
				// $EOF: where the body ends depends on the shell, and a
				// command after the wrong end would be hidden.
				return token{}, fmt.Errorf("reading the here-document delimiter %q: %w", tok.text, ErrHeredocDelimiter)
			}
			l.heredocs = append(l.heredocs, heredoc{
				delim:     tok.text,
				quoted:    tok.quoted,
				stripTabs: l.wantDelim == "<<-",
			})
			l.wantDelim = ""
		}
		return tok, nil
	}
	return token{kind: tokEOF}, nil
}

func (l *lexer) count() error {
	l.st.tokens++
	if l.st.tokens > MaxWords {
		return fmt.Errorf("reading more than %d words: %w", MaxWords, ErrTooComplex)
	}
	return nil
}

// operator reads the operator at l.i; ioNumber is the descriptor written
// before it, if any.
func (l *lexer) operator(ioNumber string) token {
	for _, op := range operators {
		if strings.HasPrefix(l.s[l.i:], op) {
			l.i += len(op)
			switch op {
			case "(":
				l.parens++
			case ")":
				if l.parens > 0 {
					l.parens--
				}
			}
			if op == "<<" || op == "<<-" {
				l.wantDelim = op
			} else {
				l.wantDelim = ""
			}
			return token{kind: tokOp, text: ioNumber + op}
		}
	}
	panic("sshfacts: operator called off an operator") // isOperatorStart guards every call
}

// readHeredocs skips the bodies of the here-documents whose operators were on
// the line just ended. A body with an unquoted delimiter is expanded by the
// shell, so its $ and ` count as expansions and substitutions.
func (l *lexer) readHeredocs() {
	for _, h := range l.heredocs {
		for l.i < len(l.s) {
			line := l.s[l.i:]
			end := strings.IndexByte(line, '\n')
			if end >= 0 {
				line = line[:end]
				l.i += end + 1
			} else {
				l.i = len(l.s)
			}
			if h.stripTabs {
				line = strings.TrimLeft(line, "\t")
			}
			if line == h.delim {
				break
			}
			if !h.quoted {
				if strings.Contains(line, "$(") || strings.Contains(line, "`") {
					l.st.substitution = true
				}
				if strings.Contains(line, "$") {
					l.st.expansion = true
				}
			}
		}
	}
	l.heredocs = l.heredocs[:0]
}

// wordScan tracks, while a word is read, what its unquoted characters mean
// to the shell beyond themselves.
type wordScan struct {
	b           strings.Builder
	tok         token
	plain       bool
	prev        byte // the last unquoted literal character, 0 after anything else
	braceOpen   bool
	braceSep    bool
	bracketSeen bool
}

// notPlain marks the end of the word's plain prefix.
func (w *wordScan) notPlain() {
	if w.plain {
		w.tok.plainPrefix = w.b.Len()
		w.plain = false
	}
	w.prev = 0
}

// literal adds an unquoted literal character.
func (l *lexer) literal(w *wordScan, c byte, atStart bool) {
	switch c {
	case '*', '?':
		l.st.glob = true
		w.tok.changes = true
	case '[':
		w.bracketSeen = true
	case ']':
		if w.bracketSeen {
			l.st.glob = true
			w.tok.changes = true
		}
	// Brace expansion (a{b,c} is two words): bash does not pair braces
	// the simple way ({a}:,} expands too), so any { then , or .. then }
	// counts.
	case '{':
		w.braceOpen = true
	case ',':
		w.braceSep = w.braceSep || w.braceOpen
	case '.':
		w.braceSep = w.braceSep || (w.braceOpen && w.prev == '.')
	case '}':
		if w.braceSep {
			l.st.expansion = true
			w.tok.changes = true
		}
	case '=':
		if atStart {
			l.st.expansion = true // zsh replaces =ls with the path of ls
			w.tok.changes = true
		}
	case '~':
		if atStart {
			l.st.expansion = true
			w.tok.changes = true
		} else if w.prev == '=' || w.prev == ':' {
			w.tok.tildeAfterSep = true
		}
	}
	w.b.WriteByte(c)
	w.prev = c
}

// word reads one word starting at l.i.
func (l *lexer) word() (token, error) {
	start := l.i
	w := &wordScan{plain: true}
	w.tok.kind = tokWord
	for l.i < len(l.s) {
		c := l.s[l.i]
		if isBlank(c) || c == '\n' {
			break
		}
		if isOperatorStart(c) {
			if (c == '<' || c == '>') && l.peek(1) == '(' {
				w.notPlain()
				if err := l.substitution(w, l.i+2, l.i); err != nil {
					return token{}, err
				}
				continue
			}
			break
		}
		switch c {
		case '\'':
			end := strings.IndexByte(l.s[l.i+1:], '\'')
			if end < 0 {
				return token{}, fmt.Errorf("reading the single quote at byte %d: %w", l.i, ErrUnterminated)
			}
			w.notPlain()
			w.tok.quoted = true
			w.b.WriteString(l.s[l.i+1 : l.i+1+end])
			l.i += end + 2
		case '"':
			w.notPlain()
			w.tok.quoted = true
			if err := l.doubleQuoted(w); err != nil {
				return token{}, err
			}
		case '\\':
			if l.i+1 >= len(l.s) {
				return token{}, fmt.Errorf("reading byte %d: %w", l.i, ErrTrailingBackslash)
			}
			if l.s[l.i+1] == '\n' {
				l.i += 2 // a line continuation is removed, the word goes on
				continue
			}
			w.notPlain()
			w.tok.quoted = true
			w.b.WriteByte(l.s[l.i+1])
			l.i += 2
		case '$':
			if err := l.dollar(w, false); err != nil {
				return token{}, err
			}
		case '`':
			w.notPlain()
			if err := l.backtick(w, false); err != nil {
				return token{}, err
			}
		default:
			l.literal(w, c, l.i == start)
			l.i++
		}
	}
	if w.plain {
		w.tok.plainPrefix = w.b.Len()
		w.tok.plain = !w.tok.quoted
	}
	w.tok.text = w.b.String()
	if w.tok.tildeAfterSep && isAssignment(w.tok) {
		// bash expands the ~ of a word that looks like an assignment
		// wherever the word is: echo x=~ prints x=/root.
		l.st.expansion = true
		w.tok.changes = true
	}
	return w.tok, nil
}

// doubleQuoted reads a double-quoted string at l.i into w: a backslash
// escapes only $ ` " \ and newline there.
func (l *lexer) doubleQuoted(w *wordScan) error {
	open := l.i
	l.i++
	for l.i < len(l.s) {
		switch c := l.s[l.i]; c {
		case '"':
			l.i++
			return nil
		case '\\':
			switch l.peek(1) {
			case '$', '`', '"', '\\':
				w.b.WriteByte(l.s[l.i+1])
				l.i += 2
			case '\n':
				l.i += 2
			default:
				w.b.WriteByte('\\')
				l.i++
			}
		case '$':
			if err := l.dollar(w, true); err != nil {
				return err
			}
		case '`':
			if err := l.backtick(w, true); err != nil {
				return err
			}
		default:
			w.b.WriteByte(c)
			l.i++
		}
	}
	return fmt.Errorf("reading the double quote at byte %d: %w", open, ErrUnterminated)
}

// dollar reads what starts with $ at l.i. Expansions go into the word as
// written; a $ that starts nothing is a literal $.
func (l *lexer) dollar(w *wordScan, inDouble bool) error {
	start := l.i
	// The shell removes line continuations before it reads a $, so
	// $\<newline>HOME is $HOME: look past them.
	at := l.skipContinuations(start + 1)
	n := l.at(at)
	switch {
	case n == '(' && l.at(l.skipContinuations(at+1)) == '(':
		w.notPlain()
		if !l.arithmetic(l.skipContinuations(at+1) + 1) {
			// $((a) ...) is a command substitution starting with a
			// subshell, as the shell decides when it is not arithmetic.
			return l.substitution(w, at+1, start)
		}
		l.evaluates()
	case n == '(':
		w.notPlain()
		return l.substitution(w, at+1, start)
	case n == '{':
		w.notPlain()
		if !l.inertParameter(at + 1) {
			l.evaluates()
		}
		if err := l.braceParameter(w, at+1, inDouble); err != nil {
			return err
		}
		l.st.expansion = true
		l.subscriptAfter()
		if c := l.at(at + 1); isBlank(c) || c == '\n' || c == '|' {
			// bash 5.3 runs ${ cmd; } and ${| cmd; } in the current
			// shell: a substitution, whose commands are not listed.
			l.st.substitution = true
		}
	case n == '\'' && !inDouble:
		// $'...' decodes escapes (bash, and newer dash): \x72m is rm.
		w.notPlain()
		j := at + 1
		for ; j < len(l.s) && l.s[j] != '\''; j++ {
			if l.s[j] == '\\' {
				j++
			}
		}
		if j >= len(l.s) {
			return fmt.Errorf("reading the $' quote at byte %d: %w", start, ErrUnterminated)
		}
		l.i = j + 1
		l.st.expansion = true
	case n == '"' && !inDouble:
		// $"..." is translated by the shell's locale.
		w.notPlain()
		l.i = at
		scratch := &wordScan{}
		if err := l.doubleQuoted(scratch); err != nil {
			return err
		}
		w.tok.inner.add(scratch.tok.inner)
		// The translation comes from a message catalog, which the
		// environment chooses (TEXTDOMAINDIR), and bash expands it as a
		// double-quoted string: $(...) in it runs.
		l.evaluates()
	case isNameStart(n):
		w.notPlain()
		l.i = at + 1
		for l.i < len(l.s) && isNameChar(l.s[l.i]) {
			l.i++
		}
		l.st.expansion = true
		l.subscriptAfter()
	case ('0' <= n && n <= '9') || strings.IndexByte("@*#?-$!", n) >= 0:
		w.notPlain()
		l.i = at + 1
		l.st.expansion = true
		l.subscriptAfter()
	default:
		switch n {
		case '[':
			l.evaluates() // $[...] is bash's old arithmetic
			w.tok.changes = true
		case '~', '=', '^':
			// zsh's $~x globs x's value, and a glob qualifier
			// *(e:cmd:) runs cmd; $=x and $^x change how it splits.
			l.evaluates()
			w.tok.changes = true
		}
		if inDouble {
			w.b.WriteByte('$')
			l.i++
			return nil
		}
		l.literal(w, '$', false)
		l.i++
		return nil
	}
	w.tok.changes = true // a substitution marks it too
	w.b.WriteString(l.s[start:l.i])
	return nil
}

// skipContinuations returns the index of the first byte at or after i that
// does not start a line continuation.
func (l *lexer) skipContinuations(i int) int {
	for strings.HasPrefix(l.s[min(i, len(l.s)):], "\\\n") {
		i += 2
	}
	return i
}

// at returns the byte at i, 0 past the end.
func (l *lexer) at(i int) byte {
	if i < len(l.s) {
		return l.s[i]
	}
	return 0
}

// substitution reads a command substitution whose body starts at body and
// whose text (to be kept in the word) starts at start, analysing the body
// as a command of its own.
func (l *lexer) substitution(w *wordScan, body, start int) error {
	if err := l.enter(); err != nil {
		return err
	}
	defer l.leave()
	sub := &lexer{st: l.st, s: l.s, i: body, depth: l.depth, closeParen: true}
	p, err := parse(sub, false)
	if err != nil {
		return err
	}
	if sub.i >= len(l.s) || l.s[sub.i] != ')' {
		return fmt.Errorf("reading the substitution at byte %d: %w", start, ErrUnterminated)
	}
	l.i = sub.i + 1
	l.st.substitution = true
	w.tok.changes = true
	w.tok.inner.add(p)
	w.b.WriteString(l.s[start:l.i])
	return nil
}

// backtick reads a `...` substitution. Its body is unescaped first (\$ \`
// \\, and \" inside double quotes), as the shell does, then analysed.
func (l *lexer) backtick(w *wordScan, inDouble bool) error {
	if err := l.enter(); err != nil {
		return err
	}
	defer l.leave()
	start := l.i
	var body strings.Builder
	j := l.i + 1
	for ; j < len(l.s) && l.s[j] != '`'; j++ {
		c := l.s[j]
		if c == '\\' && j+1 < len(l.s) {
			n := l.s[j+1]
			if n == '$' || n == '`' || n == '\\' || (inDouble && n == '"') {
				body.WriteByte(n)
				j++
				continue
			}
		}
		body.WriteByte(c)
	}
	if j >= len(l.s) {
		return fmt.Errorf("reading the backquote at byte %d: %w", start, ErrUnterminated)
	}
	sub := &lexer{st: l.st, s: body.String(), depth: l.depth}
	p, err := parse(sub, false)
	if err != nil {
		return err
	}
	l.i = j + 1
	l.st.substitution = true
	w.tok.changes = true
	w.tok.inner.add(p)
	w.b.WriteString(l.s[start:l.i])
	return nil
}

// braceParameter reads ${...}, which may hold quotes, expansions and
// substitutions of its own.
func (l *lexer) braceParameter(w *wordScan, body int, inDouble bool) error {
	if err := l.enter(); err != nil {
		return err
	}
	defer l.leave()
	start := l.i
	l.i = body
	scratch := &wordScan{}
	for l.i < len(l.s) {
		switch l.s[l.i] {
		case '}':
			l.i++
			w.tok.inner.add(scratch.tok.inner)
			return nil
		case '\\':
			l.i += 2
		case '\'':
			if inDouble {
				l.i++
				continue
			}
			end := strings.IndexByte(l.s[l.i+1:], '\'')
			if end < 0 {
				return fmt.Errorf("reading the single quote at byte %d: %w", l.i, ErrUnterminated)
			}
			l.i += end + 2
		case '"':
			if err := l.doubleQuoted(scratch); err != nil {
				return err
			}
		case '$':
			if err := l.dollar(scratch, inDouble); err != nil {
				return err
			}
		case '`':
			if err := l.backtick(scratch, inDouble); err != nil {
				return err
			}
		default:
			l.i++
		}
	}
	return fmt.Errorf("reading the parameter expansion at byte %d: %w", start, ErrUnterminated)
}

// evaluates records an expansion that makes the shell evaluate text as
// code: arithmetic, where bash runs the $(...) of an array subscript
// (a[$(cmd)]) in a variable's value, or in text taken from the command
// itself (${BASH_EXECUTION_STRING:1:9}); indirection (${!x}); prompt
// expansion (${x@P}). The command then runs more than its listed
// programs, which makes it compound, as a substitution does.
func (l *lexer) evaluates() {
	l.st.expansion = true
	l.st.compound = true
}

// subscriptAfter marks a [ right after $name or ${name} (l.i): zsh reads
// it as a subscript, evaluated as arithmetic. In bash it is a glob.
func (l *lexer) subscriptAfter() {
	if l.at(l.skipContinuations(l.i)) == '[' {
		l.evaluates()
	}
}

// inertParameter reports whether the ${...} whose body starts at body is
// one of the forms that only substitute text, given words that do too
// (their own expansions are judged as they are read):
//
//	${P}  ${#P}  ${P-w} ${P:-w} ${P+w} ${P:+w} ${P?w} ${P:?w}
//	${P#w} ${P##w} ${P%w} ${P%%w} ${P/w/w} ${P^w} ${P,w} ...
//
// where P is a name, a positional parameter or one of @ * # ? - $. Every
// other form evaluates text or may: a subscript ${a[i]} and an offset
// ${x:i:n} are arithmetic, ${!x} reads a name (with its subscript) from a
// value, ${x@P} runs the $(...) of a prompt, ${x:=w} assigns, zsh's
// ${(e)x} evaluates, and a form not listed is not read here at all.
func (l *lexer) inertParameter(body int) bool {
	p := body
	if l.at(p) == '#' {
		if l.at(p+1) == '}' {
			return true // ${#}
		}
		end, ok := l.parameterName(p + 1)
		return ok && l.at(end) == '}'
	}
	end, ok := l.parameterName(p)
	if !ok {
		return false
	}
	switch l.at(end) {
	case '}', '-', '+', '?', '#', '%', '/', '^', ',':
		return true
	case ':':
		switch l.at(end + 1) {
		case '-', '+', '?':
			return true
		}
	}
	return false
}

// parameterName reads the parameter of ${...} at i: a name, the digits of
// a positional parameter or one special parameter (not !, which starts an
// indirection). It returns the index after it.
func (l *lexer) parameterName(i int) (int, bool) {
	c := l.at(i)
	switch {
	case isNameStart(c):
		for i++; isNameChar(l.at(i)); i++ {
		}
		return i, true
	case '0' <= c && c <= '9':
		for i++; '0' <= l.at(i) && l.at(i) <= '9'; i++ {
		}
		return i, true
	case c != 0 && strings.IndexByte("@*#?-$", c) >= 0:
		return i + 1, true
	}
	return i, false
}

// arithmetic reads $(( ... )) from its body on. It reports false, having
// moved l.i, when the parentheses do not close as arithmetic does; the
// caller then reads a command substitution instead, as the shell does. The body is only scanned
// for its end, never analysed: analysing it and then, on a false, analysing
// it again as a substitution would double the work at every nesting level.
// A substitution inside arithmetic is flagged, not listed.
func (l *lexer) arithmetic(body int) bool {
	l.i = body
	parens := 0
	for l.i < len(l.s) {
		switch l.s[l.i] {
		case '(':
			parens++
			l.i++
		case ')':
			if parens > 0 {
				parens--
				l.i++
				continue
			}
			if l.peek(1) != ')' {
				return false
			}
			l.i += 2
			return true
		case '\\':
			l.i += 2
		case '\'', '"', '`':
			end := strings.IndexByte(l.s[l.i+1:], l.s[l.i])
			if end < 0 {
				return false
			}
			if l.s[l.i] == '`' {
				l.st.substitution = true
			}
			l.i += end + 2
		case '$':
			if l.peek(1) == '(' {
				l.st.substitution = true
			}
			l.i++
		default:
			l.i++
		}
	}
	return false
}
