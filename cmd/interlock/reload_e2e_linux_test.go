package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// The reload tests run the gateway in explicit mode: what they are about
// is what a reload changes for sessions and the admin API, not how
// connections reach the gateway.

// relayEnv makes the test binary a TCP relay to the address it holds (see
// startRelay).
const relayEnv = "INTERLOCK_TEST_RELAY"

func init() {
	if to := os.Getenv(relayEnv); to != "" {
		os.Exit(runRelay(to))
	}
}

// runRelay listens on a loopback port, prints its address, and relays each
// connection to to, until its stdin closes.
func runRelay(to string) int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(ln.Addr())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go func() {
			defer c.Close()
			u, err := net.DialTimeout("tcp4", to, 10*time.Second)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return
			}
			defer u.Close()
			// The first side to finish ends both.
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
			<-done
		}()
	}
}

// startRelay runs a relay to the address to as a process in cg and returns
// the address it listens on. A client in this test's process (pgx, kept
// open across a reload) dials the relay, and the gateway's explicit
// listener finds the relay's process, in the workload's cgroup, as its
// caller: --explicit-workload would not do, since it names the workload
// only for callers whose process cannot be found.
func startRelay(t *testing.T, cg redirecttest.Cgroup, to string) string {
	t.Helper()
	f, err := os.Open(cg.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), relayEnv+"="+to)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Before the cgroup's removal (registered earlier, so run later).
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("relay did not say its address: %v", err)
	}
	return strings.TrimSpace(line)
}

