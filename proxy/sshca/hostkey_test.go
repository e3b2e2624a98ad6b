package sshca

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestLoadOrCreateHostKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	path := filepath.Join(dir, "db.key")
	key, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	if typ := key.PublicKey().Type(); typ != ssh.KeyAlgoED25519 {
		t.Errorf("host key type %s, want ed25519", typ)
	}
	again, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.PublicKey().Marshal(), key.PublicKey().Marshal()) {
		t.Error("reloading gave another host key")
	}
}

func TestLoadOrCreateHostKeyRefuses(t *testing.T) {
	valid := filepath.Join(t.TempDir(), "valid")
	if _, err := LoadOrCreateHostKey(valid); err != nil {
		t.Fatal(err)
	}
	validPEM, _ := os.ReadFile(valid)
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr string
	}{
		{"garbage", func(t *testing.T, path string) { write(t, path, []byte("hello"), 0o600) }, "no key found"},
		{"readable by group", func(t *testing.T, path string) { write(t, path, validPEM, 0o640) }, "mode 0640"},
		{"writable by others", func(t *testing.T, path string) { write(t, path, validPEM, 0o602) }, "mode 0602"},
		{"encrypted", func(t *testing.T, path string) {
			sshKeygen(t, "-t", "ed25519", "-N", "secret", "-f", path)
		}, "encrypted"},
		{"a folder", func(t *testing.T, path string) { os.Mkdir(path, 0o700) }, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "host.key")
			tt.setup(t, path)
			before := snapshot(t, filepath.Dir(path))
			_, err := LoadOrCreateHostKey(path)
			if !errors.Is(err, ErrBadHostKey) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LoadOrCreateHostKey = %v, want ErrBadHostKey naming %s and saying %q", err, path, tt.wantErr)
			}
			if after := snapshot(t, filepath.Dir(path)); after != before {
				t.Errorf("LoadOrCreateHostKey changed the folder:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// An operator's RSA host key signs with SHA-2 only.
func TestLoadOrCreateHostKeyRSA(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rsa.key")
	sshKeygen(t, "-t", "rsa", "-b", "2048", "-N", "", "-f", path)
	key, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	multi, ok := key.(ssh.MultiAlgorithmSigner)
	if !ok {
		t.Fatalf("RSA signer %T does not restrict its algorithms", key)
	}
	if got := multi.Algorithms(); !slices.Equal(got, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}) {
		t.Errorf("algorithms %q", got)
	}
	if _, err := multi.SignWithAlgorithm(rand.Reader, []byte("x"), ssh.KeyAlgoRSA); err == nil {
		t.Error("signed with SHA-1 ssh-rsa")
	}
}

func TestKnownHostsLineForKey(t *testing.T) {
	key, err := LoadOrCreateHostKey(filepath.Join(t.TempDir(), "host.key"))
	if err != nil {
		t.Fatal(err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key.PublicKey())))
	tests := []struct {
		hosts []string
		want  string // the hosts field
	}{
		{[]string{"127.0.0.2"}, "127.0.0.2"},
		{[]string{"127.0.0.2:22"}, "127.0.0.2"},
		{[]string{"127.0.0.2:2222"}, "[127.0.0.2]:2222"},
		{[]string{"127.0.0.2:02222"}, "[127.0.0.2]:2222"},
		{[]string{"DB.Example.com:2222", "db.example.com"}, "[db.example.com]:2222,db.example.com"},
		{[]string{"::1"}, "::1"},
		{[]string{"[::1]"}, "::1"},
		{[]string{"[0:0::1]:22"}, "::1"},
		{[]string{"[::1]:2222"}, "[::1]:2222"},
		{[]string{"[db.internal]:2222"}, "[db.internal]:2222"},
		{[]string{"db", "db:22", "DB"}, "db"},
	}
	for _, tt := range tests {
		line, err := KnownHostsLineForKey(tt.hosts, key.PublicKey())
		if err != nil {
			t.Errorf("KnownHostsLineForKey(%q): %v", tt.hosts, err)
			continue
		}
		if want := tt.want + " " + pub; line != want {
			t.Errorf("KnownHostsLineForKey(%q) = %q, want %q", tt.hosts, line, want)
		}
		marker, hosts, got, _, _, err := ssh.ParseKnownHosts([]byte(line))
		if err != nil || marker != "" || strings.Join(hosts, ",") != tt.want || !bytes.Equal(got.Marshal(), key.PublicKey().Marshal()) {
			t.Errorf("parsed back %q: marker %q hosts %q err %v", line, marker, hosts, err)
		}
	}

	for _, bad := range [][]string{
		nil, {""}, {"a b"}, {"a,b"}, {"*.corp"}, {"db?"}, {"#db"}, {"|1|abc"}, {"!db"}, {"@"}, {"@revoked"},
		{"db:0"}, {"db:65536"}, {"db:"}, {"db:ssh"}, {"db:-1"}, {"[::1"}, {"[::1]x"}, {"[::1]:"},
		{"[db]]:22"}, {"a\nb"}, {"db.internal", "x\x00"},
	} {
		if line, err := KnownHostsLineForKey(bad, key.PublicKey()); !errors.Is(err, ErrInvalidPattern) {
			t.Errorf("KnownHostsLineForKey(%q) = %q, %v; want ErrInvalidPattern", bad, line, err)
		}
	}

	ca := newCA(t)
	_, cert := hostCert(t, ca, "db")
	if _, err := KnownHostsLineForKey([]string{"db"}, cert); err == nil {
		t.Error("a certificate was pinned")
	}
	if _, err := KnownHostsLineForKey([]string{"db"}, nil); err == nil {
		t.Error("no key: no error")
	}
}
