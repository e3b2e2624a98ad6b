package sshfacts

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// payload is a variable's value that runs a command when bash evaluates it
// as arithmetic: the subscript's $(...) runs. The command creates the file
// pwned in the working folder, with no program, so PATH does not matter.
const payload = `a[$(:>pwned)]`

// bashPath returns bash, or skips: the evaluation these tests look for is
// bash's.
func bashPath(t *testing.T) string {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	return bash
}

// runsPayload runs command with bash -c in a fresh folder, with the
// payload in the variables P and TERM, and reports whether bash ran it.
func runsPayload(t *testing.T, bash, command string) bool {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "-c", command)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "P=" + payload, "TERM=" + payload, "x=P"}
	cmd.Dir = dir
	// Errors are expected (bad substitutions and the like); what counts
	// is whether the payload ran.
	_ = cmd.Run()
	_, err := os.Stat(filepath.Join(dir, "pwned"))
	return err == nil
}

// selfPayload returns the audit's bypass for a marker file at dir/pwned:
// cat $(( ${BASH_EXECUTION_STRING:OFF:LEN} )) 'a[$(touch dir/pwned)]',
// where OFF and LEN pick the quoted word's text out of the command itself.
func selfPayload(dir string) string {
	word := "a[$(touch " + filepath.Join(dir, "pwned") + ")]"
	off := 0
	for {
		c := fmt.Sprintf("cat $(( ${BASH_EXECUTION_STRING:%d:%d} )) '%s'", off, len(word), word)
		if next := strings.Index(c, "'"+word) + 1; next != off {
			off = next
			continue
		}
		return c
	}
}

// TestEvaluatingExpansionsAreCompound runs, in real bash, commands whose
// expansions make bash evaluate a variable's value (or the command's own
// text) as arithmetic, prompt or indirection, and checks both that bash
// runs the $(...) hidden there and that Analyze calls each compound.
func TestEvaluatingExpansionsAreCompound(t *testing.T) {
	bash := bashPath(t)
	commands := []string{
		"ls $((P))",
		"ls $((TERM))",
		`cat "$(( TERM + 1 ))"`,
		"echo $[P]",
		"echo ${P@P}",
		"echo ${!P}",
		"echo ${a[P]}",
		`echo "${a[P]}"`,
		"echo ${HOME:P:1}",
		"echo ${HOME: P}",
		"echo ${@:P}",
		"echo ${u:-$((P))}",
		`echo "${u:-$[P]}"`,
		"echo ${u:-${a[P]}}",
		"echo ${x#${HOME:P}}",
		"a[P]=1",
		"((P))",
		"[[ 1 -eq P ]]",
		"for ((i=P; i<0; i++)); do :; done",
	}
	for _, command := range commands {
		f, err := Analyze(command)
		if err != nil {
			t.Errorf("Analyze(%q): %v", command, err)
			continue
		}
		if !f.Compound {
			t.Errorf("Analyze(%q) is not compound (programs %q, flags %s)", command, f.Programs, flags(f))
		}
		if !runsPayload(t, bash, command) {
			t.Errorf("bash did not run the payload for %q: the test is wrong", command)
		}
	}

	// The audit's command, taking its payload from its own text.
	dir := t.TempDir()
	command := selfPayload(dir)
	f, err := Analyze(command)
	if err != nil || !f.Compound {
		t.Errorf("Analyze(%q) = %q %s, %v; want compound", command, f.Programs, flags(f), err)
	}
	_ = exec.Command(bash, "-c", command).Run() // cat fails on the file 0
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err != nil {
		t.Errorf("bash did not run the payload for %q: the test is wrong", command)
	}
}

// TestInertExpansionsRunNothing runs, in real bash, commands whose
// expansions only substitute text, with the payload in every variable they
// name, and checks that bash runs nothing hidden and that Analyze does not
// call them compound: an allow-list can still allow them.
func TestInertExpansionsRunNothing(t *testing.T) {
	bash := bashPath(t)
	commands := []string{
		"ls -la /var/log",
		`cat "$HOME/x"`,
		`echo $P "$P" ${P} "${P}" $TERM`,
		"echo ${P:-x} ${P-x} ${P:+x} ${P+x} ${P?x} ${P:?x} ${u:-$P} ${u-${P}}",
		`echo ${P#a} ${P##*[} ${P%]} ${P%%(*} ${P/a/b} ${P//a/"$P"} ${P/#a} ${P/%]} ${P^} ${P^^} ${P,} ${P,,}`,
		"echo ${#P} ${#} $# ${#@} ${#x}",
		`echo $1 ${1} ${10} $@ "$*" $? $$ $- ${-} ${@:-$P} ${*#a}`,
		`echo $'a[$(:>pwned)]' '$((P))'`,
		`echo \$\(\(P\)\) "\${!P}"`,
		"echo ~ ~/x x=~",
		"echo {a,b} x{1..3}",
		"echo $x",
	}
	for _, command := range commands {
		f, err := Analyze(command)
		if err != nil {
			t.Errorf("Analyze(%q): %v", command, err)
			continue
		}
		if f.Compound {
			t.Errorf("Analyze(%q) is compound; its expansions are inert", command)
		}
		if runsPayload(t, bash, command) {
			t.Errorf("bash ran the payload for %q", command)
		}
	}
}

