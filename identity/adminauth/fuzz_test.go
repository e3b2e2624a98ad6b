package adminauth

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadTokens loads arbitrary bytes as a tokens file: it must return
// tokens or a *FileError, never panic, and what it accepts must hold up.
func FuzzLoadTokens(f *testing.F) {
	f.Add([]byte(goodFile))
	f.Add([]byte("[]\n"))
	f.Add([]byte("- token: short\n  subject: a\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "tokens.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		toks, err := LoadTokens(path)
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) || fe.File != path || fe.Line < 0 || fe.Column < 0 {
				t.Fatalf("LoadTokens error %q is not a *FileError for %s", err, path)
			}
			return
		}
		entries, err := parseTokens(path, data)
		if err != nil || len(entries) != toks.Len() {
			t.Fatalf("parseTokens disagrees with LoadTokens: %d entries, %v", len(entries), err)
		}
		seen := map[[32]byte]bool{}
		for _, e := range entries {
			if e.subject == "" || seen[e.sum] || e.line <= 0 {
				t.Fatalf("accepted entry %+v (duplicate %v)", e, seen[e.sum])
			}
			seen[e.sum] = true
		}
		if _, ok := toks.Lookup(""); ok {
			t.Fatal("the empty token matched")
		}
	})
}
