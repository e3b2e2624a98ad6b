package proxy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock-dev/interlock/identity/keyfile"
)

func TestReadPasswordFile(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ content, want string }{
		{"s3cret\n", "s3cret"},
		{"s3cret\r\n", "s3cret"},
		{"s3cret", "s3cret"},
		{" spaced \n\n", " spaced "},
	} {
		path := filepath.Join(dir, "pw")
		if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := ReadPasswordFile(path); err != nil || got != tt.want {
			t.Errorf("%q: %q, %v; want %q", tt.content, got, err, tt.want)
		}
	}
	if got, err := ReadPasswordFile(""); got != "" || err != nil {
		t.Errorf("no file: %q, %v", got, err)
	}
	if _, err := ReadPasswordFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestReadPasswordFileRefusesOpenFiles: a password others may read is
// refused with the chmod to run, as a private key is.
func TestReadPasswordFileRefusesOpenFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620} {
		if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := ReadPasswordFile(path)
		if !errors.Is(err, keyfile.ErrInsecure) || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: %v, want it refused with the chmod to run", mode, err)
		}
	}
}
