package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
)

// TestChangedSections: loading the same file twice changes nothing (a
// reload of an unchanged file must not be refused), a policy change is
// not a change of another section, and each other section's change is
// named.
func TestChangedSections(t *testing.T) {
	path := writeCheckConfig(t, checkRules)
	load := func() *config.Config {
		t.Helper()
		c, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	running := load()
	if got := changedSections(running, load()); len(got) != 0 {
		t.Fatalf("the same file loaded twice: %v changed", got)
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		old, new string
		want     []string
	}{
		{"action: deny}", "action: allow}", nil},
		{"127.0.0.2:5432", "127.0.0.4:5432", []string{"targets"}},
		{"cgroup: /b", "cgroup: /c", []string{"workloads"}},
		{"audience: interlock}", "audience: other}", []string{"identity"}},
		{"targets:\n", "gateway: {log_level: debug}\ntargets:\n", []string{"gateway"}},
	} {
		text := strings.Replace(string(orig), tt.old, tt.new, 1)
		if text == string(orig) {
			t.Fatalf("%q is not in the file", tt.old)
		}
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := changedSections(running, load()); !slices.Equal(got, tt.want) {
			t.Errorf("%q → %q: changed %v, want %v", tt.old, tt.new, got, tt.want)
		}
	}
}

// TestFailedTests names the failing tests of a policy, as a reload
// reports them, and none of a passing one.
func TestFailedTests(t *testing.T) {
	path := writeCheckConfig(t, checkRules+`    - {name: ok, request: {target: shop, sql: "SELECT 1"}, expect: allow}
    - {name: wrong, request: {target: shop, sql: "SELECT 1", user: sandbox, database: x}, expect: allow}
    - {request: {target: shop, sql: "SELEC 1"}, expect: deny}
`)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := compilePolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := failedTests(cfg, pol)
	if len(got) != 2 || !strings.HasPrefix(got[0], `wrong: want allow, got deny (rule "sandbox-only")`) || !strings.Contains(got[1], "tests[2]") {
		t.Fatalf("failed tests: %q", got)
	}
}
