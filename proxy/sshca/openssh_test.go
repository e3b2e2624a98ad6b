package sshca

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// runSSH runs the real OpenSSH client against host:port with only the
// given known_hosts lines trusted and returns its output.
func runSSH(t *testing.T, knownHosts []string, host, port string, opts ...string) (stdout, stderr string, err error) {
	t.Helper()
	path, lookErr := exec.LookPath("ssh")
	if lookErr != nil {
		t.Skipf("OpenSSH client not installed: %v", lookErr)
	}
	file := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(file, []byte(strings.Join(knownHosts, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"-F", "/dev/null",
		"-o", "UserKnownHostsFile=" + file,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes",
		"-o", "LogLevel=ERROR",
		"-o", "UpdateHostKeys=no",
		"-o", "IdentityAgent=none",
		"-o", "ConnectTimeout=10",
		"-p", port,
	}
	args = append(args, opts...)
	args = append(args, "test@"+host, "true")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Stdin = nil
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// listenAddr is addr:port if it can be listened on now, else "".
func listenAddr(t *testing.T, addr, port string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, port))
	if err != nil {
		return ""
	}
	ln.Close()
	return net.JoinHostPort(addr, port)
}

func TestOpenSSHTrustsHostCertificate(t *testing.T) {
	ca := newCA(t)
	otherCA := newCA(t)
	rsaDir := t.TempDir()
	sshKeygen(t, "-t", "rsa", "-b", "2048", "-N", "", "-f", filepath.Join(rsaDir, KeyFile))
	rsaCA, err := LoadOrCreate(rsaDir)
	if err != nil {
		t.Fatal(err)
	}

	line := func(ca *CA, patterns ...string) string {
		l, err := ca.KnownHostsLine(patterns...)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	tests := []struct {
		name       string
		ca         *CA      // signs the server's certificate
		principals []string // of the server's certificate
		port22     bool     // listen on 127.0.0.2:22, as an agent dials it
		known      func(port string) []string
		opts       []string
		wantErr    string // in ssh's stderr, besides the verification failure
	}{
		{
			name: "port 22, pattern as the CLI prints it", ca: ca, principals: []string{"127.0.0.2"}, port22: true,
			known: func(string) []string { return []string{line(ca, "127.0.0.2")} },
		},
		{
			name: "port 22, another principal", ca: ca, principals: []string{"127.0.0.3"}, port22: true,
			known: func(string) []string { return []string{line(ca, "127.0.0.2")} }, wantErr: "name is not a listed principal",
		},
		{
			name: "default pattern", ca: ca, principals: []string{"127.0.0.2", "db.internal"},
			known: func(string) []string { return []string{line(ca)} },
		},
		{
			// On another port ssh looks up "[127.0.0.2]:port", while the
			// principal it checks is still the bare host.
			name: "other port, [host]:port pattern", ca: ca, principals: []string{"127.0.0.2"},
			known: func(port string) []string { return []string{line(ca, "[127.0.0.2]:"+port)} },
		},
		{
			// With no "[127.0.0.2]:port" entry, ssh retries the bare host.
			name: "other port, bare host pattern", ca: ca, principals: []string{"127.0.0.2"},
			known: func(string) []string { return []string{line(ca, "127.0.0.2")} },
		},
		{
			name: "pattern for another port", ca: ca, principals: []string{"127.0.0.2"},
			known: func(string) []string { return []string{line(ca, "[127.0.0.2]:1")} }, wantErr: "No ED25519 host key is known",
		},
		{
			name: "another principal", ca: ca, principals: []string{"127.0.0.3", "db.internal"},
			known: func(string) []string { return []string{line(ca)} }, wantErr: "name is not a listed principal",
		},
		{
			name: "another CA", ca: otherCA, principals: []string{"127.0.0.2"},
			known: func(string) []string { return []string{line(ca)} }, wantErr: "No ED25519 host key is known",
		},
		{
			// HostKeyAlias stands for the name a user typed: ssh checks it
			// both in known_hosts and as the principal.
			name: "host name", ca: ca, principals: []string{"db.example.com"},
			known: func(string) []string { return []string{line(ca, "db.example.com")} },
			opts:  []string{"-o", "HostKeyAlias=db.example.com"},
		},
		{
			name: "host name, another principal", ca: ca, principals: []string{"db.example.com"},
			known: func(string) []string { return []string{line(ca, "*.example.com")} },
			opts:  []string{"-o", "HostKeyAlias=other.example.com"}, wantErr: "name is not a listed principal",
		},
		{
			// OpenSSH refuses SHA-1 ssh-rsa certificate signatures by default.
			name: "operator RSA CA", ca: rsaCA, principals: []string{"127.0.0.2"},
			known: func(string) []string { return []string{line(rsaCA)} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := "127.0.0.2:0"
			if tt.port22 {
				if addr = listenAddr(t, "127.0.0.2", "22"); addr == "" {
					t.Skip("cannot listen on 127.0.0.2:22 (not root, or taken)")
				}
			}
			signer, err := tt.ca.HostSigner(tt.principals)
			if err != nil {
				t.Fatal(err)
			}
			_, port, _ := net.SplitHostPort(serveSSH(t, addr, signer))
			stdout, stderr, err := runSSH(t, tt.known(port), "127.0.0.2", port, tt.opts...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(stderr, "Host key verification failed") || !strings.Contains(stderr, tt.wantErr) {
					t.Fatalf("ssh: %v, stderr %q; want a host key verification failure saying %q", err, stderr, tt.wantErr)
				}
				return
			}
			if err != nil || stdout != "ok\n" {
				t.Fatalf("ssh: %v, stdout %q, stderr %q", err, stdout, stderr)
			}
		})
	}
}

func TestOpenSSHTrustsPinnedHostKey(t *testing.T) {
	dir := t.TempDir()
	key, err := LoadOrCreateHostKey(filepath.Join(dir, "db.key"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := LoadOrCreateHostKey(filepath.Join(dir, "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	rsaPath := filepath.Join(dir, "rsa.key")
	sshKeygen(t, "-t", "rsa", "-b", "2048", "-N", "", "-f", rsaPath)
	rsaKey, err := LoadOrCreateHostKey(rsaPath)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		server  ssh.Signer
		pinned  ssh.PublicKey
		host    func(port string) string // as given to KnownHostsLineForKey
		port22  bool
		wantErr string // in ssh's stderr, besides the verification failure
	}{
		{name: "other port", server: key, pinned: key.PublicKey(), host: func(p string) string { return "127.0.0.2:" + p }},
		{name: "port 22", server: key, pinned: key.PublicKey(), host: func(string) string { return "127.0.0.2" }, port22: true},
		{name: "RSA", server: rsaKey, pinned: rsaKey.PublicKey(), host: func(p string) string { return "127.0.0.2:" + p }},
		{name: "another key", server: other, pinned: key.PublicKey(), host: func(p string) string { return "127.0.0.2:" + p }, wantErr: "REMOTE HOST IDENTIFICATION HAS CHANGED"},
		// With no "[127.0.0.2]:port" entry, ssh retries the bare host.
		{name: "pinned for port 22", server: key, pinned: key.PublicKey(), host: func(string) string { return "127.0.0.2" }},
		{name: "pinned for another port", server: key, pinned: key.PublicKey(), host: func(string) string { return "127.0.0.2:1" }, wantErr: "No ED25519 host key is known"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := "127.0.0.2:0"
			if tt.port22 {
				if addr = listenAddr(t, "127.0.0.2", "22"); addr == "" {
					t.Skip("cannot listen on 127.0.0.2:22 (not root, or taken)")
				}
			}
			_, port, _ := net.SplitHostPort(serveSSH(t, addr, tt.server))
			line, err := KnownHostsLineForKey([]string{tt.host(port)}, tt.pinned)
			if err != nil {
				t.Fatal(err)
			}
			stdout, stderr, err := runSSH(t, []string{line}, "127.0.0.2", port)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(stderr, "Host key verification failed") || !strings.Contains(stderr, tt.wantErr) {
					t.Fatalf("ssh: %v, stderr %q; want a host key verification failure saying %q", err, stderr, tt.wantErr)
				}
				return
			}
			if err != nil || stdout != "ok\n" {
				t.Fatalf("ssh with %q: %v, stdout %q, stderr %q", line, err, stdout, stderr)
			}
		})
	}
}
