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

// TestLoadGateway: a file whose policy does not compile, or that has a
// misspelt field outside the gateway section, still gives the CLI the
// gateway's admin address; a broken gateway section, a file that is no
// YAML, and a world-writable file do not.
func TestLoadGateway(t *testing.T) {
	path := filepath.Join(t.TempDir(), "interlock.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const head = "gateway: {admin: \"127.0.0.1:9555\"}\ntargets:\n  - {name: shop, protocol: tcp, address: \"127.0.0.2:7000\"}\n"
	for _, body := range []string{
		head + "policy:\n  rules: [{name: r, when: 'sql.comand == \"x\"', action: deny}]\n",
		head + "policy:\n  rulez: []\n",
	} {
		write(body)
		if _, err := Load(path); err == nil {
			t.Fatalf("Load accepted a broken file:\n%s", body)
		}
		c, err := LoadGateway(path)
		if err != nil {
			t.Fatalf("LoadGateway: %v\n%s", err, body)
		}
		if got := c.Gateway.AdminURL(); got != "http://127.0.0.1:9555" {
			t.Errorf("admin URL %q", got)
		}
		if c.Target("shop") == nil {
			t.Error("the targets were not decoded for display")
		}
	}
	for _, body := range []string{
		"gateway: {admin: \"nowhere\"}\n",
		"gateway: {admin: \"127.0.0.1:9555\"\n",
	} {
		write(body)
		if _, err := LoadGateway(path); err == nil {
			t.Errorf("LoadGateway accepted:\n%s", body)
		}
	}
	write(head)
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadGateway(path); err == nil || !strings.Contains(err.Error(), "chmod o-w") {
		t.Errorf("a world-writable file: %v", err)
	}
}
