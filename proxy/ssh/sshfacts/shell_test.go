package sshfacts

import (
	"context"
	"math/rand"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// randomCommands returns n commands of up to 14 pieces each, from pieces
// chosen for what the shell reads specially, that Analyze accepts and
// keep says to test. The seed is fixed, so a failure repeats.
func randomCommands(n int, keep func(string, Facts) bool) []string {
	pieces := []string{
		"a", "b", "A", "1", " ", "\t", "\n", "\r", "é", "'", "\"", "\\", "\\\n",
		"$", "`", "#", "~", "=", "x=", "*", "?", "[", "]", "{", "}", "{ ", "; }",
		",", ".", ":", "%", "@", "-", "^", "!", ";", "&", "|", "(", ")", "<", ">",
		"<<", "$(", "${", "if", "then", "fi", "do", "done", "in", "case", "esac",
	}
	r := rand.New(rand.NewSource(1))
	var out []string
	for tries := 0; tries < 1000*n && len(out) < n; tries++ {
		var b strings.Builder
		for k := 1 + r.Intn(14); k > 0; k-- {
			b.WriteString(pieces[r.Intn(len(pieces))])
		}
		c := b.String()
		// "set -- " goes in front of each command: one that starts with
		// a separator, a comment or a continuation would not follow it.
		if strings.TrimLeft(c, " \t\n;#") != c || strings.HasPrefix(c, "\\\n") || strings.Contains(c, "\n;") {
			continue
		}
		if f, err := Analyze(c); err == nil && keep(c, f) {
			out = append(out, c)
		}
	}
	return out
}

// TestRandomLiteralCommandsMatchShell compares, for random commands that
// Analyze calls Literal, the words with those the real shells read.
func TestRandomLiteralCommandsMatchShell(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a shell per command")
	}
	commands := randomCommands(300, func(_ string, f Facts) bool { return f.Literal() })
	for _, sh := range shells(t) {
		for _, c := range commands {
			f, _ := Analyze(c)
			want := append(append([]string(nil), f.Assignments...), f.Argv...)
			got, ok := shellWordsOrSyntaxError(t, sh, c)
			if ok && !reflect.DeepEqual(got, want) {
				t.Errorf("%s reads %q as %q, Analyze gives %q", sh, c, got, want)
			}
		}
	}
}

// TestRandomSimpleCommandsRunOnce runs random commands that Analyze does not
// call Compound in the real shells, traced (-x) with an empty PATH, and
// checks that the shell ran one simple command and no substitution.
func TestRandomSimpleCommandsRunOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a shell per command")
	}
	dir := t.TempDir()
	commands := randomCommands(300, func(_ string, f Facts) bool { return !f.Compound })
	for _, sh := range shells(t) {
		for _, c := range commands {
			cmd := exec.Command(sh, "-x", "-c", "set -- "+c+"\n")
			cmd.Env = []string{"PATH=" + dir}
			cmd.Dir = dir
			// Errors are expected (bad substitutions and the like); what
			// counts is what ran before them.
			out, _ := cmd.CombinedOutput()
			traced := 0
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "+") {
					traced++
				}
			}
			if traced > 1 {
				t.Errorf("%s ran more than one command for %q: %q", sh, c, out)
			}
		}
	}
}

