package sshtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// run runs a real OpenSSH client and returns its stdout; stderr goes into
// the error.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ClientBinary(t, name), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.Join(err, errors.New(stderr.String()))
	}
	return stdout.String(), nil
}

func TestServer(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Host: "127.0.0.2"})
	if s.Host != "127.0.0.2" || s.Port == 0 {
		t.Fatalf("server at %s", s.Addr())
	}

	t.Run("ssh runs a command as the user", func(t *testing.T) {
		t.Parallel()
		out, err := run(t, "ssh", s.SSHArgs("id", "-un")...)
		if err != nil {
			t.Fatalf("ssh: %v\n%s", err, s.LogTail())
		}
		if got := strings.TrimSpace(out); got != s.User {
			t.Errorf("id -un = %q, want %q", got, s.User)
		}
	})

	t.Run("ssh passes INTERLOCK_TEST_ variables", func(t *testing.T) {
		t.Parallel()
		args := append([]string{"-o", "SetEnv=INTERLOCK_TEST_MARK=from-client"}, s.SSHArgs("echo $INTERLOCK_TEST_MARK")...)
		out, err := run(t, "ssh", args...)
		if err != nil {
			t.Fatalf("ssh: %v", err)
		}
		if got := strings.TrimSpace(out); got != "from-client" {
			t.Errorf("remote INTERLOCK_TEST_MARK = %q", got)
		}
	})

	t.Run("x/crypto client runs echo", func(t *testing.T) {
		t.Parallel()
		c, err := s.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		out, err := sess.Output("echo hi")
		if err != nil {
			t.Fatalf("echo hi: %v", err)
		}
		if string(out) != "hi\n" {
			t.Errorf("echo hi printed %q", out)
		}
	})

	t.Run("scp round trip", func(t *testing.T) {
		t.Parallel()
		for _, mode := range []struct {
			name string
			flag []string
		}{
			{"sftp protocol", nil},
			{"legacy scp protocol", []string{"-O"}},
		} {
			t.Run(mode.name, func(t *testing.T) {
				local := t.TempDir()
				want := randomBytes(t, 100_000)
				src := filepath.Join(local, "src")
				if err := os.WriteFile(src, want, 0o600); err != nil {
					t.Fatal(err)
				}
				remote := filepath.Join(s.Dir, "scp-"+strings.ReplaceAll(mode.name, " ", "-"))
				if _, err := run(t, "scp", s.SCPArgs(append(mode.flag, src, s.Remote(remote))...)...); err != nil {
					t.Fatalf("scp there: %v\n%s", err, s.LogTail())
				}
				back := filepath.Join(local, "back")
				if _, err := run(t, "scp", s.SCPArgs(append(mode.flag, s.Remote(remote), back)...)...); err != nil {
					t.Fatalf("scp back: %v", err)
				}
				assertFile(t, remote, want)
				assertFile(t, back, want)
			})
		}
	})

	t.Run("sftp batch put and get", func(t *testing.T) {
		t.Parallel()
		local := t.TempDir()
		want := randomBytes(t, 50_000)
		src := filepath.Join(local, "src")
		if err := os.WriteFile(src, want, 0o600); err != nil {
			t.Fatal(err)
		}
		remote := filepath.Join(s.Dir, "sftp-file")
		back := filepath.Join(local, "back")
		batch := filepath.Join(local, "batch")
		script := "put " + src + " " + remote + "\nget " + remote + " " + back + "\n"
		if err := os.WriteFile(batch, []byte(script), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := run(t, "sftp", s.SFTPArgs("-b", batch)...); err != nil {
			t.Fatalf("sftp: %v\n%s", err, s.LogTail())
		}
		assertFile(t, remote, want)
		assertFile(t, back, want)
	})

	t.Run("direct-tcpip is permitted", func(t *testing.T) {
		t.Parallel()
		echo := echoServer(t)
		c, err := s.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conn, err := c.Dial("tcp", echo)
		if err != nil {
			t.Fatalf("forwarding to %s: %v", echo, err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 5)
		if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ping\n" {
			t.Errorf("forwarded echo = %q, %v", got, err)
		}
	})

	t.Run("wrong host key", func(t *testing.T) {
		t.Parallel()
		other, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		otherKey, err := ssh.NewPublicKey(other)
		if err != nil {
			t.Fatal(err)
		}
		bad := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(bad, []byte(knownHostsLine(s.Addr(), otherKey)), 0o600); err != nil {
			t.Fatal(err)
		}
		// The first UserKnownHostsFile given wins.
		args := append([]string{"-o", "UserKnownHostsFile=" + bad}, s.SSHArgs("true")...)
		_, err = run(t, "ssh", args...)
		if err == nil {
			t.Fatal("ssh logged in although known_hosts pins another key")
		}
		if !strings.Contains(err.Error(), "Host key verification failed") {
			t.Errorf("ssh failed, but not on the host key: %v", err)
		}

		cfg := s.ClientConfig()
		cfg.HostKeyCallback = ssh.FixedHostKey(otherKey)
		if c, err := ssh.Dial("tcp", s.Addr(), cfg); err == nil {
			c.Close()
			t.Error("x/crypto logged in with another host key pinned")
		}
	})
}

