package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadRefusesWorldWritable: the file holds the policy; one every user
// may write is refused with what to do.
func TestLoadRefusesWorldWritable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "interlock.yaml")
	body := "targets:\n  - {name: t, protocol: tcp, address: \"127.0.0.2:7000\"}\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for mode, ok := range map[os.FileMode]bool{0o600: true, 0o644: true, 0o664: true, 0o666: false, 0o646: false} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if ok != (err == nil) || !ok && !strings.Contains(err.Error(), "chmod o-w") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
}
