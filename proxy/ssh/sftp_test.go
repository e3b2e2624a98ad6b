package ssh_test

import (
	"encoding/binary"
	"fmt"
	"io"
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
		// put -p sets the mode and times through the handle (fsetstat),
		// and cp copies within the server (copy-data on two handles).
		script := fmt.Sprintf("put %s %s/allowed.txt\nget %s/allowed.txt %s\n-put %s %s/evil.txt\n-rm %s\n-rename %s/allowed.txt %s/moved.txt\nput -p %s %s/preserved.txt\ncp %s/allowed.txt %s/copy.txt\n",
			up, remote, remote, back, up, protected, keep, remote, protected, up, remote, remote, remote)
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
		for _, p := range []string{"preserved.txt", "copy.txt"} {
			if b, _ := os.ReadFile(filepath.Join(remote, p)); string(b) != content {
				t.Errorf("%s has %d bytes, want %d", p, len(b), len(content))
			}
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
		"allow fsetstat " + remote + "/preserved.txt [ok]",
		"allow copy-data " + remote + "/allowed.txt -> " + remote + "/copy.txt [ok]",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("recording lacks %q:\n%s", want, joined)
		}
	}
	if got := e.counter(t, "interlock_blocked_commands_total", map[string]string{"protocol": "ssh", "rule": "protected-read-only"}); got < 4 {
		t.Errorf("blocked counter %v, want at least 4", got)
	}
}

// A client that sends relative or ..-laden paths (the OpenSSH client makes
// them absolute itself; others do not) still meets the rules on the path
// the server will use.
func TestSFTPPathsResolved(t *testing.T) {
	_, protected, e := protectedEnv(t)
	c := e.dial(t)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	w, _ := sess.StdinPipe()
	r, _ := sess.StdoutPipe()
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	rd := sftpReader{t: t, r: r}
	send := func(typ byte, id uint32, fields ...any) {
		t.Helper()
		body := []byte{typ}
		if typ != 1 { // INIT has a version, no id
			body = binary.BigEndian.AppendUint32(body, id)
		}
		for _, f := range fields {
			switch f := f.(type) {
			case string:
				body = binary.BigEndian.AppendUint32(body, uint32(len(f)))
				body = append(body, f...)
			case uint32:
				body = binary.BigEndian.AppendUint32(body, f)
			}
		}
		pkt := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		if _, err := w.Write(append(pkt, body...)); err != nil {
			t.Fatal(err)
		}
	}
	send(1, 0, uint32(3)) // INIT
	rd.next()             // VERSION
	const createWrite = 0x02 | 0x08 | 0x10
	// The login directory is the real user's home: ask for it to name a
	// relative path into the test's folder. (Before the client asks, the
	// gateway knows it too: see TestSFTPHomeLearned.)
	send(16, 1, ".") // REALPATH "."
	typ, payload := rd.next()
	if typ != 104 {
		t.Fatalf("REALPATH answered with type %d", typ)
	}
	home := string(payload[12 : 12+binary.BigEndian.Uint32(payload[8:12])])
	rel, err := filepath.Rel(home, filepath.Join(protected, "rel.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range []string{rel, "/tmp/../" + strings.TrimPrefix(protected, "/") + "/dots.txt", protected + "//./abs.txt"} {
		send(3, uint32(10+i), p, uint32(createWrite), uint32(0)) // OPEN, no attrs
		typ, payload := rd.next()
		if typ != 101 || binary.BigEndian.Uint32(payload[4:8]) != 3 {
			t.Errorf("open %q: reply type %d, status %d; want permission denied", p, typ, binary.BigEndian.Uint32(payload[4:8]))
		}
	}
	entries, _ := os.ReadDir(protected)
	if len(entries) != 0 {
		t.Errorf("files were created in the protected folder: %v", entries)
	}
}

// sftpReader reads whole SFTP packets.
type sftpReader struct {
	t *testing.T
	r io.Reader
}

func (s sftpReader) next() (byte, []byte) {
	s.t.Helper()
	var hdr [4]byte
	if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
		s.t.Fatal(err)
	}
	b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(s.r, b); err != nil {
		s.t.Fatal(err)
	}
	return b[0], b[1:]
}

// protectedEnv is a gateway whose policy keeps protected, a folder in the
// temporary folder remote, read-only over SFTP (rule protected-read-only).
func protectedEnv(t *testing.T) (remote, protected string, e *env) {
	t.Helper()
	remote = t.TempDir()
	protected = filepath.Join(remote, "protected")
	if err := os.Mkdir(protected, 0o755); err != nil {
		t.Fatal(err)
	}
	e = newEnv(t, envOptions{policy: fmt.Sprintf(`
default: allow
rules:
  - name: protected-read-only
    when: ssh.request == "sftp" && ssh.file.writes && ssh.file.path.startsWith(%q)
    action: deny
`, protected+"/")})
	return remote, protected, e
}
