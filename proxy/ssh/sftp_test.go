package ssh_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSFTPAndSCP(t *testing.T) {
	remote := t.TempDir() // the sshd runs on this host: its files are ours to check
	protected := filepath.Join(remote, "protected")
	if err := os.Mkdir(protected, 0o755); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(protected, "keep.txt")
	if err := os.WriteFile(keep, []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{policy: fmt.Sprintf(`
default: allow
rules:
  - name: protected-read-only
    when: ssh.request == "sftp" && ssh.file.writes && (ssh.file.path.startsWith(%[1]q) || ssh.file.target.startsWith(%[1]q))
    action: deny
    message: %[1]s is read-only
`, protected+"/")})
	local := t.TempDir()
	up := filepath.Join(local, "up.txt")
	content := strings.Repeat("interlock sftp\n", 10000) // several packets
	if err := os.WriteFile(up, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(e.listener, ":")
	opts := func(extra ...string) []string {
		var o []string
		for i := 0; i < len(e.agentOptions()); i++ {
			a := e.agentOptions()[i]
			if a == "-p" { // scp and sftp take -P
				o = append(o, "-P", port)
				i++
				continue
			}
			o = append(o, a)
		}
		return append(o, extra...)
	}

	t.Run("sftp both ways, denied writes", func(t *testing.T) {
		batch := filepath.Join(local, "batch")
		back := filepath.Join(local, "back.txt")
		script := fmt.Sprintf("put %s %s/allowed.txt\nget %s/allowed.txt %s\n-put %s %s/evil.txt\n-rm %s\n-rename %s/allowed.txt %s/moved.txt\n",
			up, remote, remote, back, up, protected, keep, remote, protected)
		if err := os.WriteFile(batch, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := run(t, "", "sftp", append(opts("-b", batch), "agent@"+host)...)
		if code != 0 {
			t.Fatalf("sftp: code %d\n%s\n%s", code, out, errOut)
		}
		if b, _ := os.ReadFile(back); string(b) != content {
			t.Errorf("the file came back with %d bytes, want %d", len(b), len(content))
		}
		if !strings.Contains(errOut, "Permission denied") {
			t.Errorf("denied operations not reported to the client: %s", errOut)
		}
		for _, p := range []string{filepath.Join(protected, "evil.txt"), filepath.Join(protected, "moved.txt")} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s was written despite the rule", p)
			}
		}
		if b, _ := os.ReadFile(keep); string(b) != "keep me\n" {
			t.Errorf("keep.txt: %q", b)
		}
	})

	t.Run("scp both ways", func(t *testing.T) {
		dst := filepath.Join(remote, "scp.txt")
		if out, errOut, code := run(t, "", "scp", append(opts(), up, "agent@"+host+":"+dst)...); code != 0 {
			t.Fatalf("scp up: code %d\n%s\n%s", code, out, errOut)
		}
		back := filepath.Join(local, "scp-back.txt")
		if out, errOut, code := run(t, "", "scp", append(opts(), "agent@"+host+":"+dst, back)...); code != 0 {
			t.Fatalf("scp down: code %d\n%s\n%s", code, out, errOut)
		}
		if b, _ := os.ReadFile(back); string(b) != content {
			t.Errorf("scp round trip: %d bytes, want %d", len(b), len(content))
		}
		_, errOut, code := run(t, "", "scp", append(opts(), up, "agent@"+host+":"+filepath.Join(protected, "scp.txt"))...)
		if code == 0 || !strings.Contains(errOut, "interlock: "+protected+"/ is read-only") && !strings.Contains(errOut, "Permission denied") {
			t.Errorf("scp into the protected folder: code %d, %s", code, errOut)
		}
	})

	cmds := e.commands(t)
	var ops []string
	for _, c := range cmds {
		if c.Command == "sftp" {
			ops = append(ops, c.Decision+" "+c.Text+" ["+c.Tag+c.Error+"]")
		}
	}
	joined := strings.Join(ops, "\n")
	for _, want := range []string{
		"allow open " + remote + "/allowed.txt (write|create|truncate) [ok]",
		"deny open " + protected + "/evil.txt (write|create|truncate)",
		"deny remove " + keep,
		"deny rename " + remote + "/allowed.txt -> " + protected + "/moved.txt",
		"allow close " + remote + "/allowed.txt [read 0 bytes, wrote 150000 bytes]",
		"allow close " + remote + "/allowed.txt [read 150000 bytes, wrote 0 bytes]",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("recording lacks %q:\n%s", want, joined)
		}
	}
	if got := e.counter(t, "interlock_blocked_commands_total", map[string]string{"protocol": "ssh", "rule": "protected-read-only"}); got < 4 {
		t.Errorf("blocked counter %v, want at least 4", got)
	}
}