// agentPgx connects pgx as a process in cg would, to the explicit
// listener on 127.0.0.1:port (through a relay in cg, see startRelay).
func agentPgx(ctx context.Context, t *testing.T, cg redirecttest.Cgroup, port int) *pgx.Conn {
	t.Helper()
	host, relayPort, _ := net.SplitHostPort(startRelay(t, cg, fmt.Sprintf("127.0.0.1:%d", port)))
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=agent dbname=postgres sslmode=prefer connect_timeout=10", host, relayPort))
	if err != nil {
		t.Fatalf("pgx through the gateway: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// adminPost sends a POST to the admin API with a bearer token and returns
// the status code and body.
func (e *e2e) adminPost(path, token string) (int, string) {
	e.t.Helper()
	return e.adminPostJSON(path, token, "")
}

// statusJSON is `interlock status -o json`.
func (e *e2e) statusJSON() statusReport {
	e.t.Helper()
	out := e.run("status", "-o", "json")
	var r statusReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		e.t.Fatalf("interlock status -o json: %v\n%s", err, out)
	}
	if r.Gateway == nil || r.Gateway.Policy == nil {
		e.t.Fatalf("interlock status -o json has no gateway policy:\n%s", out)
	}
	return r
}

// denial checks that err is the gateway's denial by rule.
func denial(t *testing.T, what string, err error, rule string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Errorf("%s: %v, want a denial by %s", what, err, rule)
		return
	}
	if pe.Code != "42501" || pe.Detail != "rule: "+rule {
		t.Errorf("%s: SQLSTATE %s %q (detail %q), want 42501 with detail %q", what, pe.Code, pe.Message, pe.Detail, "rule: "+rule)
	}
}

const reloadPolicyBefore = `policy:
  default: allow
  rules:
    - name: no-ddl
      when: sql.kind in ["ddl", "dcl", "procedural"]
      action: deny
`

const reloadPolicyAfter = `policy:
  default: allow
  rules:
    - name: no-ddl
      when: sql.kind in ["ddl", "dcl", "procedural"]
      action: deny
    - name: customers-closed
      targets: [shop]
      when: '"customers" in sql.tables'
      action: deny
      message: customers are closed to agents since the reload
  masks:
    - name: pii
      targets: [shop]
      columns: [email]
  tests:
    - request: {target: shop, sql: "SELECT name FROM customers WHERE id = 1"}
      expect: deny
      rule: customers-closed
`

// TestPolicyReload: SIGHUP puts the file's new policy in force, and a
// session open across it follows from its next message: a statement it
// ran before is denied now (simple query, pgx's statement cache, and a
// statement it prepared itself, decided again at its Execute), the session
// stays usable, and results are masked by the new masks.
func TestPolicyReload(t *testing.T) {
	e := newE2E(t)
	srv, target := shop(t, e)
	srv.Exec(t, `CREATE TABLE public.staff (id int PRIMARY KEY, email text);
		INSERT INTO public.staff VALUES (1, 'eve@example.net');
		GRANT SELECT ON public.staff TO app`)
	plain := freePort(t, "127.0.0.1")
	target += fmt.Sprintf("    listen: 127.0.0.1:%d\n", plain)
	rest := "targets:\n" + target + fmt.Sprintf(`workloads:
  - name: agent
    match: {cgroup: %s/agent}
`, e.top)
	e.writeConfig(rest + reloadPolicyBefore)
	agent := e.cgroup("/agent")
	g := e.start("--explicit")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := agentPgx(ctx, t, agent, plain)
	one := func(sql string, args ...any) (string, error) {
		var s string
		err := conn.QueryRow(ctx, sql, args...).Scan(&s)
		return s, err
	}
	simple := pgx.QueryExecModeSimpleProtocol

	// Before: nothing denies reading customers, nothing masks.
	for _, c := range []struct {
		what, sql string
		args      []any
		want      string
	}{
		{"simple query", "SELECT name FROM customers WHERE id = 1", []any{simple}, "Ada"},
		{"simple query again", "SELECT name FROM customers WHERE id = 1", []any{simple}, "Ada"},
		{"statement cache", "SELECT name FROM customers WHERE id = 2", nil, "Bob"},
		{"staff", "SELECT email FROM staff WHERE id = 1", []any{simple}, "eve@example.net"},
	} {
		if got, err := one(c.sql, c.args...); err != nil || got != c.want {
			t.Fatalf("before the reload, %s %q: %q, %v; want %q", c.what, c.sql, got, err, c.want)
		}
	}
	if _, err := conn.Prepare(ctx, "customer_email", "SELECT email FROM customers WHERE id = 1"); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if _, err := conn.Prepare(ctx, "staff_email", "SELECT email FROM staff WHERE id = 1"); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if got, err := one("customer_email"); err != nil || got != "ada@example.com" {
		t.Fatalf("before the reload, prepared customer_email: %q, %v", got, err)
	}
	if got, err := one("staff_email"); err != nil || got != "eve@example.net" {
		t.Fatalf("before the reload, prepared staff_email: %q, %v", got, err)
	}

	before := e.status().Policy
	if before == nil || before.Rules != 1 || before.Masks != 0 {
		t.Fatalf("status policy before the reload: %+v, want 1 rule, 0 masks", before)
	}

	// The file changes; until the reload, status says so.
	e.writeConfig(rest + reloadPolicyAfter)
	if r := e.statusJSON(); r.Gateway.Policy.SHA256 != before.SHA256 || r.ConfigPolicySHA256 == before.SHA256 {
		t.Errorf("status -o json after the file changed: gateway %s, file %s; want the gateway's still %s and the file's another",
			r.Gateway.Policy.SHA256, r.ConfigPolicySHA256, before.SHA256)
	}
	if out := e.run("status"); !strings.Contains(out, "interlock reload puts it in force") {
		t.Errorf("status does not say the file's policy is not in force:\n%s", out)
	}

	signalled := time.Now()
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return e.metric("interlock_config_reloads_total", `result="success"`) == 1
	}, "the SIGHUP reload to succeed")
	select {
	case err := <-g.done:
		g.done <- err
		t.Fatalf("the gateway exited after SIGHUP: %v", err)
	default:
	}
	if resp, err := e.adminGet("/readyz", ""); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("gateway not ready after SIGHUP: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if got := e.metric("interlock_config_reloads_total", `result="failure"`); got != 0 {
		t.Errorf("failed reloads: %v, want 0", got)
	}
	if got := e.metric("interlock_config_last_reload_successful"); got != 1 {
		t.Errorf("interlock_config_last_reload_successful = %v, want 1", got)
	}
	if got := e.metric("interlock_config_last_reload_success_timestamp_seconds"); got < float64(signalled.Unix()) {
		t.Errorf("interlock_config_last_reload_success_timestamp_seconds = %v, want at or after the SIGHUP (%d)", got, signalled.Unix())
	}

	// The same connection, after the reload.
	_, err := one("SELECT name FROM customers WHERE id = 1", simple)
	denial(t, "simple query allowed before the reload", err, "customers-closed")
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && !strings.Contains(pe.Message, "closed to agents since the reload") {
		t.Errorf("denial message %q is not the rule's", pe.Message)
	}
	_, err = one("SELECT name FROM customers WHERE id = 2")
	denial(t, "statement pgx cached before the reload", err, "customers-closed")
	_, err = one("customer_email")
	denial(t, "statement prepared before the reload, at its next Execute", err, "customers-closed")
	if got, err := one("SELECT 1::text"); err != nil || got != "1" {
		t.Fatalf("the session after the denials: %q, %v; want it usable", got, err)
	}
	_, err = one("customer_email")
	denial(t, "statement prepared before the reload, executed again", err, "customers-closed")
	if got, err := one("SELECT email FROM staff WHERE id = 1", simple); err != nil || got != "[masked]" {
		t.Errorf("staff email after the reload: %q, %v; want [masked] by the new mask", got, err)
	}
	if got, err := one("staff_email"); err != nil || got != "[masked]" {
		t.Errorf("staff email from a statement prepared before the reload: %q, %v; want [masked] (decided again, by the policy with the mask)", got, err)
	}
	if got := e.metric("interlock_blocked_commands_total", `rule="customers-closed"`); got != 4 {
		t.Errorf("blocked by customers-closed: %v, want 4", got)
	}

	after := e.status().Policy
	if after == nil || after.SHA256 == before.SHA256 || after.Rules != 2 || after.Masks != 1 || after.Tests != 1 || !after.Loaded.After(before.Loaded) {
		t.Errorf("status policy after the reload: %+v; before: %+v", after, before)
	}
	if r := e.statusJSON(); r.Gateway.Policy.SHA256 != r.ConfigPolicySHA256 || r.ConfigPolicySHA256 != after.SHA256 {
		t.Errorf("status -o json after the reload: gateway %s, file %s; want both %s", r.Gateway.Policy.SHA256, r.ConfigPolicySHA256, after.SHA256)
	}
	out := e.run("status")
	if !strings.Contains(out, "policy:") || !strings.Contains(out, "sha256 "+short(after.SHA256)+" (2 rules, 1 masks)") || strings.Contains(out, "puts it in force") {
		t.Errorf("status after the reload does not show the new policy (sha256 %s) in force:\n%s", short(after.SHA256), out)
	}
}

