package ssh_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExec(t *testing.T) {
	e := newEnv(t, envOptions{})
	out, errOut, code := e.ssh(t, "", nil, "id", "-un")
	if code != 0 || strings.TrimSpace(out) != e.sshd.User {
		t.Fatalf("id -un: code %d, out %q, err %q", code, out, errOut)
	}

	victim := filepath.Join(t.TempDir(), "x")
	if err := os.Mkdir(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = e.ssh(t, "", nil, "rm -rf "+victim)
	if code != 126 || !strings.Contains(errOut, "interlock: deleting files is not allowed for agents") {
		t.Errorf("rm: code %d, out %q, err %q", code, out, errOut)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("the denied command ran: %v", err)
	}
	if got := e.counter(t, "interlock_blocked_commands_total", map[string]string{"protocol": "ssh", "rule": "no-rm"}); got != 1 {
		t.Errorf("blocked counter %v, want 1", got)
	}
	cmds := e.commands(t)
	var idCmd, rmCmd bool
	for _, c := range cmds {
		switch {
		case c.Text == "id -un":
			idCmd = c.Decision == "allow" && c.Tag == "exit 0" && c.Command == "exec"
		case strings.HasPrefix(c.Text, "rm -rf"):
			rmCmd = c.Decision == "deny" && c.Rule == "no-rm"
		}
	}
	if !idCmd || !rmCmd {
		t.Errorf("recorded %+v", cmds)
	}
}
