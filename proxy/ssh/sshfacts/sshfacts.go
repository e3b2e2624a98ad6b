package sshfacts

import (
	"errors"
	"fmt"
	"strings"
)

// Limits on what Split and Analyze read. A command over them is refused,
// not cut short: a fact about part of a command is a wrong fact.
const (
	// MaxCommandLen is the longest command read, in bytes.
	MaxCommandLen = 256 << 10
	// MaxWords is how many words and operators a command may have, those
	// inside substitutions included.
	MaxWords = 4096
	// MaxDepth is how deeply substitutions, ${...} and $((...)) may nest.
	MaxDepth = 64
)

var (
	// ErrUnterminated: a quote, ${, $(, $((, or backquote is not closed.
	ErrUnterminated = errors.New("unterminated quote or substitution")
	// ErrTrailingBackslash: the command ends in a backslash that escapes
	// nothing.
	ErrTrailingBackslash = errors.New("backslash at the end of the command")
	// ErrNUL: the command holds a NUL byte. sshd refuses such a command,
	// and a shell given one would stop reading at the NUL.
	ErrNUL = errors.New("NUL byte in the command")
	// ErrTooLong: the command is longer than MaxCommandLen.
	ErrTooLong = errors.New("command too long")
	// ErrTooComplex: the command has more than MaxWords words or nests
	// deeper than MaxDepth.
	ErrTooComplex = errors.New("command too complex")
	// ErrHeredocDelimiter: a here-document's delimiter holds a $ or `.
	// The shells disagree on where such a body ends (bash decodes
	// <<$'E\x4fF' to EOF, dash reads <<$'EOF' as $EOF), so the commands
	// after it cannot be known.
	ErrHeredocDelimiter = errors.New("here-document delimiter with $ or `")
)

// Facts is what Analyze tells policy about an SSH exec command. Slices are
// nil when empty.
type Facts struct {
	// Command is the command as the client sent it (ssh.command).
	Command string
	// Words is Split(Command): every word and operator at the top level.
	Words []string
	// Argv is the first command's arguments, Commands[0] (ssh.argv): for a
	// Literal command, exactly the argv the shell passes to the program.
	Argv []string
	// Program is the base name of Argv[0] ("/bin/rm" → "rm"), the text
	// after its last slash; "" when there is no command.
	Program string
	// Assignments are the NAME=value words before the commands' names
	// (FOO=1 rm x assigns FOO=1 and runs rm), in order, those inside
	// substitutions included. They set the program's environment.
	Assignments []string
	// Commands is every simple command's arguments, assignments and
	// redirections left out: the top-level commands in order, each
	// followed by the commands of the substitutions in its words.
	Commands [][]string
	// Programs is the base name of each command's first word, in the
	// order of Commands.
	Programs []string
	// LiteralWords says, for each word of each of Commands, whether the
	// shell passes it on as exactly that one word: only quote removal
	// applies to it ('-exec', "x", \;, a{b}, {}). A word is not literal
	// when the shell may change its text or make it several words or
	// none: any expansion or substitution, quoted or not ($x, "${x}",
	// $(...)), $'...' and $"...", an unquoted glob (*, ?, [...]), brace
	// expansion ({a,b}, {1..3}), and a ~ or =cmd the shell expands. A
	// program that reads its arguments as options or commands (find
	// -exec, timeout, nice) may see other words than Commands shows
	// where one is not literal: find {-exec,rm,x,\;} runs rm.
	LiteralWords [][]bool

	// Compound: the command is more than one simple command with plain
	// words: several commands (; & | && || newline), a subshell, group or
	// other reserved word (if, for, while, case, !, {, [[, ((, ...), a
	// redirection, a substitution, or an expansion that makes the shell
	// evaluate text, which can run commands no word shows: arithmetic
	// ($((...)), $[...], ${x:1:2}, ${a[i]}, a[i]=v; bash runs the $(...)
	// of a subscript a[$(cmd)] found in a variable's value), ${!x},
	// ${x@P}, ${x:=w}, $"..." and any ${...} other than ${P}, ${#P} and
	// ${P op word} with op one of - + ? :- :+ :? # % / ^ , (doubled
	// too) and an inert word (see the package doc). $name, ${name}, $1,
	// $'...', ~ and a{b,c} only substitute text (Expansion). A single
	// trailing ; or newline does not count.
	Compound bool
	// Substitution: $(...), `...`, <(...) or >(...) runs a command whose
	// output becomes part of the command (here-documents included).
	// Substitutions inside $((...)) are flagged but their commands are not
	// in Commands.
	Substitution bool
	// Expansion: the shell changes some word before running it: $name,
	// ${...}, $((...)), $'...', $"...", ~ (at a word's start or, in an
	// assignment, after = or :), or brace expansion a{b,c}. Such words
	// are in the facts as written.
	Expansion bool
	// Glob: an unquoted *, ? or [...] may expand to file names. Such words
	// are in the facts as written.
	Glob bool
	// Redirection: some command redirects its input or output (< > >>
	// 2>&1 <<EOF ...). Redirections are not in Argv.
	Redirection bool
}

