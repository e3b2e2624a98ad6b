package proxy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
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
