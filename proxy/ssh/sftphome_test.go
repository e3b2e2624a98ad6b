package ssh_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock-dev/interlock/proxy/ssh/sshtest"
)

// newHomeEnv is a gateway before an sshd whose sftp sessions start in
// remote (internal-sftp -d), with sftpArgs added to its command line.
func newHomeEnv(t *testing.T, remote, polText string, sftpArgs ...string) *env {
	t.Helper()
	sub := strings.Join(append([]string{"Subsystem sftp internal-sftp -d", remote}, sftpArgs...), " ")
	sshd := sshtest.Start(t, sshtest.Options{Host: "127.0.0.2", ExtraConfig: []string{sub}})
	return startProxy(t, sshd, envOptions{policy: polText})
}

// scp runs the real scp client as the agent through e.
func (e *env) scp(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o []string
	for i := 0; i < len(e.agentOptions()); i++ {
		a := e.agentOptions()[i]
		if a == "-p" { // scp takes -P
			a = "-P"
		}
		o = append(o, a)
	}
	return run(t, "", "scp", append(o, args...)...)
}

// TestSCPRelativePaths: OpenSSH's scp (SFTP mode, its default since 9.0)
// names remote files relative to the login directory and sends lstat,
// stat or realpath of them before any REALPATH ".", so the gateway learns
// that directory itself. Each command here works straight to sshd.
func TestSCPRelativePaths(t *testing.T) {
	remote := t.TempDir()
	protected := filepath.Join(remote, "protected")
	dest := filepath.Join(remote, "dest")
	for _, d := range []string{protected, dest} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := newHomeEnv(t, remote, fmt.Sprintf(`
default: allow
rules:
  - name: protected-read-only
    when: ssh.request == "sftp" && ssh.file.writes && ssh.file.path.startsWith(%[1]q)
    action: deny
    message: %[1]s is read-only
`, protected+"/"))
	local := t.TempDir()
	up := filepath.Join(local, "up.bin")
	content := strings.Repeat("interlock scp\n", 5000)
	tree := filepath.Join(local, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, c := range map[string]string{up: content, filepath.Join(tree, "a.txt"): "a\n", filepath.Join(tree, "sub", "b.txt"): "b\n"} {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	host, _, _ := strings.Cut(e.listener, ":")
	at := func(p string) string { return "agent@" + host + ":" + p }
	mustRun := func(t *testing.T, args ...string) {
		t.Helper()
		if out, errOut, code := e.scp(t, args...); code != 0 {
			t.Fatalf("scp %s: code %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	wantFile := func(t *testing.T, p, want string) {
		t.Helper()
		if b, err := os.ReadFile(p); err != nil || string(b) != want {
			t.Errorf("%s: %d bytes, %v; want %d bytes", p, len(b), err, len(want))
		}
	}

	t.Run("upload to a relative path", func(t *testing.T) {
		mustRun(t, up, at("rel.bin"))
		wantFile(t, filepath.Join(remote, "rel.bin"), content)
	})
	t.Run("download a relative path", func(t *testing.T) {
		back := filepath.Join(local, "back.bin")
		mustRun(t, at("rel.bin"), back)
		wantFile(t, back, content)
	})
	t.Run("download a ~/ path", func(t *testing.T) {
		back := filepath.Join(local, "tilde.bin")
		mustRun(t, at("~/rel.bin"), back)
		wantFile(t, back, content)
	})
	t.Run("upload a tree to the login directory", func(t *testing.T) {
		// Were "." unknown, scp would take the destination for a new
		// name and spill the tree's contents into the login directory.
		mustRun(t, "-r", tree, at(""))
		wantFile(t, filepath.Join(remote, "tree", "a.txt"), "a\n")
		wantFile(t, filepath.Join(remote, "tree", "sub", "b.txt"), "b\n")
		if _, err := os.Stat(filepath.Join(remote, "a.txt")); err == nil {
			t.Error("the tree's contents landed in the login directory itself")
		}
	})
	t.Run("upload a tree into a relative folder", func(t *testing.T) {
		mustRun(t, "-r", tree, at("dest"))
		wantFile(t, filepath.Join(dest, "tree", "sub", "b.txt"), "b\n")
	})
	t.Run("download a relative tree", func(t *testing.T) {
		back := filepath.Join(local, "tree-back")
		mustRun(t, "-r", at("tree"), back)
		wantFile(t, filepath.Join(back, "sub", "b.txt"), "b\n")
	})
	t.Run("a rule holds on a relative path", func(t *testing.T) {
		_, errOut, code := e.scp(t, up, at("protected/evil.bin"))
		if code == 0 || !strings.Contains(errOut, "read-only") && !strings.Contains(errOut, "Permission denied") {
			t.Errorf("scp into the protected folder: code %d, %s", code, errOut)
		}
		if _, err := os.Stat(filepath.Join(protected, "evil.bin")); err == nil {
			t.Error("the protected folder was written")
		}
	})
}

// TestSFTPHomeLearned: a relative path sent before the client's own
// REALPATH "." is decided on the path the server will use, so a rule on
// that path holds; ~/ in expand-path is the login directory too, as sshd
// reads it. The gateway's own REALPATH never reaches the client.
func TestSFTPHomeLearned(t *testing.T) {
	remote := t.TempDir()
	secret := filepath.Join(remote, "secret.txt")
	for _, p := range []string{secret, filepath.Join(remote, "open.txt")} {
		if err := os.WriteFile(p, []byte("data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := newHomeEnv(t, remote, fmt.Sprintf(`
default: allow
rules:
  - name: secret
    when: ssh.request == "sftp" && ssh.file.path == %q
    action: deny
    message: secret.txt is off limits
`, secret))
	s := dialSFTP(t, e)
	const (
		lstat, stat, realpath, extended = 7, 17, 16, 200
		nameType, attrsType             = 104, 105
	)
	// Pipelined, as scp sends them, with ids a client might well use.
	s.write(
		sftpPacket(lstat, 1, "secret.txt"),
		sftpPacket(stat, 2, "open.txt"),
		sftpPacket(stat, 0xFFFFFFFF, "./sub/../secret.txt"),
		sftpPacket(extended, 4, "expand-path@openssh.com", "~/secret.txt"),
		sftpPacket(extended, 5, "expand-path@openssh.com", "~/open.txt"),
		sftpPacket(extended, 6, "expand-path@openssh.com", "~nobody/x"),
		sftpPacket(realpath, 7, "."),
	)
	replies := s.replies(7)
	for _, id := range []uint32{1, 0xFFFFFFFF, 4} {
		if code, msg := s.status(replies[id]); code != 3 || !strings.Contains(msg, "off limits") {
			t.Errorf("request %d on secret.txt: status %d %q, want denied by the rule", id, code, msg)
		}
	}
	if r := replies[2]; r.typ != attrsType {
		code, msg := s.status(r)
		t.Errorf("stat open.txt: reply type %d (status %d %q), want attributes", r.typ, code, msg)
	}
	if r := replies[5]; r.typ != nameType || !strings.Contains(string(r.payload), filepath.Join(remote, "open.txt")) {
		t.Errorf("expand-path ~/open.txt: reply type %d %q", r.typ, r.payload)
	}
	if code, msg := s.status(replies[6]); code != 3 || !strings.Contains(msg, "~nobody") {
		t.Errorf("expand-path ~nobody/x: status %d %q, want refused", code, msg)
	}
	if r := replies[7]; r.typ != nameType || !strings.Contains(string(r.payload), remote) {
		t.Errorf("the client's REALPATH \".\": reply type %d %q", r.typ, r.payload)
	}
	// Nothing more is on the way: the next reply is the next request's.
	if r := s.roundTrip(sftpPacket(stat, 8, "open.txt")); r.typ != attrsType {
		t.Errorf("stat after: reply type %d", r.typ)
	}
	s.close()
}

// TestSFTPHomeRefused: a server that will not answer REALPATH leaves
// relative paths refused, with the reason; absolute ones go on.
func TestSFTPHomeRefused(t *testing.T) {
	remote := t.TempDir()
	open := filepath.Join(remote, "open.txt")
	if err := os.WriteFile(open, []byte("data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newHomeEnv(t, remote, "default: allow\n", "-P", "realpath")
	s := dialSFTP(t, e)
	const stat, attrsType = 17, 105
	code, msg := s.status(s.roundTrip(sftpPacket(stat, 1, "open.txt")))
	if code != 3 || !strings.Contains(msg, "login directory") || !strings.Contains(msg, "REALPATH") {
		t.Errorf("relative stat: status %d %q, want refused with the reason", code, msg)
	}
	if r := s.roundTrip(sftpPacket(stat, 2, open)); r.typ != attrsType {
		t.Errorf("absolute stat: reply type %d", r.typ)
	}
	s.close()
}
