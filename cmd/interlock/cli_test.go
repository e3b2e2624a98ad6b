package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCommand(&out, &out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// demoConfig is docs/demo/demo.yaml with its password file (which the
// demo writes at run time) in a temporary folder.
func demoConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile("../../docs/demo/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The credential files the demo writes before it loads the config.
	text := string(b)
	for _, name := range []string{"shop.password", "bastion.key", "bastion.known_hosts", "admin-tokens.yaml"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		text = strings.ReplaceAll(text, "/tmp/interlock-demo/"+name, p)
	}
	cfg := filepath.Join(dir, "demo.yaml")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestCheck(t *testing.T) {
	out, err := runCLI(t, "check", "--config", demoConfig(t))
	if err != nil || !strings.Contains(out, "ok (3 targets, 1 workloads, 5 rules, 1 masks); policy tests: 9 passed, 0 failed") {
		t.Errorf("check of the demo config: %q, %v", out, err)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("targets:\n  - name: x\n    protocol: tcp\n    address: 127.0.0.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = runCLI(t, "check", "--config", bad)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), "targets[0].address") {
		t.Errorf("check of a bad config: %v, want an error naming the file and targets[0].address", err)
	}
}

func TestGatewayFlags(t *testing.T) {
	demo := demoConfig(t)
	_, err := runCLI(t, "gateway", "--config", demo, "--explicit-workload", "agent")
	if err == nil || !strings.Contains(err.Error(), "needs --explicit") {
		t.Errorf("--explicit-workload without --explicit: %v", err)
	}
	_, err = runCLI(t, "gateway", "--config", demo, "--explicit", "--explicit-workload", "nobody")
	if err == nil || !strings.Contains(err.Error(), `no workload "nobody"`) {
		t.Errorf("unknown --explicit-workload: %v", err)
	}
}

func TestVersion(t *testing.T) {
	out, err := runCLI(t, "version")
	if err != nil || !strings.HasPrefix(out, "interlock ") {
		t.Errorf("version: %q, %v", out, err)
	}
}

func TestCheckFailingPolicyTest(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	err := os.WriteFile(cfg, []byte(`targets:
  - {name: echo, protocol: tcp, address: "127.0.0.2:7000"}
policy:
  rules:
    - {name: no-tcp, targets: [echo], action: deny}
  tests:
    - {name: echo-allowed, request: {target: echo}, expect: allow}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "check", "--config", cfg)
	if err == nil || !strings.Contains(out, "FAIL echo-allowed: got deny (rule no-tcp), want allow") || !strings.Contains(out, "0 passed, 1 failed") {
		t.Errorf("check with a failing policy test: %v\n%s", err, out)
	}
}

// TestCheckSSHFacts: a policy test of an SSH command sees every fact the
// handler gives (program paths and assignments too), so it decides as the
// gateway would.
func TestCheckSSHFacts(t *testing.T) {
	cfg := demoConfig(t)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), "    - name: no-forwarding\n", `    - name: system-programs-only
      targets: [bastion]
      when: ssh.request == "exec" && (ssh.program_paths.exists(p, p.contains("/")) || size(ssh.assignments) > 0)
      action: deny
    - name: no-forwarding
`, 1)
	text = strings.Replace(text, "  tests:\n", `  tests:
    - request: {target: bastion, ssh: {command: "./ls"}}
      expect: deny
      rule: system-programs-only
    - request: {target: bastion, ssh: {command: "PATH=/tmp ls"}}
      expect: deny
      rule: system-programs-only
`, 1)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "check", "--config", cfg)
	if err != nil || !strings.Contains(out, "11 passed, 0 failed") {
		t.Errorf("check with SSH path and assignment facts: %v\n%s", err, out)
	}
}
