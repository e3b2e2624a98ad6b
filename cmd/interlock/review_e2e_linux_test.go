package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/policy/review"
	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// pendingApproval waits for one pending review request and returns its id.
func (e *e2e) pendingApproval(t *testing.T) approvalView {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, err := e.runAs("alice", "approvals", "list", "--state", "pending", "-o", "json")
		if err != nil {
			t.Fatalf("approvals list: %v\n%s", err, out)
		}
		var list []approvalView
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("approvals list: %v\n%s", err, out)
		}
		if len(list) == 1 {
			return list[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no pending review request")
	return approvalView{}
}

// psqlAsync runs psql in cg and returns a function that waits for it.
func psqlAsync(t *testing.T, cg redirecttest.Cgroup, host string, port int, sql string) func() (string, error) {
	var out string
	var err error
	var wg sync.WaitGroup
	wg.Go(func() { out, err = psql(t, cg, host, port, sql) })
	return func() (string, error) { wg.Wait(); return out, err }
}

func TestReviewThroughKernel(t *testing.T) {
	e := newE2E(t)
	srv, target := shop(t, e)
	var hooks []string
	var hmu sync.Mutex
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		hmu.Lock()
		hooks = append(hooks, fmt.Sprint(m["text"]))
		hmu.Unlock()
	}))
	defer receiver.Close()
	e.writeConfig("targets:\n" + target + fmt.Sprintf(`workloads:
  - name: agent
    match: {cgroup: %s/agent}
    identity: {subject: "agent:demo", groups: [agents]}
    egress: {default: deny}
policy:
  default: allow
  rules:
    - name: notes-quick
      when: sql.kind == "write" && "notes" in sql.tables
      action: review
      review: {approvers: [dba], timeout: 2s}
    - name: orders-held
      when: sql.kind == "write" && "orders" in sql.tables
      action: review
      review: {approvers: [dba], timeout: 60s}
    - name: writes-need-approval
      targets: [shop]
      when: sql.kind == "write"
      action: review
      review:
        approvers: [dba]
        timeout: 60s
        grant: 10m
        notify: {webhook: %s/hook}
  tests:
    - request: {target: shop, sql: "UPDATE customers SET name = 'x' WHERE id = 1"}
      expect: review
`, e.top, receiver.URL))
	srv.Exec(t, `CREATE TABLE public.notes (id int, body text); CREATE TABLE public.orders (id int);
		GRANT ALL ON public.notes, public.orders TO app`)
	g := e.start()
	agent := e.cgroup("/agent")

	t.Run("rejected, and refused deciders", func(t *testing.T) {
		wait := psqlAsync(t, agent, srv.Host, srv.Port, "UPDATE customers SET name = 'Rejected' WHERE id = 1")
		req := e.pendingApproval(t)
		if req.Requester != "agent:demo" || req.Rule != "writes-need-approval" || !strings.Contains(req.Command, "Rejected") {
			t.Errorf("pending %+v", req)
		}
		if out, err := e.runAs("agent", "approvals", "approve", req.ID); err == nil || !strings.Contains(out, "403") {
			t.Errorf("self-approval: %v\n%s", err, out)
		}
		if out, err := e.runAs("carol", "approvals", "approve", req.ID); err == nil || !strings.Contains(out, "403") {
			t.Errorf("approval by a non-approver: %v\n%s", err, out)
		}
		if out, err := e.runAs("bob", "approvals", "deny", req.ID, "--reason", "not today"); err != nil || !strings.Contains(out, "rejected by bob") {
			t.Fatalf("deny: %v\n%s", err, out)
		}
		out, err := wait()
		if err == nil || !strings.Contains(out, "rejected by bob: not today") || !strings.Contains(out, "holds this statement for review as request "+req.ID) {
			t.Errorf("psql after the rejection: %v\n%s", err, out)
		}
		if got := srv.Query(t, "SELECT name FROM customers WHERE id = 1"); got != "Ada" {
			t.Errorf("the rejected UPDATE ran: name %q", got)
		}
	})

	t.Run("timed out", func(t *testing.T) {
		out, err := psql(t, agent, srv.Host, srv.Port, "INSERT INTO notes VALUES (1, 'late')")
		if err == nil || !strings.Contains(out, "no decision in time") {
			t.Errorf("psql after the timeout: %v\n%s", err, out)
		}
		if got := srv.Query(t, "SELECT count(*) FROM notes"); got != "0" {
			t.Errorf("the timed-out INSERT ran: %s rows", got)
		}
	})

	t.Run("approved, then granted", func(t *testing.T) {
		wait := psqlAsync(t, agent, srv.Host, srv.Port, "UPDATE customers SET name = 'Approved' WHERE id = 1")
		req := e.pendingApproval(t)
		if out, err := e.runAs("alice", "approvals", "approve", req.ID); err != nil || !strings.Contains(out, "approved by alice") {
			t.Fatalf("approve: %v\n%s", err, out)
		}
		if out, err := wait(); err != nil {
			t.Fatalf("psql after the approval: %v\n%s", err, out)
		}
		if got := srv.Query(t, "SELECT name FROM customers WHERE id = 1"); got != "Approved" {
			t.Errorf("the approved UPDATE did not run: name %q", got)
		}
		// The session's recording names the request and who decided.
		var shown bool
		for _, line := range strings.Split(e.run("sessions", "list"), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.Contains(line, "shop") {
				if show := e.run("sessions", "show", f[0]); strings.Contains(show, "'Approved'") {
					shown = strings.Contains(show, "review "+req.ID+" by alice") && strings.Contains(show, "approved rule=writes-need-approval")
				}
			}
		}
		if !shown {
			t.Error("no session recording shows the approved UPDATE with its review and decider")
		}
		// The approval's grant covers the next write of the same rule.
		if out, err := psql(t, agent, srv.Host, srv.Port, "UPDATE customers SET name = 'Granted' WHERE id = 2"); err != nil {
			t.Fatalf("granted UPDATE: %v\n%s", err, out)
		}
		if got := srv.Query(t, "SELECT name FROM customers WHERE id = 2"); got != "Granted" {
			t.Errorf("the granted UPDATE did not run: name %q", got)
		}
		for _, d := range []string{"approved", "granted", "rejected", "expired"} {
			if got := e.metric("interlock_commands_total", `decision="`+d+`"`, `protocol="postgres"`); got != 1 {
				t.Errorf("interlock_commands_total{decision=%q} = %v, want 1", d, got)
			}
		}
		if got := e.metric("interlock_blocked_commands_total", `rule="writes-need-approval"`); got != 1 {
			t.Errorf("blocked by writes-need-approval: %v, want 1 (the rejected one)", got)
		}
	})

	t.Run("canceled by the client", func(t *testing.T) {
		// psql sends a CancelRequest on SIGINT, over a new connection the
		// kernel redirects too; the gateway ends the hold.
		cmd := exec.Command("timeout", "-s", "INT", "3", "psql", "-X", "-At", "-c", "INSERT INTO orders VALUES (7)")
		cmd.Env = append(os.Environ(), "PGHOST="+srv.Host, fmt.Sprintf("PGPORT=%d", srv.Port),
			"PGUSER=agent", "PGDATABASE=postgres", "PGSSLMODE=prefer", "PGCONNECT_TIMEOUT=10")
		var out []byte
		var err error
		var wg sync.WaitGroup
		wg.Go(func() { out, err = redirecttest.RunIn(t, agent, cmd) })
		req := e.pendingApproval(t)
		wg.Wait()
		if err == nil || !strings.Contains(string(out), "canceling statement due to user request (interlock review "+req.ID+" abandoned)") {
			t.Errorf("psql after its cancel: %v\n%s", err, out)
		}
		show, serr := e.runAs("alice", "approvals", "show", req.ID, "-o", "json")
		var after approvalView
		if serr != nil || json.Unmarshal([]byte(show), &after) != nil || after.State != "abandoned" || after.Reason != "the client canceled the command" {
			t.Errorf("the canceled request: %v %+v\n%s", serr, after, show)
		}
		if got := srv.Query(t, "SELECT count(*) FROM orders"); got != "0" {
			t.Errorf("the canceled INSERT ran: %s rows", got)
		}
	})

	t.Run("webhook", func(t *testing.T) {
		hmu.Lock()
		defer hmu.Unlock()
		joined := strings.Join(hooks, "\n")
		if !strings.Contains(joined, "interlock approvals approve") || !strings.Contains(joined, "agent:demo") {
			t.Errorf("webhook messages:\n%s", joined)
		}
	})

	t.Run("gateway restarted while pending", func(t *testing.T) {
		if err := g.stop(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		g = e.start()
		// A new grant-free rule would hold; the grant of the old process
		// survives the restart, so this write runs at once.
		if out, err := psql(t, agent, srv.Host, srv.Port, "UPDATE customers SET name = 'After restart' WHERE id = 2"); err != nil {
			t.Fatalf("UPDATE under the surviving grant: %v\n%s", err, out)
		}
		wait := psqlAsync(t, agent, srv.Host, srv.Port, "INSERT INTO orders VALUES (1)")
		req := e.pendingApproval(t)
		// A crash: the held session dies with the process.
		g.stop(syscall.SIGKILL)
		wait()
		g = e.start()
		out, err := e.runAs("alice", "approvals", "show", req.ID, "-o", "json")
		var after approvalView
		if err != nil || json.Unmarshal([]byte(out), &after) != nil || after.State != "abandoned" {
			t.Errorf("request pending at the restart: %v %+v\n%s", err, after, out)
		}
		if got := srv.Query(t, "SELECT count(*) FROM orders"); got != "0" {
			t.Errorf("the INSERT pending at the restart ran: %s rows", got)
		}
		if out, err := e.runAs("alice", "approvals", "approve", req.ID); err == nil || !strings.Contains(out, "409") {
			t.Errorf("approving an abandoned request: %v\n%s", err, out)
		}
	})
}

