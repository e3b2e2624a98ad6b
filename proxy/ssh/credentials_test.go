package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/interlock-dev/interlock/identity/keyfile"
)

// TestUpstreamCredentialsMustBePrivate: an upstream key or password file
// that group or others may read is refused when the target is loaded,
// with the chmod to run.
func TestUpstreamCredentialsMustBePrivate(t *testing.T) {
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "upstream.key")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	password := filepath.Join(dir, "upstream.password")
	if err := os.WriteFile(password, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pinned := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	for _, tc := range []struct {
		name string
		t    Target
		file string
	}{
		{"key", Target{Name: "k", PrivateKeyFile: key, HostKey: pinned}, key},
		{"password", Target{Name: "p", PasswordFile: password, HostKey: pinned}, password},
	} {
		if err := os.Chmod(tc.file, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadTarget(tc.t); err != nil {
			t.Fatalf("%s with mode 0600: %v", tc.name, err)
		}
		if err := os.Chmod(tc.file, 0o640); err != nil {
			t.Fatal(err)
		}
		_, err := loadTarget(tc.t)
		if !errors.Is(err, keyfile.ErrInsecure) || !strings.Contains(err.Error(), "chmod 600 "+tc.file) {
			t.Errorf("%s with mode 0640: %v, want it refused with the chmod to run", tc.name, err)
		}
	}
}