func TestForwardingOptions(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Host: "127.0.0.2", NoTCPForwarding: true, NoAgentForwarding: true, NoX11Forwarding: true})
	echo := echoServer(t)
	c, err := s.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if conn, err := c.Dial("tcp", echo); err == nil {
		conn.Close()
		t.Fatal("sshd forwarded a connection with NoTCPForwarding")
	}
	cfg, err := os.ReadFile(s.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"AllowTcpForwarding no", "AllowAgentForwarding no", "X11Forwarding no"} {
		if !strings.Contains(string(cfg), "\n"+line+"\n") {
			t.Errorf("sshd_config lacks %q", line)
		}
	}
}

func TestOtherUser(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Host: "127.0.0.2", User: "nobody"})
	c, err := s.Dial()
	if err != nil {
		t.Fatalf("logging in as nobody: %v\n%s", err, s.LogTail())
	}
	c.Close()
	cfg := s.ClientConfig()
	cfg.User = "root"
	if c, err := ssh.Dial("tcp", s.Addr(), cfg); err == nil {
		c.Close()
		t.Error("the client key logged in as root on a server for nobody")
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Host: "127.0.0.2"})
	c, err := s.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	// "; exit": the shell stays as the parent of sleep (no exec of the
	// last command), so there is a whole process tree to clean up.
	if err := sess.Start("sleep 60; exit 0"); err != nil {
		t.Fatal(err)
	}
	// Wait for sleep to show under sshd: connection process, session
	// process, sleep.
	var procs []int
	for deadline := time.Now().Add(5 * time.Second); ; {
		procs = descendants(s.Pid())
		if len(procs) >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(procs) < 3 {
		t.Fatalf("sshd has descendants %v, want the connection's processes and sleep", procs)
	}
	procs = append(procs, s.Pid())

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if running(p) {
			t.Errorf("process %d still runs after Close", p)
		}
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after Close: %v", s.Dir, err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestLaunchErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"public host", Options{Host: "192.0.2.1"}, "not a loopback"},
		{"name as host", Options{Host: "localhost"}, "not a loopback"},
		{"port out of range", Options{Port: 70000}, "out of range"},
		{"harness keyword", Options{ExtraConfig: []string{"HostKey /etc/ssh/ssh_host_rsa_key"}}, "may not set HostKey"},
		{"harness keyword with =", Options{ExtraConfig: []string{"pidfile=/tmp/x"}}, "may not set pidfile"},
		{"no such user", Options{User: "interlock-no-such-user"}, "looking up user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Launch(tc.o)
			if err == nil {
				s.Close()
				t.Fatal("Launch succeeded")
			}
			if errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want one with %q", err, tc.want)
			}
		})
	}
}

func TestBadExtraConfig(t *testing.T) {
	s, err := Launch(Options{Host: "127.0.0.2", ExtraConfig: []string{"NoSuchKeyword yes"}})
	redirecttest.UnavailableIf(t, err, ErrUnavailable)
	if err == nil {
		s.Close()
		t.Fatal("Launch accepted an unknown sshd keyword")
	}
	if !strings.Contains(err.Error(), "NoSuchKeyword") {
		t.Errorf("error does not name the bad line: %v", err)
	}
}

func TestSSHDConfig(t *testing.T) {
	files := configFiles{hostKey: "/d/hk", authorizedKeys: "/d/ak", pidFile: "/d/pid", home: "/d/home"}
	for _, tc := range []struct {
		name    string
		o       Options
		root    bool
		without map[string]bool
		has     []string
		lacks   []string
	}{
		{
			name: "defaults as root",
			root: true,
			has: []string{"ListenAddress 127.0.0.2:2222", "HostKey /d/hk", "AuthorizedKeysFile /d/ak",
				"PidFile /d/pid", "PermitRootLogin prohibit-password", "PasswordAuthentication no",
				"KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
				"Subsystem sftp internal-sftp", "AllowTcpForwarding yes", "AllowAgentForwarding yes",
				"X11Forwarding yes", "AcceptEnv LANG LC_* INTERLOCK_TEST_*", "PerSourcePenalties no",
				"SetEnv HOME=/d/home"},
		},
		{
			name:  "other user",
			o:     Options{User: "nobody"},
			has:   []string{"PermitRootLogin no", "AllowUsers nobody"},
			lacks: []string{"PermitRootLogin prohibit-password"},
		},
		{
			name:    "without an optional keyword",
			without: map[string]bool{"persourcepenalties": true},
			lacks:   []string{"PerSourcePenalties no"},
		},
		{
			name: "extra config replaces the harness's line",
			o: Options{ExtraConfig: []string{"subsystem sftp /usr/lib/openssh/sftp-server", "LogLevel=DEBUG3",
				"Match User nobody", "AllowTcpForwarding no"}},
			has:   []string{"subsystem sftp /usr/lib/openssh/sftp-server", "LogLevel=DEBUG3", "AllowTcpForwarding yes"},
			lacks: []string{"Subsystem sftp internal-sftp", "LogLevel VERBOSE"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := sshdConfig(tc.o, "127.0.0.2:2222", files, tc.root, tc.without)
			lines := map[string]bool{}
			for _, l := range strings.Split(cfg, "\n") {
				lines[l] = true
			}
			for _, l := range tc.has {
				if !lines[l] {
					t.Errorf("no line %q in\n%s", l, cfg)
				}
			}
			for _, l := range tc.lacks {
				if lines[l] {
					t.Errorf("line %q in\n%s", l, cfg)
				}
			}
			if m := strings.Index(cfg, "Match "); m >= 0 && strings.Contains(cfg[m:], "PermitRootLogin") {
				t.Errorf("harness lines after Match:\n%s", cfg)
			}
		})
	}
}

