package sshfacts

import (
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLiteralWords checks which words Analyze calls literal: the shell
// passes them on as one word with their text, only quotes removed.
func TestLiteralWords(t *testing.T) {
	tests := []struct {
		command string
		// literal has a letter per word of the first command: L for
		// literal, C for a word the shell may change.
		literal string
	}{
		{"ls -la /tmp", "LLL"},
		{`find . -name '*.log' -exec rm {} \;`, "LLLLLLLL"},
		{`find . -name "*.log" -exec rm {} ';' +`, "LLLLLLLLL"},
		{`echo '' "" \x a\ b "a\b" 'a$b' "\$x" "a$" $ x$ a#b`, "LLLLLLLLLLLL"},
		{"echo {} {x} a{b}c {a b} x,y a.b", "LLLLLLLL"},
		{"echo '{a,b}' {a',b'} \\{a,b} '*' \\? [ ] a=\\~ '~'x x~ x:~", "LLLLLLLLLLLL"},
		{"echo $'-exec' $';' $\"x\"", "LCCC"},
		{"echo {-exec,touch} {1..3} a{b,c}d", "LCCC"},
		{"echo $x ${x} \"$x\" \"${x}y\" $1 $@ $?", "LCCCCCCC"},
		{"echo -n${IFS}5 5$IFS", "LCC"},
		{"echo $(id) `id` \"$(id)\" <(id)", "LCCCC"},
		{"echo * ? [ab] a*b -exe? 'a'*", "LCCCCCC"},
		{"echo ~ ~/x ~root =ls x=~ x=a:~", "LCCCCCC"},
		{"echo $((1)) $[1] ${#x} ${x:-y}", "LCCCC"},
		{"ec\\\nho a\\\nb", "LL"},
	}
	for _, tt := range tests {
		f, err := Analyze(tt.command)
		if err != nil {
			t.Errorf("Analyze(%q): %v", tt.command, err)
			continue
		}
		if len(f.LiteralWords) != len(f.Commands) {
			t.Errorf("Analyze(%q): %d commands, %d rows of LiteralWords", tt.command, len(f.Commands), len(f.LiteralWords))
			continue
		}
		var got strings.Builder
		for _, l := range f.LiteralWords[0] {
			if l {
				got.WriteByte('L')
			} else {
				got.WriteByte('C')
			}
		}
		if got.String() != tt.literal {
			t.Errorf("Analyze(%q): words %q literal %s, want %s", tt.command, f.Argv, got.String(), tt.literal)
		}
	}
	// Substitutions' commands have their own flags.
	f, err := Analyze("ls $(find . $'-exec' x ';')")
	if err != nil || len(f.LiteralWords) != 2 || len(f.LiteralWords[1]) != 5 || f.LiteralWords[1][2] || !f.LiteralWords[1][4] {
		t.Errorf("Analyze with a substitution: %q %v, %v", f.Commands, f.LiteralWords, err)
	}
}

// TestRandomLiteralWordsMatchShell checks, in the real shells, that a
// random word Analyze calls literal is read as exactly that one word, in
// a folder whose files a glob would match and with variables that would
// split: set -- WORD leaves one positional parameter, the word's text.
func TestRandomLiteralWordsMatchShell(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a shell per word")
	}
	dir := t.TempDir()
	for _, name := range []string{"a", "ab", "b", "-exec", "a[b]", ";", "{a,b}", "~", "x"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pieces := []string{
		"a", "b", "-", "x", "'", "\"", "\\", "\\\n", "$", "{", "}", ",", ".", "..", "*", "?", "[", "]",
		"~", "=", ":", "$'", "$\"", "${", "$x", "${x}", "$(", "`", "#", ";", "\\;", "'-exec'", "\\{",
		"$IFS", "${IFS}", "{a,b}", "{1..2}", "%", "@", "!", "^",
	}
	r := rand.New(rand.NewSource(1))
	var words []string
	changed := 0
	for tries := 0; tries < 100000 && len(words) < 400; tries++ {
		var b strings.Builder
		for k := 1 + r.Intn(6); k > 0; k-- {
			b.WriteString(pieces[r.Intn(len(pieces))])
		}
		word := b.String()
		f, err := Analyze("set -- " + word)
		if err != nil || f.Compound || len(f.Commands) != 1 || len(f.Argv) != 3 {
			continue
		}
		if !f.LiteralWords[0][2] {
			changed++
			continue
		}
		words = append(words, word)
	}
	if len(words) < 100 || changed < 100 {
		t.Fatalf("only %d literal and %d other words to try: the test is wrong", len(words), changed)
	}
	for _, sh := range shells(t) {
		for _, word := range words {
			f, _ := Analyze("set -- " + word)
			cmd := exec.Command(sh, "-c", "set -- "+word+"\nprintf '%s\\0' \"$#\" \"$@\"")
			cmd.Dir = dir
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "x=a b", "IFS= \t\n"}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%s -c 'set -- %s': %v: %s", sh, word, err, out)
				continue
			}
			if want := "1\x00" + f.Argv[2] + "\x00"; string(out) != want {
				t.Errorf("%s reads the literal word %q as %q, Analyze gives %q", sh, word, out, f.Argv[2])
			}
		}
	}
}
