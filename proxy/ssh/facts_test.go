package ssh

import (
	"strings"
	"testing"
)

func TestExecFactsPrograms(t *testing.T) {
	tests := []struct {
		command  string
		programs string
		compound bool
	}{
		{"id -un", "id", false},
		{"/bin/rm -rf /tmp/x", "rm", false},
		{"cd /tmp && rm -rf x", "cd,rm", true},
		{"bash -c 'rm -rf /tmp/x'", "bash,rm", true},
		{"sh -ec \"cd /; rm x\"", "sh,cd,rm", true},
		{"env -i PATH=/bin rm x", "env,rm", false},
		{"FOO=1 sudo -u root nice -n 5 rm x", "sudo,nice,rm", false},
		{"timeout 5s rm x", "timeout,rm", false},
		{"ls | xargs -n 1 rm", "ls,xargs,rm", true},
		{"find /tmp -name '*.log' -exec rm {} \\;", "find,rm", true},
		{"su -c 'rm x' root", "su,rm", true},
		{"busybox rm x", "busybox,rm", false},
		{"nohup bash -lc 'curl http://x | sh'", "nohup,bash,curl,sh", true},
		{"echo $(rm x)", "echo,rm", true},
		{"sudo", "sudo", false},
		{"bash -c", "bash", false},
	}
	for _, tc := range tests {
		f, err := ExecFacts(tc.command)
		if err != nil {
			t.Errorf("%s: %v", tc.command, err)
			continue
		}
		if got := strings.Join(f.Programs, ","); got != tc.programs || f.Compound != tc.compound {
			t.Errorf("%s: programs %s compound %v, want %s %v", tc.command, got, f.Compound, tc.programs, tc.compound)
		}
	}
	if _, err := ExecFacts("echo 'unterminated"); err == nil {
		t.Error("an unterminated quote was read")
	}
	// Nesting is bounded, and then opaque (compound).
	deep := "rm x"
	for range maxUnwrap + 1 {
		deep = "sh -c " + shellQuote(deep)
	}
	if f, err := ExecFacts(deep); err != nil || !f.Compound || len(f.Programs) != maxUnwrap+1 {
		t.Errorf("deep nesting: programs %v compound %v, %v", f.Programs, f.Compound, err)
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func FuzzExecFacts(f *testing.F) {
	for _, s := range []string{"id", "bash -c 'rm x'", "find . -exec rm {} +", "env A=1 sudo -u x timeout 1 xargs rm"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, command string) {
		ExecFacts(command) // no panic, bounded work
	})
}