func TestKnownHostsLine(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b64 := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	for _, tc := range []struct{ addr, want string }{
		{"127.0.0.2:2222", "[127.0.0.2]:2222 " + b64 + "\n"},
		{"127.0.0.2:22", "127.0.0.2 " + b64 + "\n"},
		{"[::1]:2222", "[::1]:2222 " + b64 + "\n"},
	} {
		if got := knownHostsLine(tc.addr, key); got != tc.want {
			t.Errorf("knownHostsLine(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

func TestAccountLocked(t *testing.T) {
	shadow := filepath.Join(t.TempDir(), "shadow")
	content := "root:*:20228:0:99999:7:::\nlocked:!:20228::::::\nlockedhash:!$y$j9T$abc:1::::::\nopen:$y$j9T$abc:1::::::\n"
	if err := os.WriteFile(shadow, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	for login, want := range map[string]bool{"root": false, "locked": true, "lockedhash": true, "open": false, "absent": false} {
		got, err := accountLocked(shadow, login)
		if err != nil || got != want {
			t.Errorf("accountLocked(%s) = %v, %v; want %v", login, got, err, want)
		}
	}
	if got, err := accountLocked(filepath.Join(t.TempDir(), "none"), "root"); err != nil || got {
		t.Errorf("without a shadow file: %v, %v", got, err)
	}
}

func TestArgs(t *testing.T) {
	s := &Server{Host: "::1", Port: 2200, User: "alice", ClientKeyFile: "/d/id", KnownHostsFile: "/d/kh"}
	ssh := strings.Join(s.SSHArgs("id", "-un"), " ")
	for _, want := range []string{"-F /dev/null", "-i /d/id", "-o UserKnownHostsFile=/d/kh", "-o StrictHostKeyChecking=yes",
		"-o BatchMode=yes", "-o IdentitiesOnly=yes", "-o LogLevel=ERROR"} {
		if !strings.Contains(ssh, want) {
			t.Errorf("ssh args %q lack %q", ssh, want)
		}
	}
	if !strings.HasSuffix(ssh, " -p 2200 alice@::1 id -un") {
		t.Errorf("ssh args end %q", ssh)
	}
	if got := strings.Join(s.SCPArgs("a", s.Remote("/b")), " "); !strings.HasSuffix(got, " -P 2200 a alice@[::1]:/b") {
		t.Errorf("scp args %q", got)
	}
	if got := strings.Join(s.SFTPArgs("-b", "f"), " "); !strings.HasSuffix(got, " -P 2200 -b f alice@[::1]") {
		t.Errorf("sftp args %q", got)
	}
}

func TestAuthorizeKey(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Host: "127.0.0.2"})
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.ClientConfig()
	cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(signer)}
	if c, err := ssh.Dial("tcp", s.Addr(), cfg); err == nil {
		c.Close()
		t.Fatal("a key not yet authorized logged in")
	}
	if err := s.AuthorizeKey(signer.PublicKey()); err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", s.Addr(), cfg)
	if err != nil {
		t.Fatalf("authorized key: %v", err)
	}
	c.Close()
}

func FuzzParentOf(f *testing.F) {
	f.Fuzz(func(t *testing.T, comm []byte, ppid uint32) {
		stat := append(append([]byte("4242 ("), comm...), []byte(") S "+strconv.Itoa(int(ppid))+" 4242 4242 0 -1")...)
		got, ok := parentOf(stat)
		if !ok || got != int(ppid) {
			t.Errorf("parentOf(%q) = %d, %v; want %d", stat, got, ok, ppid)
		}
		if state, ok := stateOf(stat); !ok || state != 'S' {
			t.Errorf("stateOf(%q) = %q, %v; want S", stat, state, ok)
		}
		// Any bytes at all: no panic.
		parentOf(comm)
		stateOf(comm)
	})
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func assertFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes differ from the %d sent", path, len(got), len(want))
	}
}

// echoServer listens on 127.0.0.1 and echoes each connection back, until
// the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}
