package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeCheckConfig writes a configuration with a PostgreSQL and an SSH
// target, a static and an OIDC workload, and the given policy section.
func writeCheckConfig(t *testing.T, policy string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range []string{"pw", "key", "kh"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text := strings.ReplaceAll(`targets:
  - name: shop
    protocol: postgres
    address: 127.0.0.2:5432
    upstream: {user: app, password_file: DIR/pw, tls: disable}
  - name: bastion
    protocol: ssh
    address: 127.0.0.3:22
    upstream: {user: ops, private_key_file: DIR/key, known_hosts: DIR/kh}
identity:
  oidc:
    - {name: corp, issuer: "https://idp.example/", audience: interlock}
workloads:
  - {name: agent, match: {cgroup: /a}}
  - {name: bot, match: {cgroup: /b}, identity: {oidc: corp}}
`, "DIR", dir) + policy
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

const checkRules = `policy:
  default: allow
  rules:
    - {name: sandbox-only, targets: [shop], when: 'sql.user == "sandbox" && sql.database != "sandbox"', action: deny}
    - {name: corp-only, targets: [shop], when: 'sql.database == "hr" && identity.issuer != "https://idp.example/"', action: deny}
    - {name: no-metadata, when: 'ssh.request == "direct-tcpip" && ssh.forward.host in ["metadata.internal", "127.0.0.1"]', action: deny}
    - {name: hold, when: 'ssh.request == "env" || (ssh.request == "exec" && "make" in ssh.programs)', action: review, review: {approvers: [ops]}}
    - {name: srv-only, when: 'ssh.request == "sftp" && !ssh.file.path.startsWith("/srv/")', action: deny}
  tests:
`

// TestCheckDecidesAsTheGateway: each test line is a request whose facts
// the gateway builds differently from the request's words, or a decision
// it takes besides the policy; check must reach the gateway's decision.
func TestCheckDecidesAsTheGateway(t *testing.T) {
	tests := []struct {
		test string // one policy test, YAML flow mapping
		want string // its line in check's output
	}{
		// The database defaults to the user name, as in PostgreSQL.
		{`{name: db-default, request: {target: shop, sql: "select 1", user: sandbox}, expect: allow}`, "PASS db-default: allow"},
		{`{name: db-named, request: {target: shop, sql: "select 1", user: sandbox, database: shop}, expect: deny}`, "PASS db-named: deny (rule sandbox-only)"},
		// The forward host as the handler canonicalises it.
		{`{name: fwd-case, request: {target: bastion, ssh: {request: direct-tcpip, forward_host: Metadata.Internal., forward_port: 80}}, expect: deny}`, "PASS fwd-case: deny (rule no-metadata)"},
		{`{name: fwd-aton, request: {target: bastion, ssh: {request: direct-tcpip, forward_host: "0x7f.1", forward_port: 80}}, expect: deny}`, "PASS fwd-aton: deny (rule no-metadata)"},
		{`{name: fwd-mapped, request: {target: bastion, ssh: {request: direct-tcpip, forward_host: "[::ffff:127.0.0.1]", forward_port: 80}}, expect: deny}`, "PASS fwd-mapped: deny (rule no-metadata)"},
		// SFTP paths cleaned; relative ones have no login directory here.
		{`{name: sftp-dotdot, request: {target: bastion, ssh: {request: sftp, file_op: open, file_path: "/srv/../etc/shadow"}}, expect: deny}`, "PASS sftp-dotdot: deny (rule srv-only)"},
		{`{name: sftp-symlink, request: {target: bastion, ssh: {request: sftp, file_op: symlink, file_path: "../etc", file_target: "/srv/a/l"}}, expect: allow}`, "PASS sftp-symlink: allow"},
		{`{name: sftp-relative, request: {target: bastion, ssh: {request: sftp, file_op: open, file_path: "srv/x"}}, expect: deny}`, "FAIL sftp-relative: building the test's request: file_path and file_target must be absolute in a test"},
		// Review holds only exec, shell and subsystem requests.
		{`{name: env-review, request: {target: bastion, ssh: {request: env, env_name: LANG}}, expect: deny, rule: hold}`, "PASS env-review: deny (rule hold)"},
		{`{name: exec-review, request: {target: bastion, ssh: {command: make}}, expect: review, rule: hold}`, "PASS exec-review: review (rule hold)"},
		// The lexing guard decides before the policy.
		{`{name: guard, request: {target: shop, sql: "SET standard_conforming_strings = off"}, expect: deny, rule: interlock-guard}`, "PASS guard: deny (rule interlock-guard)"},
		{`{name: guard-allow, request: {target: shop, sql: "SET standard_conforming_strings = off"}, expect: allow}`, "FAIL guard-allow: got deny (rule interlock-guard), want allow"},
		{`{name: guard-other, request: {target: shop, sql: "SET work_mem = '64MB'"}, expect: allow}`, "PASS guard-other: allow"},
		// A request that cannot be built fails, with the reason.
		{`{name: sql-and-ssh, request: {target: shop, sql: "select 1", ssh: {command: ls}}, expect: deny}`, "FAIL sql-and-ssh: building the test's request: a test request has sql or ssh, not both (want deny)"},
		{`{name: unreadable, request: {target: bastion, ssh: {command: "echo 'x"}}, expect: deny}`, "FAIL unreadable: building the test's request: interlock cannot read this command"},
		{`{name: unparsable, request: {target: shop, sql: "selec 1"}, expect: deny}`, "FAIL unparsable: building the test's request: "},
		// identity.issuer: an OIDC workload's by default, or the test's.
		{`{name: oidc-default, request: {target: shop, workload: bot, sql: "select 1", user: hr}, expect: allow}`, "PASS oidc-default: allow"},
		{`{name: oidc-other, request: {target: shop, workload: bot, issuer: "https://other.example/", sql: "select 1", user: hr}, expect: deny}`, "PASS oidc-other: deny (rule corp-only)"},
		{`{name: static, request: {target: shop, workload: agent, sql: "select 1", user: hr}, expect: deny}`, "PASS static: deny (rule corp-only)"},
		{`{name: no-workload-issuer, request: {target: shop, issuer: "https://idp.example/", sql: "select 1", user: hr}, expect: allow}`, "PASS no-workload-issuer: allow"},
		{`{name: static-issuer, request: {target: shop, workload: agent, issuer: "https://idp.example/", sql: "select 1", user: hr}, expect: allow}`, `FAIL static-issuer: building the test's request: issuer "https://idp.example/": workload "agent" has a static identity, which has no issuer`},
	}
	for _, tc := range tests {
		name, _, _ := strings.Cut(strings.TrimPrefix(tc.test, "{name: "), ",")
		t.Run(name, func(t *testing.T) {
			out, err := runCLI(t, "check", "--config", writeCheckConfig(t, checkRules+"    - "+tc.test+"\n"))
			if !strings.HasPrefix(out, tc.want) {
				t.Errorf("got %v\n%s\nwant a first line starting %q", err, out, tc.want)
			}
			if failed := strings.HasPrefix(tc.want, "FAIL"); failed != (err != nil) {
				t.Errorf("check's error: %v", err)
			}
		})
	}
}

// TestCheckUnknownTestField: a misspelt field of a test stops the load
// with the file and the field, rather than testing another request.
func TestCheckUnknownTestField(t *testing.T) {
	cfg := writeCheckConfig(t, checkRules+`    - {name: typo, request: {target: shop, sql: "select 1", databse: shop}, expect: allow}
`)
	out, err := runCLI(t, "check", "--config", cfg)
	if err == nil || !strings.Contains(err.Error(), "c.yaml") || !strings.Contains(err.Error(), "databse") {
		t.Errorf("check with an unknown test field: %v\n%s", err, out)
	}
}
