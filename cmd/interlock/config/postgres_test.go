package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPostgresTargets(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "shop.password")
	if err := os.WriteFile(secret, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.password")
	if err := os.WriteFile(open, []byte("pw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := func(extra string) string {
		return "targets:\n  - name: shop\n    protocol: postgres\n    address: 127.0.0.2:5432\n" + extra
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"no upstream", target(""), "targets[0].upstream: protocol postgres needs upstream credentials (user, password_file)"},
		{"no user", target(fmt.Sprintf("    upstream: {password_file: %s}\n", secret)), "targets[0].upstream.user: the user the gateway logs in as is required"},
		{"no password file", target("    upstream: {user: app}\n"), "targets[0].upstream.password_file: a file holding the upstream password is required"},
		{"missing password file", target("    upstream: {user: app, password_file: /nonexistent/pw}\n"), "targets[0].upstream.password_file: stat /nonexistent/pw: no such file or directory"},
		{"world-readable password file", target(fmt.Sprintf("    upstream: {user: app, password_file: %s}\n", open)), "is open to other users (mode 0644); chmod o-rwx it"},
		{"bad tls", target(fmt.Sprintf("    upstream: {user: app, password_file: %s, tls: maybe}\n", secret)), `targets[0].upstream.tls: "maybe" is not disable, require or verify-full`},
		{"ca_file without verify-full", target(fmt.Sprintf("    upstream: {user: app, password_file: %s, tls: require, ca_file: %s}\n", secret, secret)), "targets[0].upstream.ca_file: ca_file is used only with tls: verify-full"},
		{"upstream on tcp", "targets:\n  - name: echo\n    protocol: tcp\n    address: 127.0.0.2:7000\n    upstream: {user: x}\n", "targets[0].upstream: protocol tcp forwards bytes and logs in to nothing; remove upstream"},
		{"bad rule", target(fmt.Sprintf("    upstream: {user: app, password_file: %s, tls: disable}\n", secret)) + "policy:\n  rules:\n    - name: broken\n      when: sqll.kind == \"ddl\"\n      action: deny\n", "policy.rules[0] (broken)"},
		{"rule names unknown target", target(fmt.Sprintf("    upstream: {user: app, password_file: %s, tls: disable}\n", secret)) + "policy:\n  rules:\n    - name: r\n      targets: [nope]\n      action: deny\n", "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "demo.yaml"), []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "demo.yaml") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}

	c, err := Parse(filepath.Join(dir, "demo.yaml"), []byte(target("    upstream: {user: app, password_file: shop.password}\n")))
	if err != nil {
		t.Fatal(err)
	}
	u := c.Targets[0].Upstream
	if u.PasswordFile != secret || u.TLS != TLSVerifyFull || !c.Targets[0].AgentTLSEnabled() {
		t.Errorf("defaults: %+v agent_tls=%v; want the password file relative to the config, verify-full, agent TLS on", u, c.Targets[0].AgentTLSEnabled())
	}
}
