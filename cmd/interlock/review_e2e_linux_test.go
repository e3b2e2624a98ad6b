package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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