// randomScript writes a random shell command of bash's grammar, nested up
// to depth: simple commands joined by lists and pipelines, inside groups,
// subshells, if, while, until, for, case, functions, coprocesses, with !,
// time, assignments, redirections, comments and line continuations. Loops
// break after one round.
func randomScript(r *rand.Rand, depth int) string {
	word := func() string {
		return []string{"a", "b", "c", "'q'", "\"d\"", "\\e", "a\\\nb", "x=1", "in", "do", "}"}[r.Intn(11)]
	}
	simple := func() string {
		var b strings.Builder
		if r.Intn(4) == 0 {
			b.WriteString("f=1 ")
		}
		b.WriteString([]string{"a", "b", "c", "'q'", "\"d\"", "\\e", "a\\\nb"}[r.Intn(7)])
		for k := r.Intn(3); k > 0; k-- {
			b.WriteString(" " + word())
		}
		if r.Intn(5) == 0 {
			b.WriteString([]string{" >o", " <i", " 2>&1", " >>o"}[r.Intn(4)])
		}
		if r.Intn(8) == 0 {
			b.WriteString(" # a comment; rm")
			b.WriteString("\n")
		}
		return b.String()
	}
	if depth == 0 {
		return simple()
	}
	sub := func() string { return randomScript(r, depth-1) }
	switch r.Intn(16) {
	case 0:
		return sub() + " && " + sub()
	case 1:
		return sub() + " || " + sub()
	case 2:
		return sub() + " | " + sub()
	case 3:
		return sub() + "; " + sub()
	case 4:
		return sub() + "\n" + sub()
	case 5:
		return "{ " + sub() + "; }"
	case 6:
		return "(" + sub() + ")"
	case 7:
		return "if " + sub() + "; then " + sub() + "; else " + sub() + "; fi"
	case 8:
		return "while " + sub() + "; do " + sub() + "; break; done"
	case 9:
		return "until " + sub() + "\ndo " + sub() + "\nbreak\ndone"
	case 10:
		return "for x in a b; do " + sub() + "; done"
	case 11:
		return "case a in a|b) " + sub() + ";; (c) " + sub() + ";; esac"
	case 12:
		return "function g { " + sub() + "; }; g"
	case 13:
		return "! " + sub()
	case 14:
		return "time " + simple()
	}
	return "coproc " + simple()
}

// TestRandomCommandsListPrograms runs random commands of bash's grammar
// that Analyze finds no expansion or substitution in, traced with an
// empty PATH, and checks that every command bash tried to run is in
// Programs.
func TestRandomCommandsListPrograms(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a shell per command")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	r := rand.New(rand.NewSource(1))
	dir := t.TempDir()
	for n, tries := 0, 0; n < 300 && tries < 10000; tries++ {
		c := randomScript(r, 1+r.Intn(3))
		f, err := Analyze(c)
		if err != nil {
			t.Fatalf("Analyze(%q): %v", c, err)
		}
		if f.Expansion || f.Glob || f.Substitution || exec.Command(bash, "-n", "-c", c).Run() != nil {
			continue
		}
		n++
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, bash, "-x", "-c", c)
		cmd.Env = []string{"PATH=" + dir}
		cmd.Dir = dir
		out, _ := cmd.CombinedOutput()
		cancel()
		for _, line := range strings.Split(string(out), "\n") {
			fields := strings.Fields(strings.TrimLeft(line, "+"))
			if !strings.HasPrefix(line, "+") || len(fields) == 0 {
				continue
			}
			// The trace shows compound commands by their keyword, and
			// assignments as they happen.
			program := strings.Trim(fields[0], "'")
			switch program {
			case "[[", "for", "case", "((", "time", "COPROC":
				continue
			}
			if !strings.Contains(program, "=") && !slices.Contains(f.Programs, program) {
				t.Errorf("for %q bash ran %q; Programs %q", c, line, f.Programs)
			}
		}
	}
}

// shells returns the POSIX shells installed here, the real readers of an
// SSH exec command.
func shells(t *testing.T) []string {
	var found []string
	for _, sh := range []string{"sh", "dash", "bash"} {
		if p, err := exec.LookPath(sh); err == nil {
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		t.Skip("no POSIX shell installed to compare with")
	}
	return found
}

// shellWords asks a real shell for the words of command: prefixed with
// "set --", a command's words become the positional parameters, printed
// NUL-separated.
func shellWords(t *testing.T, sh, command string) []string {
	t.Helper()
	words, ok := shellWordsOrSyntaxError(t, sh, command)
	if !ok {
		t.Fatalf("%s cannot read %q", sh, command)
	}
	return words
}

// shellWordsOrSyntaxError is shellWords, reporting false when the shell
// refuses the command as a syntax error.
func shellWordsOrSyntaxError(t *testing.T, sh, command string) ([]string, bool) {
	t.Helper()
	script := "set -- " + command + "\nprintf '%s\\0' \"$#\" \"$@\""
	out, err := exec.Command(sh, "-c", script).CombinedOutput()
	if err != nil {
		if strings.Contains(strings.ToLower(string(out)), "syntax error") {
			return nil, false
		}
		t.Fatalf("%s -c %q: %v: %s", sh, script, err, out)
	}
	fields := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(fields) == 1 {
		return nil, true
	}
	return fields[1:], true
}
