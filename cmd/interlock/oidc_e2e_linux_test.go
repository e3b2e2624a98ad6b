package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/identity/oidctest"
	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// loginIn runs `interlock login` as a process of cg with the token in a
// file.
func (e *e2e) loginIn(t *testing.T, cg redirecttest.Cgroup, token string) (string, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := redirecttest.RunIn(t, cg, exec.Command(interlockBin, "login", "--token-file", f, "--config", e.cfgPath))
	return string(out), err
}

func TestOIDCWorkloadThroughKernel(t *testing.T) {
	e := newE2E(t)
	srv, target := shop(t, e)
	idp := oidctest.Start(t, oidctest.Options{})
	idp.CreateClient(t, "support-agent", "support-secret-0123456789", []string{"interlock"}, nil, "agents")
	idp.CreateClient(t, "dba-bot", "dba-secret-0123456789", []string{"interlock", "interlock-admin"}, nil, "dba")
	brief := oidctest.Start(t, oidctest.Options{AccessTokenTTL: 7 * time.Second})
	brief.CreateClient(t, "brief-agent", "brief-secret-0123456789", []string{"interlock"}, nil, "agents")

	e.writeConfig("targets:\n" + target + fmt.Sprintf(`identity:
  oidc:
    - {name: corp, issuer: %q, audience: interlock, admin_audience: interlock-admin}
    - {name: brief, issuer: %q, audience: interlock}
workloads:
  - name: support
    match: {cgroup: %[3]s/support}
    identity: {oidc: corp}
  - name: helper
    match: {cgroup: %[3]s/helper}
    identity: {oidc: corp}
  - name: shortlived
    match: {cgroup: %[3]s/shortlived}
    identity: {oidc: brief}
policy:
  default: deny
  rules:
    - name: agents-read
      when: '"agents" in identity.groups && sql.kind == "read"'
      action: allow
`, idp.Issuer(), brief.Issuer(), e.top))
	e.start()
	support := e.cgroup("/support")

	t.Run("refused without a token", func(t *testing.T) {
		// The gateway asks such a caller for its token as the password;
		// psql, having none, gives up.
		out, err := psql(t, support, srv.Host, srv.Port, "SELECT 1")
		if err == nil || !strings.Contains(out, "no password supplied") {
			t.Fatalf("a workload without a login: %v\n%s", err, out)
		}
		if got := srv.Query(t, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'"); got != "0" {
			t.Errorf("the unauthenticated session reached upstream: %s connections", got)
		}
	})

	t.Run("a bad token is refused at login", func(t *testing.T) {
		bad := brief.Token(t, "brief-agent", "brief-secret-0123456789", "interlock") // another issuer
		out, err := e.loginIn(t, support, bad)
		if err == nil || !strings.Contains(out, "token refused") {
			t.Errorf("login with another issuer's token: %v\n%s", err, out)
		}
	})

	t.Run("served after interlock login", func(t *testing.T) {
		token := idp.Token(t, "support-agent", "support-secret-0123456789", "interlock")
		out, err := e.loginIn(t, support, token)
		if err != nil || !strings.Contains(out, "workload support is support-agent") {
			t.Fatalf("login: %v\n%s", err, out)
		}
		out, err = psql(t, support, srv.Host, srv.Port, "SELECT name FROM customers WHERE id = 2")
		if err != nil || strings.TrimSpace(out) != "Bob" {
			t.Fatalf("psql after login: %v\n%s", err, out)
		}
		if st := e.run("status"); !strings.Contains(st, "login:") || !strings.Contains(st, "support is support-agent") {
			t.Errorf("status does not show the login:\n%s", st)
		}
		// ... and what the metrics are labelled with.
		if got := e.metric("interlock_commands_total", `subject="support-agent"`, `issuer="`+idp.Issuer()+`"`, `groups="agents"`, `decision="allow"`); got != 1 {
			t.Errorf("commands_total for the OIDC identity: %v, want 1", got)
		}
		// The token's identity is what the recording and the sessions show.
		list := e.run("sessions", "list")
		if !strings.Contains(list, "support-agent") {
			t.Errorf("sessions list does not name the OIDC subject:\n%s", list)
		}
	})

	t.Run("token as the password", func(t *testing.T) {
		helper := e.cgroup("/helper")
		token := idp.Token(t, "support-agent", "support-secret-0123456789", "interlock")
		cmd := exec.Command("psql", "-X", "-At", "-c", "SELECT count(*) FROM customers")
		cmd.Env = append(os.Environ(), "PGHOST="+srv.Host, fmt.Sprintf("PGPORT=%d", srv.Port), "PGUSER=agent",
			"PGDATABASE=postgres", "PGSSLMODE=prefer", "PGPASSWORD="+token)
		out, err := redirecttest.RunIn(t, helper, cmd)
		if err != nil || strings.TrimSpace(string(out)) != "2" {
			t.Errorf("psql with the token as its password: %v\n%s", err, out)
		}
		cmd = exec.Command("psql", "-X", "-At", "-c", "SELECT 1")
		cmd.Env = append(os.Environ(), "PGHOST="+srv.Host, fmt.Sprintf("PGPORT=%d", srv.Port), "PGUSER=agent",
			"PGDATABASE=postgres", "PGSSLMODE=prefer", "PGPASSWORD=not-a-token")
		out, err = redirecttest.RunIn(t, e.cgroup("/shortlived"), cmd)
		if err == nil || !strings.Contains(string(out), "interlock refused the OIDC token") {
			t.Errorf("psql with a wrong password: %v\n%s", err, out)
		}
	})

	t.Run("sessions end when the token expires", func(t *testing.T) {
		short := e.cgroup("/shortlived")
		token := brief.Token(t, "brief-agent", "brief-secret-0123456789", "interlock")
		if out, err := e.loginIn(t, short, token); err != nil {
			t.Fatalf("login: %v\n%s", err, out)
		}
		start := time.Now()
		out, err := psql(t, short, srv.Host, srv.Port, "SELECT pg_sleep(20)")
		if err == nil || time.Since(start) > 15*time.Second || !strings.Contains(out, "OIDC token expired") {
			t.Errorf("a session outliving its token: %v after %v\n%s", err, time.Since(start), out)
		}
		if out, err := psql(t, short, srv.Host, srv.Port, "SELECT 1"); err == nil {
			t.Errorf("served after the token expired:\n%s", out)
		}
	})

	t.Run("admin API with an OIDC token", func(t *testing.T) {
		token := idp.Token(t, "dba-bot", "dba-secret-0123456789", "interlock-admin")
		cmd := exec.Command(interlockBin, "approvals", "list", "--config", e.cfgPath)
		cmd.Env = append(os.Environ(), "INTERLOCK_TOKEN="+token)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "ID") {
			t.Errorf("approvals list with an OIDC token: %v\n%s", err, out)
		}
		// The same client's token for the workloads' audience, which a
		// workload logs in with, is no admin's.
		token = idp.Token(t, "dba-bot", "dba-secret-0123456789", "interlock")
		cmd = exec.Command(interlockBin, "approvals", "list", "--config", e.cfgPath)
		cmd.Env = append(os.Environ(), "INTERLOCK_TOKEN="+token)
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "401") {
			t.Errorf("approvals list with a workload-audience token: %v\n%s", err, out)
		}
	})
}