// psqlFileAsync runs psql in cg on a file of SQL (a statement longer than
// one argument may be) and returns a function that waits for it.
func psqlFileAsync(t *testing.T, cg redirecttest.Cgroup, host string, port int, sql string) func() (string, error) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "*.sql")
	if err == nil {
		_, err = f.WriteString(sql)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-f", f.Name())
	cmd.Env = append(os.Environ(), "PGHOST="+host, fmt.Sprintf("PGPORT=%d", port),
		"PGUSER=agent", "PGDATABASE=postgres", "PGSSLMODE=prefer", "PGCONNECT_TIMEOUT=10")
	var out []byte
	var wg sync.WaitGroup
	wg.Go(func() { out, err = redirecttest.RunIn(t, cg, cmd) })
	return func() (string, error) { wg.Wait(); return string(out), err }
}

// TestReviewStoreBudget: with gateway.review_store_mib, a long statement
// the review store has no room for is denied, not held, and does not run;
// a decided request then makes room. Lists and webhook messages carry a
// long statement's start with its length and hash, show carries it
// whole.
func TestReviewStoreBudget(t *testing.T) {
	e := newE2E(t)
	srv, target := shop(t, e)
	type hook struct {
		size int
		msg  map[string]any
	}
	var hooks []hook
	var hmu sync.Mutex
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		hmu.Lock()
		hooks = append(hooks, hook{len(b), m})
		hmu.Unlock()
	}))
	defer receiver.Close()
	e.gatewayExtra = "  review_store_mib: 1\n"
	e.writeConfig("targets:\n" + target + fmt.Sprintf(`workloads:
  - name: agent
    match: {cgroup: %s/agent}
    identity: {subject: "agent:demo", groups: [agents]}
    egress: {default: deny}
policy:
  default: allow
  rules:
    - name: notes-held
      when: sql.kind == "write"
      action: review
      review: {approvers: [dba], timeout: 60s, notify: {webhook: %s/hook}}
`, e.top, receiver.URL))
	srv.Exec(t, `CREATE TABLE public.notes (id int, body text); GRANT ALL ON public.notes TO app`)
	e.start()
	agent := e.cgroup("/agent")
	// 600 KiB each: one fits the 1 MiB budget, two do not.
	insert := func(id int) string {
		return fmt.Sprintf("INSERT INTO notes VALUES (%d, '%s')", id, strings.Repeat("x", 600<<10))
	}

	waitA := psqlFileAsync(t, agent, srv.Host, srv.Port, insert(1))
	a := e.pendingApproval(t)
	if !a.CommandTruncated || len(a.Command) > review.CommandPrefixLen || a.CommandBytes != len(insert(1)) || a.CommandSHA256 == "" {
		t.Errorf("list: command of %d bytes, truncated %v, command_bytes %d, sha256 %q; want its start and the whole's %d",
			len(a.Command), a.CommandTruncated, a.CommandBytes, a.CommandSHA256, len(insert(1)))
	}
	show, err := e.runAs("alice", "approvals", "show", a.ID, "-o", "json")
	var whole approvalView
	if err := errors.Join(err, json.Unmarshal([]byte(show), &whole)); err != nil ||
		whole.Command != insert(1) || whole.CommandSHA256 != a.CommandSHA256 {
		t.Errorf("show -o json: %v, command of %d bytes, sha256 %s (list: %s)", err, len(whole.Command), whole.CommandSHA256, a.CommandSHA256)
	}

	out, err := psqlFileAsync(t, agent, srv.Host, srv.Port, insert(2))()
	if err == nil || !strings.Contains(out, "could not hold the statement for review") || !strings.Contains(out, "approval store full") {
		t.Errorf("psql of a statement the store has no room for: %v\n%.500s", err, out)
	}
	if got := e.metric("interlock_approvals_refused_total", `reason="store_full"`); got != 1 {
		t.Errorf("interlock_approvals_refused_total{reason=store_full} = %v, want 1", got)
	}
	if got := e.metric("interlock_approvals_store_bytes"); got < 600<<10 || got > 1<<20 {
		t.Errorf("interlock_approvals_store_bytes = %v, want the held statement's and at most 1 MiB", got)
	}

	if out, err := e.runAs("bob", "approvals", "deny", a.ID, "--reason", "no"); err != nil {
		t.Fatalf("deny: %v\n%s", err, out)
	}
	if out, err := waitA(); err == nil {
		t.Errorf("psql after the rejection succeeded:\n%.300s", out)
	}
	// The rejected request makes room for the next.
	waitC := psqlFileAsync(t, agent, srv.Host, srv.Port, insert(3))
	c := e.pendingApproval(t)
	if out, err := e.runAs("alice", "approvals", "approve", c.ID); err == nil || !strings.Contains(out, "--read-whole") {
		t.Errorf("approve of a long statement without --read-whole: %v\n%s", err, out)
	}
	if out, err := e.runAs("alice", "approvals", "approve", c.ID, "--read-whole"); err != nil {
		t.Fatalf("approve --read-whole: %v\n%s", err, out)
	}
	if out, err := waitC(); err != nil {
		t.Fatalf("psql after the approval: %v\n%.300s", err, out)
	}
	if got := srv.Query(t, "SELECT string_agg(id::text, ',') FROM notes"); got != "3" {
		t.Errorf("notes holds ids %q, want only the approved 3", got)
	}
	if out, err := e.runAs("alice", "approvals", "show", a.ID); err == nil || !strings.Contains(out, "404") {
		t.Errorf("show of the request deleted to make room: %v\n%s", err, out)
	}
	if got := e.metric("interlock_approvals_evicted_total"); got != 1 {
		t.Errorf("interlock_approvals_evicted_total = %v, want 1", got)
	}

	// Every webhook message was a few KiB and names the whole.
	deadline := time.Now().Add(10 * time.Second)
	for {
		hmu.Lock()
		n := len(hooks)
		hmu.Unlock()
		if n >= 4 || time.Now().After(deadline) { // a and c, each requested and decided
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	hmu.Lock()
	defer hmu.Unlock()
	if len(hooks) < 4 {
		t.Errorf("%d webhook messages, want 4", len(hooks))
	}
	for _, h := range hooks {
		if h.size > 16<<10 || h.msg["command_truncated"] != true || h.msg["command_sha256"] == "" ||
			h.msg["command_bytes"] != float64(a.CommandBytes) || h.msg["show"] != "interlock approvals show "+fmt.Sprint(h.msg["id"]) {
			t.Errorf("webhook message of %d bytes: command_truncated %v, command_bytes %v, sha256 %v, show %v",
				h.size, h.msg["command_truncated"], h.msg["command_bytes"], h.msg["command_sha256"], h.msg["show"])
		}
	}
}
