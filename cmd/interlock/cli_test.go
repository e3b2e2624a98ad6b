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

func TestCheck(t *testing.T) {
	out, err := runCLI(t, "check", "--config", "../../docs/demo/demo.yaml")
	if err != nil || !strings.Contains(out, "ok (1 targets, 1 workloads, 0 rules, 0 masks); policy tests: 0 passed, 0 failed") {
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
	_, err := runCLI(t, "gateway", "--config", "../../docs/demo/demo.yaml", "--explicit-workload", "agent")
	if err == nil || !strings.Contains(err.Error(), "needs --explicit") {
		t.Errorf("--explicit-workload without --explicit: %v", err)
	}
	_, err = runCLI(t, "gateway", "--config", "../../docs/demo/demo.yaml", "--explicit", "--explicit-workload", "nobody")
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
