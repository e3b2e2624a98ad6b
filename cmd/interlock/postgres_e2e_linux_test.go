package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock-dev/interlock/proxy/postgres/pgtest"
	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// shopPolicy is the policy of the PostgreSQL issue, verbatim in spirit.
const shopPolicy = `policy:
  default: allow
  rules:
    - name: no-ddl
      targets: [shop]
      when: sql.kind in ["ddl", "dcl", "procedural"]
      action: deny
      message: schema and privilege changes are not allowed for agents
    - name: no-unbounded-delete
      when: sql.command == "DELETE" && !sql.has_where
      action: deny
  masks:
    - name: pii
      targets: [shop]
      columns: [email]
      detectors: [credit_card, email]
  tests:
    - request: {target: shop, sql: "DROP TABLE customers"}
      expect: deny
`

// shop starts a real PostgreSQL on 127.0.0.2 with a customers table and
// the upstream role the gateway logs in as; it returns the server and the
// target section of a config.
func shop(t *testing.T, e *e2e) (*pgtest.Server, string) {
	t.Helper()
	srv := pgtest.Start(t, pgtest.Options{Host: "127.0.0.2", Auth: "scram-sha-256"})
	srv.CreateUser(t, "app", "app-secret")
	srv.Exec(t, `CREATE TABLE public.customers (id int PRIMARY KEY, name text, email text, note text)`)
	srv.Exec(t, `INSERT INTO public.customers VALUES
		(1, 'Ada', 'ada@example.com', 'card 4111 1111 1111 1111'),
		(2, 'Bob', 'bob@example.org', 'no secrets here')`)
	srv.Exec(t, `GRANT ALL ON public.customers TO app`)
	pw := filepath.Join(e.dir, "shop.password")
	if err := os.WriteFile(pw, []byte("app-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, fmt.Sprintf(`  - name: shop
    protocol: postgres
    address: %s:%d
    upstream:
      user: app
      password_file: %s
      tls: disable
`, srv.Host, srv.Port, pw)
}

// psql runs the real psql client, with no password, as a process in cg.
func psql(t *testing.T, cg redirecttest.Cgroup, host string, port int, sql string) (string, error) {
	t.Helper()
	cmd := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql)
	cmd.Env = append(os.Environ(),
		"PGHOST="+host, fmt.Sprintf("PGPORT=%d", port),
		"PGUSER=agent", "PGDATABASE=postgres", "PGSSLMODE=prefer", "PGCONNECT_TIMEOUT=10")
	out, err := redirecttest.RunIn(t, cg, cmd)
	return string(out), err
}

func TestPostgresThroughKernel(t *testing.T) {
	e := newE2E(t)
	srv, target := shop(t, e)
	e.writeConfig("targets:\n" + target + fmt.Sprintf(`workloads:
  - name: agent
    match: {cgroup: %s/agent}
    identity: {subject: "agent:demo", groups: [agents]}
    egress: {default: deny}
`, e.top) + shopPolicy)
	if out := e.run("check"); !strings.Contains(out, "1 passed, 0 failed") {
		t.Errorf("interlock check: %s", out)
	}
	e.start()
	agent := e.cgroup("/agent")

	t.Run("masked read", func(t *testing.T) {
		out, err := psql(t, agent, srv.Host, srv.Port, "SELECT id, email, note FROM customers ORDER BY id")
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		if strings.Contains(out, "ada@example.com") || strings.Contains(out, "4111 1111 1111 1111") {
			t.Errorf("unmasked values reached the agent:\n%s", out)
		}
		if !strings.Contains(out, "1|[masked]|card [masked:credit_card]") || !strings.Contains(out, "2|[masked]|no secrets here") {
			t.Errorf("rows not masked as expected:\n%s", out)
		}
	})

	t.Run("masked copy", func(t *testing.T) {
		out, err := psql(t, agent, srv.Host, srv.Port, "COPY public.customers TO STDOUT")
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		if !strings.Contains(out, "1\tAda\t[masked]\tcard [masked:credit_card]") || strings.Contains(out, "@example") {
			t.Errorf("COPY rows not masked:\n%s", out)
		}
	})

	t.Run("denied drop", func(t *testing.T) {
		out, err := psql(t, agent, srv.Host, srv.Port, "DROP TABLE customers")
		if err == nil {
			t.Fatalf("DROP TABLE succeeded:\n%s", out)
		}
		if !strings.Contains(out, "schema and privilege changes are not allowed for agents") {
			t.Errorf("psql did not show the rule's message:\n%s", out)
		}
		if got := srv.Query(t, "SELECT count(*) FROM public.customers"); got != "2" {
			t.Errorf("after the denied DROP, customers has %q rows", got)
		}
		if got := e.metric("interlock_blocked_commands_total", `rule="no-ddl"`, `workload="agent"`, `protocol="postgres"`); got != 1 {
			t.Errorf("blocked commands for no-ddl: %v, want 1", got)
		}
	})

	t.Run("recorded", func(t *testing.T) {
		list := e.run("sessions", "list")
		var id string
		for _, line := range strings.Split(list, "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.Contains(line, "shop") {
				id = f[0]
			}
		}
		if id == "" {
			t.Fatalf("no shop session in:\n%s", list)
		}
		found := false
		for _, line := range strings.Split(list, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !strings.Contains(line, "shop") {
				continue
			}
			show := e.run("sessions", "show", f[0])
			if strings.Contains(show, "DROP TABLE customers") && strings.Contains(show, "no-ddl") {
				found = true
				if v := e.run("sessions", "verify", f[0]); !strings.Contains(v, "intact") {
					t.Errorf("verify: %s", v)
				}
			}
		}
		if !found {
			t.Errorf("no recorded session shows the denied DROP:\n%s", list)
		}
	})
}

func TestPostgresExplicit(t *testing.T) {
	e := newE2E(t)
	srv, target := shop(t, e)
	plain := freePort(t, "127.0.0.1")
	target += fmt.Sprintf("    listen: 127.0.0.1:%d\n", plain)
	e.writeConfig("targets:\n" + target + fmt.Sprintf(`workloads:
  - name: agent
    match: {cgroup: %s/agent}
`, e.top) + shopPolicy)
	agent := e.cgroup("/agent")
	e.start("--explicit")

	out, err := psql(t, agent, "127.0.0.1", plain, "SELECT email FROM customers WHERE id = 2")
	if err != nil || strings.TrimSpace(out) != "[masked]" {
		t.Errorf("explicit select: %v\n%s", err, out)
	}
	out, err = psql(t, agent, "127.0.0.1", plain, "DELETE FROM customers")
	if err == nil || !strings.Contains(out, "no-unbounded-delete") {
		t.Errorf("unbounded delete: %v\n%s", err, out)
	}
	if got := srv.Query(t, "SELECT count(*) FROM public.customers"); got != "2" {
		t.Errorf("after the denied DELETE, customers has %q rows", got)
	}
}