// Literal reports whether Argv is exactly what the shell would run: one
// simple command whose words the shell does not change. Assignments may
// still set the program's environment (LD_PRELOAD=... ls is Literal).
func (f Facts) Literal() bool {
	return !f.Compound && !f.Expansion && !f.Glob
}

func newLexer(command string) (*lexer, error) {
	if len(command) > MaxCommandLen {
		return nil, fmt.Errorf("reading a command of %d bytes: %w", len(command), ErrTooLong)
	}
	if i := strings.IndexByte(command, 0); i >= 0 {
		return nil, fmt.Errorf("reading byte %d: %w", i, ErrNUL)
	}
	return &lexer{st: &state{}, s: command}, nil
}

// Split splits a command into words the way a POSIX shell's tokenizer does.
//
// Blanks (space, tab) separate words. Single quotes keep everything
// literally; in double quotes a backslash escapes only $ ` " \ and newline;
// outside quotes a backslash escapes the next character, and a backslash
// before a newline is removed. Quoted and unquoted parts next to each other
// form one word ("a"'b'c is abc), and empty quotes are an empty word. A #
// at the start of a word begins a comment, to the end of the line.
//
// Operators (; & | && || ( ) < > >> 2>&1 ...) end words and are returned
// as words of their own, and so is a newline between commands (leading and
// trailing newlines are dropped, runs of them are one). Expansions and
// substitutions are not performed: $HOME, ${x}, $(cmd), `cmd` stay in their
// word as written, with quotes inside a substitution kept. Here-document
// bodies are not words. Use Analyze to learn what the shell would do beyond
// splitting.
//
// Split fails exactly when Analyze does.
func Split(command string) ([]string, error) {
	l, err := newLexer(command)
	if err != nil {
		return nil, err
	}
	p, err := parse(l, true)
	if err != nil {
		return nil, err
	}
	return p.split(), nil
}

// Analyze splits a command as Split does and reports what a POSIX shell
// (sh -c, or the user's login shell running an SSH exec request) would do
// with it. Its error is Split's.
func Analyze(command string) (Facts, error) {
	l, err := newLexer(command)
	if err != nil {
		return Facts{}, err
	}
	p, err := parse(l, true)
	if err != nil {
		return Facts{}, err
	}
	st := l.st
	f := Facts{
		Command:      command,
		Words:        p.split(),
		Assignments:  p.assignments,
		Commands:     p.commands,
		LiteralWords: p.literal,
		Substitution: st.substitution,
		Expansion:    st.expansion,
		Glob:         st.glob,
		Redirection:  st.redirection,
		Compound:     st.compound || st.substitution || st.redirection || p.simple > 1,
	}
	for _, argv := range f.Commands {
		f.Programs = append(f.Programs, baseName(argv[0]))
	}
	if len(f.Commands) > 0 {
		f.Argv = f.Commands[0]
		f.Program = f.Programs[0]
	}
	return f, nil
}

func baseName(word string) string {
	return word[strings.LastIndexByte(word, '/')+1:]
}

// Quote returns word quoted for a POSIX shell, so that Split (and a shell)
// reads it back as exactly one word with the same value. Words of only
// letters, digits and _ @ % + : , . / - that are not reserved words are
// returned as they are; anything else is single-quoted, a ' inside written
// as a closing quote, an escaped quote and an opening quote.
func Quote(word string) string {
	if word != "" && !reserved[word] && strings.Trim(word, safeChars) == "" {
		return word
	}
	return "'" + strings.ReplaceAll(word, "'", `'\''`) + "'"
}

const safeChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+:,./-"

// Join quotes each word with Quote and joins them with spaces: a command
// that Split reads back as words.
func Join(words []string) string {
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = Quote(w)
	}
	return strings.Join(quoted, " ")
}
