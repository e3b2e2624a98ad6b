package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
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

// TestLoadForGateway: the gateway refuses a file that anyone but root and
// its own user could change, directly or by replacing it in its folder.
func TestLoadForGateway(t *testing.T) {
	if os.Geteuid() != 0 {
		redirecttest.Unavailable(t, "this test needs root", "it changes files' owners")
	}
	const nobody = 65534
	body := "targets:\n  - {name: t, protocol: tcp, address: \"127.0.0.2:7000\"}\n"
	setUp := func(t *testing.T) (dir, path string) {
		dir = filepath.Join(t.TempDir(), "etc")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(dir, "interlock.yaml")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir, path
	}
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name   string
		change func(t *testing.T, dir, path string)
		refuse string // "" loads
	}{
		{"root's file", func(*testing.T, string, string) {}, ""},
		{"group-writable, root's group", func(t *testing.T, _, path string) { must(t, os.Chmod(path, 0o664)) }, ""},
		{"group-writable", func(t *testing.T, _, path string) {
			must(t, os.Chown(path, 0, nobody))
			must(t, os.Chmod(path, 0o664))
		}, "writable by its group"},
		{"another user's file", func(t *testing.T, _, path string) { must(t, os.Chown(path, nobody, 0)) }, "owned by uid 65534"},
		{"folder anyone may write", func(t *testing.T, dir, _ string) { must(t, os.Chmod(dir, 0o777)) }, "writable by every user"},
		{"sticky folder anyone may write", func(t *testing.T, dir, _ string) { must(t, os.Chmod(dir, 0o777|os.ModeSticky)) }, ""},
		{"folder its group may write", func(t *testing.T, dir, _ string) {
			must(t, os.Chown(dir, 0, nobody))
			must(t, os.Chmod(dir, 0o775))
		}, "writable by its group"},
		{"another user's folder", func(t *testing.T, dir, _ string) { must(t, os.Chown(dir, nobody, 0)) }, "owned by uid 65534"},
		{"a link to a file in another user's folder", func(t *testing.T, dir, path string) {
			other := filepath.Join(t.TempDir(), "theirs")
			must(t, os.Mkdir(other, 0o755))
			must(t, os.Rename(path, filepath.Join(other, "interlock.yaml")))
			must(t, os.Symlink(filepath.Join(other, "interlock.yaml"), path))
			must(t, os.Chown(other, nobody, 0))
		}, "theirs is owned by uid 65534"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir, path := setUp(t)
			tt.change(t, dir, path)
			_, err := LoadForGateway(path)
			switch {
			case tt.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refuse != "" && (err == nil || !strings.Contains(err.Error(), tt.refuse)):
				t.Fatalf("got %v, want a refusal saying %q", err, tt.refuse)
			}
			if _, err := Load(path); err != nil {
				t.Errorf("Load (the CLI's) refused it: %v", err)
			}
		})
	}
}
