package keyfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

func TestReadPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	for _, tt := range []struct {
		name    string
		mode    fs.FileMode
		wantErr string
	}{
		{"owner only", 0o600, ""},
		{"owner read-only", 0o400, ""},
		{"group readable", 0o640, "mode 0640"},
		{"others writable", 0o602, "mode 0602"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // whatever the umask
				t.Fatal(err)
			}
			got, err := ReadPrivate(path)
			switch {
			case tt.wantErr == "" && (err != nil || string(got) != "secret"):
				t.Errorf("ReadPrivate = %q, %v", got, err)
			case tt.wantErr != "" && (!errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ReadPrivate = %q, %v; want ErrInsecure saying %q", got, err, tt.wantErr)
			}
			os.Remove(path)
		})
	}
	if _, err := ReadPrivate(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := ReadPrivate(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

// TestReadPrivateForeignOwner: a key another user owns is refused, even
// with mode 0600: that user could replace it.
func TestReadPrivateForeignOwner(t *testing.T) {
	redirecttest.RequirePrivileged(t)
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadPrivate(path); !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Errorf("ReadPrivate of a key uid 65534 owns = %q, %v; want ErrInsecure naming the owner", got, err)
	}
}

func TestReadPair(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "ca"), filepath.Join(dir, "ca.pub")
	if _, _, err := ReadPair(priv, pub); !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrPartial) {
		t.Fatalf("neither file: %v", err)
	}
	if err := WriteNew(pub, []byte("public"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadPair(priv, pub); !errors.Is(err, ErrPartial) || errors.Is(err, fs.ErrNotExist) ||
		!strings.Contains(err.Error(), pub+" exists but "+priv+" is missing") {
		t.Fatalf("only the public file: %v", err)
	}
	if err := WriteNew(priv, []byte("private"), 0o600); err != nil {
		t.Fatal(err)
	}
	if a, b, err := ReadPair(priv, pub); err != nil || string(a) != "private" || string(b) != "public" {
		t.Fatalf("both: %q %q %v", a, b, err)
	}
	os.Remove(pub)
	if _, _, err := ReadPair(priv, pub); !errors.Is(err, ErrPartial) || !strings.Contains(err.Error(), priv+" exists but "+pub+" is missing") {
		t.Fatalf("only the private file: %v", err)
	}
	os.Chmod(priv, 0o644)
	if err := WriteNew(pub, []byte("public"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadPair(priv, pub); err == nil || errors.Is(err, ErrPartial) || !strings.Contains(err.Error(), priv) {
		t.Fatalf("a loose private file: %v", err)
	}
}

func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteNew(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteNew(path, []byte("two"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Errorf("the existing file became %q", b)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v", fi.Mode(), err)
	}
	if err := WriteNew(filepath.Join(dir, "no", "such", "dir"), nil, 0o600); err == nil {
		t.Error("WriteNew into a missing folder succeeded")
	}
	if err := SyncDir(dir); err != nil {
		t.Errorf("SyncDir: %v", err)
	}
	if err := SyncDir(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SyncDir of a missing folder: %v", err)
	}
}