// TestPolicyReloadRefused: a file that does not load, one that changes
// more than the policy, and one whose policy fails its own tests are each
// refused with the reason; the policy in force keeps deciding, the
// failure is counted, and a fixed file then goes in with interlock reload.
func TestPolicyReloadRefused(t *testing.T) {
	e := newE2E(t)
	srv, target := shop(t, e)
	plain := freePort(t, "127.0.0.1")
	target += fmt.Sprintf("    listen: 127.0.0.1:%d\n", plain)
	workloads := fmt.Sprintf(`workloads:
  - name: agent
    match: {cgroup: %s/agent}
    identity: {subject: "agent:demo"}
`, e.top)
	rest := "targets:\n" + target + workloads
	const inForce = `policy:
  default: allow
  rules:
    - name: no-deletes
      when: sql.command == "DELETE"
      action: deny
  tests:
    - request: {target: shop, sql: "DELETE FROM customers WHERE id = 2"}
      expect: deny
`
	// Without no-deletes: would it go in force, the DELETE would run.
	const allowsDeletes = `policy:
  default: allow
`
	e.writeConfig(rest + inForce)
	agent := e.cgroup("/agent")
	g := e.start("--explicit")
	sha := e.status().Policy.SHA256

	// stillInForce checks that the first policy decides: the DELETE is
	// denied by no-deletes and did not happen, reads work.
	stillInForce := func(t *testing.T) {
		t.Helper()
		out, err := psql(t, agent, "127.0.0.1", plain, "DELETE FROM customers WHERE id = 2")
		if err == nil || !strings.Contains(out, "no-deletes") {
			t.Errorf("DELETE under the policy in force: %v\n%s", err, out)
		}
		if got := srv.Query(t, "SELECT count(*) FROM public.customers"); got != "2" {
			t.Errorf("customers has %s rows, want 2: the DELETE ran", got)
		}
		if out, err := psql(t, agent, "127.0.0.1", plain, "SELECT name FROM customers WHERE id = 1"); err != nil || strings.TrimSpace(out) != "Ada" {
			t.Errorf("SELECT under the policy in force: %v\n%s", err, out)
		}
		if got := e.status().Policy.SHA256; got != sha {
			t.Errorf("policy in force is sha256 %s, want still %s", got, sha)
		}
	}
	stillInForce(t)
	refused := func(t *testing.T) {
		t.Helper()
		stillInForce(t)
		if got := e.metric("interlock_config_last_reload_successful"); got != 0 {
			t.Errorf("interlock_config_last_reload_successful = %v after a refused reload, want 0", got)
		}
	}
	failures := func() float64 { return e.metric("interlock_config_reloads_total", `result="failure"`) }

	t.Run("file does not load", func(t *testing.T) {
		e.writeConfig(rest + `policy:
  default: allow
  rules:
    - name: no-deletes
      when: sql.comand == "DELETE"
      action: deny
`)
		code, body := e.adminPost("/api/v1/reload", e.tokens["alice"])
		if code != http.StatusUnprocessableEntity || !strings.Contains(body, "comand") || !strings.Contains(body, "no-deletes") || !strings.Contains(body, sha[:12]) {
			t.Errorf("POST /api/v1/reload of a file with a CEL error: %d %s; want 422 naming the rule, the field and the policy that stays", code, body)
		}
		if got := failures(); got != 1 {
			t.Errorf("failed reloads: %v, want 1", got)
		}
		refused(t)
		// The CLI finds the gateway from the file's gateway section and
		// passes on the gateway's refusal, which the metrics count.
		out, err := e.runAs("alice", "reload")
		if err == nil || !strings.Contains(out, "comand") || !strings.Contains(out, "422") || !strings.Contains(out, "stays") {
			t.Errorf("interlock reload of a file with a CEL error: %v\n%s; want the gateway's refusal", err, out)
		}
		if got := failures(); got != 2 {
			t.Errorf("failed reloads after interlock reload: %v, want 2", got)
		}
		// interlock status still shows the gateway, and why the file
		// would be refused.
		if out := e.run("status"); !strings.Contains(out, "running") || !strings.Contains(out, "does not load") || !strings.Contains(out, sha[:12]) {
			t.Errorf("interlock status with a file that does not load:\n%s", out)
		}

		e.writeConfig(rest + "policy:\n  default: allow\n  rules: [{name: x, when: 'true'\n")
		out, err = e.runAs("alice", "reload")
		if err == nil || !strings.Contains(out, "interlock.yaml") {
			t.Errorf("interlock reload of a file with a YAML error: %v\n%s", err, out)
		}
		t.Logf("interlock reload of a file with a YAML error said: %s", strings.TrimSpace(out))
		n := failures()
		if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return failures() == n+1 }, "the SIGHUP reload of a broken file to fail")
		refused(t)
	})

	// Each changes the policy too (it would allow the DELETE).
	for _, c := range []struct {
		name, body, want string
	}{
		{"target changed", "targets:\n" + strings.Replace(target, fmt.Sprintf(":%d\n", srv.Port), fmt.Sprintf(":%d\n", srv.Port+1), 1) + workloads, "targets changed"},
		{"workload changed", "targets:\n" + target + strings.Replace(workloads, "agent:demo", "agent:other", 1), "workloads changed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.body == rest {
				t.Fatal("the test's change did not change the file")
			}
			e.writeConfig(c.body + allowsDeletes)
			n := failures()
			out, err := e.runAs("alice", "reload")
			if err == nil || !strings.Contains(out, "422") || !strings.Contains(out, c.want) || !strings.Contains(out, "restart the gateway") {
				t.Errorf("interlock reload: %v\n%s\nwant a refusal saying %q", err, out, c.want)
			}
			if got := failures(); got != n+1 {
				t.Errorf("failed reloads: %v, want %v", got, n+1)
			}
			refused(t)
		})
	}

	t.Run("policy tests fail", func(t *testing.T) {
		e.writeConfig(rest + allowsDeletes + `  tests:
    - request: {target: shop, sql: "DELETE FROM customers WHERE id = 2"}
      expect: deny
`)
		n := failures()
		out, err := e.runAs("alice", "reload")
		if err == nil || !strings.Contains(out, "422") || !strings.Contains(out, "1 of the policy's tests fail") {
			t.Errorf("interlock reload of a policy that fails its tests: %v\n%s", err, out)
		}
		if got := failures(); got != n+1 {
			t.Errorf("failed reloads: %v, want %v", got, n+1)
		}
		refused(t)
	})

	t.Run("fixed", func(t *testing.T) {
		e.writeConfig(rest + `policy:
  default: allow
  rules:
    - name: no-deletes
      when: sql.command == "DELETE"
      action: deny
    - name: no-updates
      when: sql.command == "UPDATE"
      action: deny
  tests:
    - request: {target: shop, sql: "DELETE FROM customers WHERE id = 2"}
      expect: deny
    - request: {target: shop, sql: "UPDATE customers SET name = 'x' WHERE id = 1"}
      expect: deny
      rule: no-updates
`)
		// The reload re-reads the admin tokens file too: carol's token
		// goes, dave's comes.
		const dave = "dave-token-0123456789abcdef"
		tokensFile := filepath.Join(e.dir, "admin-tokens.yaml")
		b, err := os.ReadFile(tokensFile)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, l := range strings.SplitAfter(string(b), "\n") {
			if !strings.Contains(l, e.tokens["carol"]) {
				lines = append(lines, l)
			}
		}
		lines = append(lines, `- {token: "`+dave+`", subject: dave, groups: [dba]}`+"\n")
		if err := os.WriteFile(tokensFile, []byte(strings.Join(lines, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		statusAs := func(token string) int {
			resp, err := e.adminGet("/api/v1/status", token)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if got := statusAs(dave); got != http.StatusUnauthorized {
			t.Errorf("a token added to the file, before the reload: %d, want 401", got)
		}
		if got := statusAs(e.tokens["carol"]); got != http.StatusOK {
			t.Errorf("a token removed from the file, before the reload: %d, want 200", got)
		}

		out, err := e.runAs("alice", "reload")
		if err != nil {
			t.Fatalf("interlock reload of the fixed file: %v\n%s", err, out)
		}
		st := e.status().Policy
		if want := fmt.Sprintf("policy reloaded: sha256 %s, 2 rules, 0 masks, 2 tests passed", short(st.SHA256)); !strings.Contains(out, want) {
			t.Errorf("interlock reload said %q, want %q", out, want)
		}
		if st.SHA256 == sha || st.Rules != 2 {
			t.Errorf("policy in force after the fixed reload: %+v, want another than %s with 2 rules", st, sha)
		}
		if got := e.metric("interlock_config_last_reload_successful"); got != 1 {
			t.Errorf("interlock_config_last_reload_successful = %v after a successful reload, want 1", got)
		}
		if got := e.metric("interlock_config_reloads_total", `result="success"`); got != 1 {
			t.Errorf("successful reloads: %v, want 1", got)
		}
		if got := statusAs(dave); got != http.StatusOK {
			t.Errorf("a token added to the file, after the reload: %d, want 200", got)
		}
		if got := statusAs(e.tokens["carol"]); got != http.StatusUnauthorized {
			t.Errorf("a token removed from the file, after the reload: %d, want 401", got)
		}
		out, err = psql(t, agent, "127.0.0.1", plain, "UPDATE customers SET name = 'x' WHERE id = 1")
		if err == nil || !strings.Contains(out, "no-updates") {
			t.Errorf("UPDATE under the reloaded policy: %v\n%s", err, out)
		}
		if got := srv.Query(t, "SELECT name FROM public.customers WHERE id = 1"); got != "Ada" {
			t.Errorf("the denied UPDATE ran: name %q", got)
		}
		out, err = psql(t, agent, "127.0.0.1", plain, "DELETE FROM customers WHERE id = 2")
		if err == nil || !strings.Contains(out, "no-deletes") {
			t.Errorf("DELETE under the reloaded policy: %v\n%s", err, out)
		}
	})
}

// TestSessionsEnd: after a reload that closes a table (a statement the
// session prepared in SQL before it is refused now), an administrator ends
// the open sessions to the target with `interlock sessions end --target`.
// The client is told why, other sessions stay, and the recording ends with
// the reason.
func TestSessionsEnd(t *testing.T) {
	e := newE2E(t)
	_, target := shop(t, e)
	plain := freePort(t, "127.0.0.1")
	target += fmt.Sprintf("    listen: 127.0.0.1:%d\n", plain)
	echoLn := redirecttest.EchoServer(t, "127.0.0.2:0")
	echoPort := freePort(t, "127.0.0.1")
	rest := "targets:\n" + target + fmt.Sprintf(`  - name: echo
    protocol: tcp
    address: %s
    listen: 127.0.0.1:%d
workloads:
  - name: agent
    match: {cgroup: %s/agent}
`, echoLn.Addr(), echoPort, e.top)
	e.writeConfig(rest + reloadPolicyBefore)
	agent := e.cgroup("/agent")
	e.start("--explicit")
	echoRelay := startRelay(t, agent, fmt.Sprintf("127.0.0.1:%d", echoPort))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := agentPgx(ctx, t, agent, plain)
	if _, err := conn.Exec(ctx, "PREPARE names AS SELECT name FROM customers", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	echo, err := net.Dial("tcp", echoRelay)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()

	e.writeConfig(rest + reloadPolicyAfter)
	if out, err := e.runAs("alice", "reload"); err != nil {
		t.Fatalf("interlock reload: %v\n%s", err, out)
	}
	// What SQL's PREPARE made is decided again by its body, and the
	// session stays usable.
	_, err = conn.Exec(ctx, "EXECUTE names", pgx.QueryExecModeSimpleProtocol)
	if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("EXECUTE of a statement prepared in SQL before the reload that closed its table: %v, want 42501", err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("after the denial: %v", err)
	}
	if len(e.status().Sessions) != 2 {
		t.Fatalf("sessions before: %+v", e.status().Sessions)
	}

	out, err := e.runAs("alice", "sessions", "end", "--target", "shop")
	if err != nil || !strings.Contains(out, "shop") || strings.Contains(out, "echo") {
		t.Fatalf("interlock sessions end --target shop: %v\n%s", err, out)
	}
	_, err = conn.Exec(ctx, "EXECUTE names", pgx.QueryExecModeSimpleProtocol)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P01" || !strings.Contains(pe.Message, "ended by an administrator (alice)") {
		if !conn.IsClosed() {
			t.Fatalf("after sessions end: %v; want FATAL 57P01 saying an administrator ended it", err)
		}
	}
	waitFor(t, func() bool { return len(e.status().Sessions) == 1 }, "the shop session to end")
	if s := e.status().Sessions; s[0].Target != "echo" {
		t.Fatalf("the session left is %+v, want the echo one", s[0])
	}
	if _, err := echo.Write([]byte("x")); err != nil {
		t.Fatalf("the echo session was cut too: %v", err)
	}

	out, err = e.runAs("alice", "sessions", "end")
	if err == nil || !strings.Contains(out, "name the sessions to end") {
		t.Fatalf("sessions end with no selection: %v\n%s", err, out)
	}
	var ended endAnswer
	code, body := e.adminPostJSON("/api/v1/sessions/end", e.tokens["alice"], `{"all": true}`)
	if err := json.Unmarshal([]byte(body), &ended); code != http.StatusOK || err != nil || len(ended.Ended) != 1 || ended.Ended[0].Target != "echo" {
		t.Fatalf("POST /api/v1/sessions/end all: %d %s", code, body)
	}
	if code, body := e.adminPostJSON("/api/v1/sessions/end", "not-a-token-at-all-123", `{"all": true}`); code != http.StatusUnauthorized {
		t.Fatalf("sessions end without an admin token: %d %s", code, body)
	}

	// The shop session's recording ends with the reason.
	out = e.run("sessions", "list", "-o", "json")
	var sums []struct {
		ID     string
		Start  struct{ Target string }
		Reason string
	}
	if err := json.Unmarshal([]byte(out), &sums); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range sums {
		if s.Start.Target == "shop" && strings.Contains(s.Reason, "ended by an administrator (alice)") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no shop recording ends with the administrator's reason:\n%s", out)
	}
}

// adminPostJSON sends a POST with a JSON body to the admin API.
func (e *e2e) adminPostJSON(path, token, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+e.admin+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
