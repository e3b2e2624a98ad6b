package ssh_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// TestPtyTerminalName: a pty request's terminal type, which sshd exports
// as TERM on the target, passes only when it names a terminal; one that
// carries shell text is refused (and recorded) before upstream sees it,
// so a command cannot read it (bash evaluates a variable's text in
// arithmetic, running a command substitution in an array subscript).
func TestPtyTerminalName(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	marker := filepath.Join(t.TempDir(), "pwned")
	if err := os.Chmod(filepath.Dir(marker), 0o777); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		term string
		ok   bool
	}{
		{"xterm-256color", true},
		{"screen.xterm-256color", true},
		{"a[$(touch " + marker + ")]", false},
		{"xterm\nx", false},
		{strings.Repeat("x", 65), false},
	} {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		err = s.RequestPty(tc.term, 24, 80, gossh.TerminalModes{})
		if (err == nil) != tc.ok {
			t.Errorf("pty with TERM %q: %v, want allowed %v", tc.term, err, tc.ok)
		}
		if err == nil {
			out, err := s.Output(`printf '%s' "$TERM"`)
			if err != nil || string(out) != tc.term {
				t.Errorf("TERM on the target: %q, %v; want %q", out, err, tc.term)
			}
		}
		s.Close()
	}
	c.Close()
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the terminal name ran a command on the target")
	}
	var refused int
	for _, cmd := range e.commands(t) {
		if cmd.Command == "pty-req" && cmd.Decision == "deny" {
			refused++
		}
	}
	if refused != 3 {
		t.Fatalf("recorded %d refused pty requests, want 3", refused)
	}
}
