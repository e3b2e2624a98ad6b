package sshfacts

import "strings"

// parsed is what one command text (the whole command, or the body of a
// substitution) runs: its simple commands' arguments in order, each
// followed by the commands of the substitutions in its words, and its
// assignments.
type parsed struct {
	commands [][]string
	// literal is, for each word of commands, whether the shell passes it
	// as one word with its text (no token.changes).
	literal     [][]bool
	assignments []string
	// simple counts the simple commands at this level that do anything:
	// run a program, assign or redirect.
	simple int
	// words is every top-level word and operator, for Split; newlines
	// marks which of them are newline operators (a word can be "\n" too).
	words    []string
	newlines []bool
}

func (p *parsed) keep(tok token) {
	p.words = append(p.words, tok.text)
	p.newlines = append(p.newlines, tok.kind == tokOp && tok.text == "\n")
}

// split returns the top-level words and operators with leading and trailing
// newline operators dropped and runs of them made one.
func (p *parsed) split() []string {
	var out []string
	pending := false
	for i, w := range p.words {
		if p.newlines[i] {
			pending = len(out) > 0
			continue
		}
		if pending {
			out = append(out, "\n")
			pending = false
		}
		out = append(out, w)
	}
	return out
}

func (p *parsed) add(q parsed) {
	p.commands = append(p.commands, q.commands...)
	p.literal = append(p.literal, q.literal...)
	p.assignments = append(p.assignments, q.assignments...)
}

// reserved words of POSIX sh and bash. They are special only as the first
// word of a command, unquoted.
var reserved = map[string]bool{
	"!": true, "{": true, "}": true, "if": true, "then": true, "else": true,
	"elif": true, "fi": true, "while": true, "until": true, "do": true,
	"done": true, "case": true, "esac": true, "for": true, "in": true,
	"select": true, "function": true, "time": true, "coproc": true,
	"[[": true, "]]": true,
}

// simpleCommand is the simple command being read.
type simpleCommand struct {
	assignments []string
	argv        []string
	literal     []bool
	inner       parsed
	redirected  bool
}

func (c *simpleCommand) empty() bool {
	return len(c.assignments) == 0 && len(c.argv) == 0 && !c.redirected
}

// parse reads tokens from l to its end and groups them into simple
// commands. It is not a shell grammar: it knows the separators, the
// redirections, assignments and reserved words, and enough of for, case,
// select and function to keep their names and patterns out of the
// commands. keepWords records every top-level token for Split.
func parse(l *lexer, keepWords bool) (parsed, error) {
	var (
		p   parsed
		cur simpleCommand
		// skipWords: words up to the next separator are not commands
		// (after for, select).
		skipWords bool
		// skipName: the next word is a function's name.
		skipName bool
		// afterTime: time may be followed by its -p option.
		afterTime bool
		// coprocName: after coproc, the first word may name the
		// coprocess, and a { after it opens the command.
		coprocName bool
		// caseDepth counts open case statements; inPattern is true while
		// reading a case pattern, up to its ')'.
		caseDepth int
		inPattern bool
		// wantCaseIn: after case, the word and then "in" come.
		wantCaseIn bool
	)
	finish := func() {
		if !cur.empty() {
			p.simple++
		}
		p.assignments = append(p.assignments, cur.assignments...)
		if len(cur.argv) > 0 {
			p.commands = append(p.commands, cur.argv)
			p.literal = append(p.literal, cur.literal)
		}
		p.add(cur.inner)
		cur = simpleCommand{}
		skipWords, skipName, afterTime, coprocName = false, false, false, false
	}
	for {
		tok, err := l.next()
		if err != nil {
			return parsed{}, err
		}
		if tok.kind == tokEOF {
			break
		}
		if keepWords {
			p.keep(tok)
		}
		if tok.kind == tokOp {
			op := tok.text
			switch {
			case isRedirection(op):
				l.st.redirection = true
				cur.redirected = true
				// The next word is the redirection's target, not an
				// argument.
				target, err := l.next()
				if err != nil {
					return parsed{}, err
				}
				if target.kind == tokEOF {
					continue
				}
				if keepWords {
					p.keep(target)
				}
				if target.kind == tokWord {
					cur.inner.add(target.inner)
					continue
				}
				// A redirection without a target is a syntax error to the
				// shell; the operator read in its place still separates.
				op = target.text
				if isRedirection(op) {
					continue
				}
			}
			if op != ";" && op != "\n" {
				l.st.compound = true
			}
			finish()
			// In case's syntax only these operators may come before "in"
			// or inside a pattern; after any other the shell reports a
			// syntax error, and reading on as commands lists more, never
			// less.
			if op != "\n" {
				wantCaseIn = false
			}
			if inPattern {
				if op != "|" && op != "(" && op != "\n" {
					inPattern = false
				}
				continue
			}
			if caseDepth > 0 && (op == ";;" || op == ";&" || op == ";;&") {
				inPattern = true
			}
			continue
		}

		cur.inner.add(tok.inner)
		switch {
		case inPattern:
			if tok.plain && tok.text == "esac" {
				caseDepth--
				inPattern = false
			}
			continue
		case wantCaseIn:
			if tok.plain && tok.text == "in" {
				wantCaseIn = false
				inPattern = true
			}
			continue
		case skipWords:
			continue
		case skipName:
			skipName = false
			continue
		}
		if coprocName && len(cur.argv) == 1 && tok.plain && tok.text == "{" {
			// coproc NAME { cmd; }: NAME stays listed (it may be the
			// program of coproc NAME args), and the group's commands
			// follow.
			finish()
			continue
		}
		coprocName = coprocName && len(cur.argv) == 0
		if len(cur.argv) == 0 {
			if afterTime && tok.plain && tok.text == "-p" {
				afterTime = false
				continue
			}
			afterTime = false
			if cur.empty() && tok.plain && reserved[tok.text] {
				l.st.compound = true
				switch tok.text {
				case "[[":
					cur.argv = append(cur.argv, tok.text)
					cur.literal = append(cur.literal, true)
				case "for", "select":
					skipWords = true
				case "function":
					skipName = true
				case "case":
					caseDepth++
					wantCaseIn = true
				case "esac":
					if caseDepth > 0 {
						caseDepth--
					}
				case "time":
					afterTime = true
				case "coproc":
					coprocName = true
				}
				continue
			}
			if isAssignment(tok) {
				if name, _, _ := strings.Cut(tok.text, "="); strings.Contains(name, "[") {
					// a[i]=v evaluates i as arithmetic, where
					// bash runs the $(...) of a[$(cmd)] in a
					// variable's value.
					l.st.compound = true
				}
				cur.assignments = append(cur.assignments, tok.text)
				continue
			}
		}
		cur.argv = append(cur.argv, tok.text)
		cur.literal = append(cur.literal, !tok.changes)
	}
	finish()
	return p, nil
}

// isAssignment reports whether a word at the start of a command assigns a
// variable: NAME=value, NAME+=value or NAME[index]=value, with the name and
// the = written unquoted.
func isAssignment(tok token) bool {
	prefix := tok.text[:tok.plainPrefix]
	eq := strings.IndexByte(prefix, '=')
	if eq <= 0 {
		return false
	}
	name := prefix[:eq]
	name = strings.TrimSuffix(name, "+")
	if open := strings.IndexByte(name, '['); open >= 0 {
		if !strings.HasSuffix(name, "]") || open == 0 {
			return false
		}
		name = name[:open]
	}
	if name == "" || !isNameStart(name[0]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		if !isNameChar(name[i]) {
			return false
		}
	}
	return true
}
