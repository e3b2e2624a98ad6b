package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSSHTargets(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "bastion.key")
	if err := os.WriteFile(key, []byte("not checked here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.key")
	if err := os.WriteFile(open, []byte("k\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const pinned = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGT3eThmi0bqOyBsPTIWBYJBexShC8Ki+wHUDe1t9HX2"
	target := func(extra string) string {
		return "targets:\n  - name: bastion\n    protocol: ssh\n    address: 127.0.0.2:22\n" + extra
	}
	up := func(fields string) string { return "    upstream: {" + fields + "}\n" }
	tests := []struct {
		name, yaml, want string
	}{
		{"no upstream", target(""), "targets[0].upstream: protocol ssh needs upstream credentials"},
		{"no user", target(up("private_key_file: " + key + ", known_hosts: " + kh)), "targets[0].upstream.user: the user the gateway logs in as is required"},
		{"no credential", target(up("user: ops, known_hosts: " + kh)), "targets[0].upstream.private_key_file: a private key file (or password_file) for the upstream login is required"},
		{"open key", target(up("user: ops, private_key_file: " + open + ", known_hosts: " + kh)), "is open to other users (mode 0644)"},
		{"no host key check", target(up("user: ops, private_key_file: " + key)), "targets[0].upstream.known_hosts: upstream's host key must be checked: give known_hosts or host_key"},
		{"both host key checks", target(up(fmt.Sprintf("user: ops, private_key_file: %s, known_hosts: %s, host_key: %q", key, kh, pinned))), "targets[0].upstream.host_key: known_hosts and host_key are exclusive"},
		{"bad pinned key", target(up("user: ops, private_key_file: " + key + ", host_key: nonsense")), "targets[0].upstream.host_key: not a public key"},
		{"missing known_hosts", target(up("user: ops, private_key_file: " + key + ", known_hosts: /nonexistent/kh")), "targets[0].upstream.known_hosts: stat /nonexistent/kh"},
		{"postgres field", target(up("user: ops, private_key_file: " + key + ", known_hosts: " + kh + ", tls: disable")), "targets[0].upstream.tls: tls is for postgres targets; remove it"},
		{"agent_tls on ssh", target(up("user: ops, private_key_file: "+key+", known_hosts: "+kh) + "    agent_tls: false\n"), "targets[0].agent_tls: agent_tls is for postgres targets"},
		{"agent_host_key on postgres", "targets:\n  - name: shop\n    protocol: postgres\n    address: 127.0.0.2:5432\n    agent_host_key: true\n", "targets[0].agent_host_key: agent_host_key is for ssh targets"},
		{"ssh field on postgres", "targets:\n  - name: shop\n    protocol: postgres\n    address: 127.0.0.2:5432\n" + up("user: app, password_file: "+key+", known_hosts: "+kh), "targets[0].upstream.known_hosts: known_hosts is for ssh targets; remove it"},
		{"bad ssh rule", target(up("user: ops, private_key_file: "+key+", known_hosts: "+kh)) + "policy:\n  rules:\n    - name: broken\n      when: ssh.forward.prot == 22\n      action: deny\n", "policy.rules[0] (broken)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "demo.yaml"), []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}

	c, err := Parse(filepath.Join(dir, "demo.yaml"), []byte(target(up("user: ops, private_key_file: bastion.key, known_hosts: known_hosts"))+"    agent_host_key: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if u := c.Targets[0].Upstream; u.PrivateKeyFile != key || u.KnownHosts != kh || !c.Targets[0].AgentHostKey {
		t.Errorf("paths not resolved against the config's folder: %+v", u)
	}
	if _, err := Parse(filepath.Join(dir, "demo.yaml"), []byte(target(up(fmt.Sprintf("user: ops, password_file: %s, host_key: %q", key, pinned))))); err != nil {
		t.Errorf("password and pinned key: %v", err)
	}
}