// TestRandomExpansionsRunNothingHidden runs, in real bash with the payload
// in P and TERM, random commands made of the pieces of expansions that
// Analyze does not call compound, and checks that none ran the payload.
func TestRandomExpansionsRunNothingHidden(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bash per command")
	}
	bash := bashPath(t)
	pieces := []string{
		"$", "{", "}", "P", "TERM", "x", "a", "1", ":", "#", "!", "@", "[", "]", "-", "+", "=",
		"?", "%", "/", "^", ",", "*", "~", " ", "'", "\"", "\\", "(", ")", "((", "$P", "${P", "${",
		"${!", "${#", "${x", "$((", "$[", "P[", "$'", "$\"", "a[P]=",
	}
	r := rand.New(rand.NewSource(1))
	tried := 0
	for tries := 0; tries < 200000 && tried < 1000; tries++ {
		var b strings.Builder
		b.WriteString("echo ")
		for k := 1 + r.Intn(10); k > 0; k-- {
			b.WriteString(pieces[r.Intn(len(pieces))])
		}
		command := b.String()
		f, err := Analyze(command)
		if err != nil || f.Compound || !strings.Contains(command, "$") {
			continue
		}
		tried++
		if runsPayload(t, bash, command) {
			t.Errorf("bash ran the payload for %q, which Analyze does not call compound", command)
		}
	}
	if tried < 100 {
		t.Fatalf("only %d random commands to run: the test is wrong", tried)
	}
}

// TestHeredocDelimiterWithDollarIsRefused runs the audit's here-document
// in bash, which closes <<$'EOF' at the line EOF and runs the rm after it,
// and checks that Analyze refuses it rather than hide the rm.
func TestHeredocDelimiterWithDollarIsRefused(t *testing.T) {
	bash := bashPath(t)
	for _, form := range []string{
		"cat <<$'EOF'\nbody\nEOF\nrm %s\n$'EOF'",
		"cat <<$\"EOF\"\nbody\nEOF\nrm %s\n$\"EOF\"",
		"cat <<-$'E\\x4fF'\n\tbody\n\tEOF\nrm %s\nE\\x4fF",
		"ls $(cat <<$'EOF'\nEOF\nrm %s\n$'EOF'\n)",
	} {
		dir := t.TempDir()
		victim := filepath.Join(dir, "victim")
		if err := os.WriteFile(victim, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		command := fmt.Sprintf(form, victim)
		f, err := Analyze(command)
		if !errors.Is(err, ErrHeredocDelimiter) {
			t.Errorf("Analyze(%q) = programs %q, %v; want %v", command, f.Programs, err, ErrHeredocDelimiter)
		}
		if _, err := Split(command); !errors.Is(err, ErrHeredocDelimiter) {
			t.Errorf("Split(%q): %v; want %v", command, err, ErrHeredocDelimiter)
		}
		_ = exec.Command(bash, "-c", command).Run()
		if _, err := os.Stat(victim); err == nil {
			t.Errorf("bash -c %q did not remove the victim: the test is wrong", command)
		}
	}
}

// TestHeredocDelimitersMatchShells checks, for delimiters written with
// quotes and backslashes, that the real shells end the body at the same
// line as Analyze: a command after the body ran in the shell exactly when
// Analyze lists it.
func TestHeredocDelimitersMatchShells(t *testing.T) {
	delimiters := []string{
		"EOF", "'EOF'", `"EOF"`, `\EOF`, `E\OF`, `E\\OF`, `E"O"F`, "E\\\nOF", `"E\` + "\n" + `OF"`,
		`"a\"b"`, `'a\b'`, `a\\b`, `"a\b"`, `"a\\b"`, `a\"b`, `"a'b"`, "''", `""`, "E-F", "E#F",
	}
	lines := []string{
		"EOF", `E\OF`, `E\\OF`, `a\b`, `a\\b`, `a"b`, `ab`, `a'b`, "", "\tEOF", "EOF ", " EOF", "E#F", "E-F",
	}
	for _, sh := range shells(t) {
		for _, op := range []string{"<<", "<<-"} {
			for _, d := range delimiters {
				for _, line := range lines {
					command := "cat " + op + d + "\n" + line + "\necho CLOSED\n"
					f, err := Analyze(command)
					if err != nil {
						t.Fatalf("Analyze(%q): %v", command, err)
					}
					listed := slices.Contains(f.Programs, "echo")
					out, _ := exec.Command(sh, "-c", command).Output()
					ran := slices.Contains(strings.Split(string(out), "\n"), "CLOSED")
					if ran != listed {
						t.Errorf("%s: for %q the shell ran echo: %v, Analyze lists %q", sh, command, ran, f.Programs)
					}
				}
			}
		}
	}
}
