package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/redirect"
	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// The end-to-end tests run the real binary as the gateway, real agent
// processes in real cgroups, and real TCP servers on loopback addresses.

var interlockBin string

func TestMain(m *testing.M) {
	redirecttest.MaybeRunAgent()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "interlock-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	interlockBin = filepath.Join(dir, "interlock")
	out, err := exec.Command("go", "build", "-o", interlockBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building interlock: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// freePort returns a port that was free on addr a moment ago.
func freePort(t *testing.T, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// e2e is one test's world: its own cgroup subtree, bpffs folder, state
// folder and ports, so tests never see each other's (or the host's) state.
type e2e struct {
	t       *testing.T
	root    string // cgroup v2 mount point
	top     string // the test's cgroup subtree, below root
	pin     string
	dir     string
	admin   string
	listen  int
	cfgPath string
	// tokens are the admin tokens of the config's admin_tokens_file, by
	// subject: alice and bob are in dba, carol in ops.
	tokens map[string]string
	// resolveInterval is the gateway's resolve_interval; 100ms when "".
	resolveInterval string
	// gatewayExtra is more of the gateway section, indented two spaces.
	gatewayExtra string
	// adminScheme and adminClient reach the admin API: "http" and the
	// default client unless a test serves it with TLS.
	adminScheme string
	adminClient *http.Client
}

// adminGet sends a GET to the admin API with an optional bearer token.
func (e *e2e) adminGet(path, token string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, cmp.Or(e.adminScheme, "http")+"://"+e.admin+path, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return cmp.Or(e.adminClient, http.DefaultClient).Do(req)
}

// adminTokens writes the admin tokens file of a test's gateway.
func (e *e2e) adminTokens() string {
	e.tokens = map[string]string{
		"alice": "alice-token-0123456789abcdef",
		"bob":   "bob-token-0123456789abcdef",
		"carol": "carol-token-0123456789abcdef",
		"agent": "agent-token-0123456789abcdef",
	}
	f := filepath.Join(e.dir, "admin-tokens.yaml")
	body := `- {token: "alice-token-0123456789abcdef", subject: alice, groups: [dba]}
- {token: "bob-token-0123456789abcdef", subject: bob, groups: [dba]}
- {token: "carol-token-0123456789abcdef", subject: carol, groups: [ops]}
- {token: "agent-token-0123456789abcdef", subject: "agent:demo", groups: [dba]}
`
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return f
}

func newE2E(t *testing.T) *e2e {
	redirecttest.RequirePrivileged(t)
	root, err := identity.CgroupV2Root()
	if err != nil {
		t.Fatal(err)
	}
	// A subtest's name has a "/": one folder each, not one inside another
	// that the cleanup would leave behind.
	name := fmt.Sprintf("interlock-e2e-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	e := &e2e{
		t:      t,
		root:   root,
		top:    "/" + name,
		pin:    "/sys/fs/bpf/" + name,
		dir:    t.TempDir(),
		admin:  fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1")),
		listen: freePort(t, "127.0.0.1"),
	}
	redirecttest.MakeCgroup(t, root, e.top)
	t.Cleanup(func() {
		// Whatever the test did, leave no programs attached.
		if _, err := os.Stat(e.pin); err == nil {
			out, err := exec.Command(interlockBin, "uninstall", "--force", "--config", e.cfgPath).CombinedOutput()
			if err != nil {
				t.Errorf("cleanup uninstall: %v\n%s", err, out)
			}
		}
	})
	return e
}

// writeConfig writes the gateway section plus body (targets, workloads).
func (e *e2e) writeConfig(body string) {
	e.t.Helper()
	cfg := fmt.Sprintf(`gateway:
  listen: 127.0.0.1:%d
  admin: %s
  state_dir: %s
  bpffs: %s
  resolve_interval: %s
  log_level: debug
  admin_tokens_file: %s
  login_socket: %s
%s%s`, e.listen, e.admin, filepath.Join(e.dir, "state"), e.pin, cmp.Or(e.resolveInterval, "100ms"), e.adminTokens(), filepath.Join(e.dir, "login.sock"), e.gatewayExtra, body)
	e.cfgPath = filepath.Join(e.dir, "interlock.yaml")
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

type gatewayProc struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan error
}

// start runs `interlock gateway` and waits until /readyz answers.
func (e *e2e) start(extra ...string) *gatewayProc {
	e.t.Helper()
	logf, err := os.CreateTemp(e.dir, "gateway-*.log")
	if err != nil {
		e.t.Fatal(err)
	}
	args := append([]string{"gateway", "--config", e.cfgPath}, extra...)
	cmd := exec.Command(interlockBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	g := &gatewayProc{cmd: cmd, log: logf, done: make(chan error, 1)}
	go func() { g.done <- cmd.Wait() }()
	e.t.Cleanup(func() {
		g.stop(syscall.SIGKILL)
		if e.t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			e.t.Logf("gateway log:\n%s", b)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-g.done:
			g.done <- err
			b, _ := os.ReadFile(logf.Name())
			e.t.Fatalf("gateway exited: %v\n%s", err, b)
		default:
		}
		if resp, err := e.adminGet("/readyz", ""); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatal("gateway not ready in 20s")
	return nil
}

// stop signals the gateway (by the pid this test started) and waits.
func (g *gatewayProc) stop(sig syscall.Signal) error {
	if g.cmd.ProcessState != nil {
		return nil
	}
	_ = g.cmd.Process.Signal(sig)
	select {
	case err := <-g.done:
		g.done <- err
		return err
	case <-time.After(15 * time.Second):
		_ = g.cmd.Process.Kill()
		return errors.New("gateway did not stop in 15s")
	}
}

// metric returns the value of one sample from /metrics, 0 when absent.
func (e *e2e) metric(name string, labels ...string) float64 {
	e.t.Helper()
	resp, err := e.adminGet("/metrics", "")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if ok {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				e.t.Fatal(err)
			}
			return v
		}
	}
	return 0
}

func (e *e2e) status() gatewayStatus {
	e.t.Helper()
	resp, err := e.adminGet("/api/v1/status", e.tokens["alice"])
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st gatewayStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *e2e) cgroup(path string) redirecttest.Cgroup {
	e.t.Helper()
	return redirecttest.MakeCgroup(e.t, e.root, e.top+path)
}

// runAs runs the CLI with who's admin token and returns its output and
// error.
func (e *e2e) runAs(who string, args ...string) (string, error) {
	e.t.Helper()
	cmd := exec.Command(interlockBin, append(args, "--config", e.cfgPath)...)
	cmd.Env = append(os.Environ(), "INTERLOCK_TOKEN="+e.tokens[who])
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e *e2e) run(args ...string) string {
	e.t.Helper()
	cmd := exec.Command(interlockBin, append(args, "--config", e.cfgPath)...)
	cmd.Env = append(os.Environ(), "INTERLOCK_TOKEN="+e.tokens["alice"])
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("interlock %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// proxied reports whether an agent's connection reached the echo server
// through the gateway: the server then saw the gateway's address, not the
// agent's own.
func proxied(r redirecttest.Result) bool {
	return strings.HasPrefix(r.Reply, "from=") && r.Reply != "from="+r.Local
}

func direct(r redirecttest.Result) bool {
	return r.Reply == "from="+r.Local
}

func TestTransparentGateway(t *testing.T) {
	e := newE2E(t)
	p4 := freePort(t, "127.0.0.2")
	p6 := freePort(t, "::1")
	pn := freePort(t, "127.0.0.1")
	redirecttest.EchoServer(t, fmt.Sprintf("127.0.0.2:%d", p4))
	redirecttest.EchoServer(t, fmt.Sprintf("[::1]:%d", p6))
	redirecttest.EchoServer(t, fmt.Sprintf("127.0.0.1:%d", pn))
	e.writeConfig(fmt.Sprintf(`targets:
  - name: echo
    protocol: tcp
    address: 127.0.0.2:%d
  - name: echo6
    protocol: tcp
    address: "[::1]:%d"
  - name: named
    protocol: tcp
    address: localhost:%d
workloads:
  - name: agent
    match:
      cgroup: %s/agents/demo
    identity:
      subject: agent:demo
      groups: [agents]
    egress:
      default: deny
      allow: ["127.0.0.4"]
`, p4, p6, pn, e.top))
	e.start()
	agent := e.cgroup("/agents/demo")
	sub := e.cgroup("/agents/demo/sub")
	other := e.cgroup("/other")

	echo4 := fmt.Sprintf("127.0.0.2:%d", p4)
	tests := []struct {
		name string
		cg   redirecttest.Cgroup
		dial redirecttest.Dial
		peer string
	}{
		{"ipv4", agent, redirecttest.Dial{Network: "tcp4", Address: echo4, Send: "ping\n"}, echo4},
		{"ipv6", agent, redirecttest.Dial{Network: "tcp6", Address: fmt.Sprintf("[::1]:%d", p6), Send: "ping\n"}, fmt.Sprintf("[::1]:%d", p6)},
		{"v4-mapped", agent, redirecttest.Dial{Network: "tcp6", Address: fmt.Sprintf("[::ffff:127.0.0.2]:%d", p4), Send: "ping\n"}, fmt.Sprintf("[::ffff:127.0.0.2]:%d", p4)},
		{"hostname target", agent, redirecttest.Dial{Network: "tcp4", Address: fmt.Sprintf("127.0.0.1:%d", pn), Send: "ping\n"}, fmt.Sprintf("127.0.0.1:%d", pn)},
		{"sub-cgroup", sub, redirecttest.Dial{Network: "tcp4", Address: echo4, Send: "ping\n"}, echo4},
		{"child process", agent, redirecttest.Dial{Network: "tcp4", Address: echo4, Send: "ping\n", ViaChild: true}, echo4},
		{"fast open", agent, redirecttest.Dial{Network: "tcp4", Address: echo4, Send: "ping\n", FastOpen: true}, echo4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := redirecttest.Agent(t, tt.cg, tt.dial)
			if !proxied(r) {
				t.Errorf("agent saw %+v: want the echo server reached through the gateway", r)
			}
			if r.Peer != tt.peer {
				t.Errorf("getpeername = %q, want the dialled %q", r.Peer, tt.peer)
			}
		})
	}

	t.Run("egress deny", func(t *testing.T) {
		r := redirecttest.Agent(t, agent, redirecttest.Dial{Network: "tcp4", Address: "127.0.0.3:7100"})
		if r.Errno != "EPERM" {
			t.Errorf("dial of a non-target: %+v, want EPERM", r)
		}
		r = redirecttest.Agent(t, agent, redirecttest.Dial{Network: "tcp4", Address: "127.0.0.4:7100"})
		if r.Errno != "ECONNREFUSED" {
			t.Errorf("dial of an allowed host: %+v, want ECONNREFUSED (allowed, nothing listens)", r)
		}
	})

	t.Run("other cgroup unaffected", func(t *testing.T) {
		r := redirecttest.Agent(t, other, redirecttest.Dial{Network: "tcp4", Address: echo4, Send: "ping\n"})
		if !direct(r) {
			t.Errorf("non-workload process saw %+v, want a direct connection", r)
		}
	})

	t.Run("direct dial of the listener refused", func(t *testing.T) {
		before := e.metric("interlock_connections_refused_total", `reason="no_origin"`)
		r := redirecttest.Outsider(t, redirecttest.Dial{Network: "tcp4", Address: fmt.Sprintf("127.0.0.1:%d", e.listen), Send: "ping\n"})
		if r.Reply != "" {
			t.Errorf("direct dial got %q from the gateway, want the connection closed", r.Reply)
		}
		waitFor(t, func() bool {
			return e.metric("interlock_connections_refused_total", `reason="no_origin"`) == before+1
		}, "refused counter to move by one")
	})

	t.Run("metrics", func(t *testing.T) {
		// ipv4, v4-mapped, sub-cgroup, child, fast open.
		if got := e.metric("interlock_connections_total", `workload="agent"`, `target="echo"`, `action="redirected"`); got != 5 {
			t.Errorf("redirected to echo: %v, want 5", got)
		}
		if got := e.metric("interlock_connections_total", `workload="agent"`, `target=""`, `action="denied"`); got != 1 {
			t.Errorf("denied: %v, want 1", got)
		}
		if got := e.metric("interlock_sessions_total", `target="echo"`, `workload="agent"`); got != 5 {
			t.Errorf("sessions: %v, want 5", got)
		}
	})

	t.Run("status", func(t *testing.T) {
		st := e.status()
		if len(st.Workloads) != 1 || st.Workloads[0].State != "enforced" || st.Workloads[0].CgroupID != agent.ID {
			t.Errorf("workloads %+v, want agent enforced at cgroup id %d", st.Workloads, agent.ID)
		}
		out := e.run("status")
		for _, want := range []string{"running", "attached", "agent", strconv.FormatUint(agent.ID, 10), "[127.0.0.2]", "localhost:"} {
			if !strings.Contains(out, want) {
				t.Errorf("status output lacks %q:\n%s", want, out)
			}
		}
	})
}

// TestCrashRestartUninstall: SIGKILL leaves enforcement in place and fails
// closed; a restarted gateway adopts it; uninstall removes it.
func TestCrashRestartUninstall(t *testing.T) {
	e := newE2E(t)
	port := freePort(t, "127.0.0.2")
	echo := fmt.Sprintf("127.0.0.2:%d", port)
	redirecttest.EchoServer(t, echo)
	e.writeConfig(fmt.Sprintf(`targets:
  - name: echo
    protocol: tcp
    address: %s
workloads:
  - name: agent
    match: {cgroup: %s/agent}
    egress: {default: allow}
`, echo, e.top))
	dial := redirecttest.Dial{Network: "tcp4", Address: echo, Send: "ping\n"}
	g := e.start()
	agent := e.cgroup("/agent")
	if r := redirecttest.Agent(t, agent, dial); !proxied(r) {
		t.Fatalf("before the crash: %+v", r)
	}

	g.stop(syscall.SIGKILL)
	if r := redirecttest.Agent(t, agent, dial); r.Errno != "EPERM" {
		t.Errorf("gateway killed: agent got %+v, want EPERM (fail closed)", r)
	}
	if r := redirecttest.Outsider(t, dial); !direct(r) {
		t.Errorf("gateway killed: a non-agent process got %+v, want a direct connection", r)
	}
	if out := e.run("status"); !strings.Contains(out, "fail closed") {
		t.Errorf("status with the gateway down does not say it fails closed:\n%s", out)
	}

	g = e.start()
	if r := redirecttest.Agent(t, agent, dial); !proxied(r) {
		t.Errorf("after restart: %+v", r)
	}
	if err := g.stop(syscall.SIGTERM); err != nil {
		t.Errorf("gateway exit after SIGTERM: %v", err)
	}

	out := e.run("uninstall")
	if !strings.Contains(out, "removed") {
		t.Errorf("uninstall said %q", out)
	}
	if _, err := os.Stat(e.pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bpffs folder still there: %v", err)
	}
	if r := redirecttest.Agent(t, agent, dial); !direct(r) {
		t.Errorf("after uninstall: %+v, want a direct connection", r)
	}
}

// TestRestartedUnitHasNoGap: a unit's cgroup is found by name, and when
// the unit restarts (its cgroup is recreated with a new id) its processes
// are the workload's from their first connect, although the gateway's
// interval pass is an hour away: the kernel sends connects from a new
// cgroup below a workload's parent to the gateway, which resolves the
// cgroup itself, and a cgroup made there starts a pass at once.
func TestRestartedUnitHasNoGap(t *testing.T) {
	e := newE2E(t)
	e.resolveInterval = "1h"
	echo := fmt.Sprintf("127.0.0.2:%d", freePort(t, "127.0.0.2"))
	allowed := fmt.Sprintf("127.0.0.3:%d", freePort(t, "127.0.0.3"))
	denied := fmt.Sprintf("127.0.0.4:%d", freePort(t, "127.0.0.4"))
	for _, a := range []string{echo, allowed, denied} {
		redirecttest.EchoServer(t, a)
	}
	unit := fmt.Sprintf("itest-%d.service", os.Getpid())
	e.writeConfig(fmt.Sprintf(`targets:
  - name: echo
    protocol: tcp
    address: %s
workloads:
  - name: unit-agent
    match: {systemd_unit: %s}
    egress: {default: deny, allow: ["%s"]}
`, echo, unit, allowed))
	toTarget := redirecttest.Dial{Network: "tcp4", Address: echo, Send: "ping\n"}
	cg := e.cgroup("/test.slice/" + unit)
	slice, err := identity.CgroupID(filepath.Dir(cg.Dir()))
	if err != nil {
		t.Fatal(err)
	}
	gw := e.start()
	waitFor(t, func() bool { return e.status().Workloads[0].CgroupID == cg.ID }, "the unit's cgroup to be found")
	if r := redirecttest.Agent(t, cg, toTarget); !proxied(r) {
		t.Fatalf("unit process: %+v", r)
	}
	// The gateway guards the unit's slice, and knows the unit's cgroup.
	st, err := redirect.Inspect(e.pin)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(st.Guards, func(g redirect.Guard) bool { return g.CgroupID == slice }); i < 0 || st.Guards[i].Watermark < cg.ID || !st.Guards[i].EgressDeny {
		t.Fatalf("pinned guards %+v: want the slice %d guarded at or above the unit's cgroup %d, egress denied", st.Guards, slice, cg.ID)
	}
	// The slice is the deepest guard; its ancestors (but the root) are
	// guarded too, should the slice be made again.
	if gs := e.status().Guards; len(gs) == 0 || gs[len(gs)-1].CgroupID != slice || !slices.Equal(gs[len(gs)-1].Workloads, []string{"unit-agent"}) {
		t.Errorf("status guards %+v, want the slice %d for unit-agent last", gs, slice)
	}
	if out := e.run("status"); !strings.Contains(out, "GUARDED CGROUP") || !strings.Contains(out, path.Dir(cg.Path)) {
		t.Errorf("interlock status does not show the guarded slice %s:\n%s", path.Dir(cg.Path), out)
	}
	sessions := func() float64 {
		return e.metric("interlock_sessions_total", `target="echo"`, `workload="unit-agent"`)
	}
	// restart stands for systemd restarting the unit: the cgroup goes
	// and comes back with a new id, and a process starts in it at once.
	restart := func() redirecttest.Cgroup {
		t.Helper()
		old := cg
		if err := os.Remove(cg.Dir()); err != nil {
			t.Fatal(err)
		}
		cg = e.cgroup("/test.slice/" + unit)
		if cg.ID == old.ID {
			t.Fatal("recreated cgroup kept its id")
		}
		return cg
	}

	if r := redirecttest.Agent(t, restart(), toTarget); !proxied(r) {
		t.Fatalf("first connect of the restarted unit went around the gateway: %+v", r)
	}
	if got := sessions(); got != 2 {
		t.Errorf("unit-agent sessions = %v, want 2 (the restarted unit's connect is the workload's)", got)
	}

	// The same with the gateway frozen, so that no pass can run before
	// the connect: the kernel alone must send it to the gateway, either
	// as the workload's (its mkdir hook put the new cgroup in the
	// workloads map as systemd made it) or as unresolved (without the
	// hook; the gateway then resolves the cgroup itself).
	unitID := e.status().Workloads[0].ID
	redirects := func() (total uint64, st *redirect.State) {
		st, err := redirect.Inspect(e.pin)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range st.Counters {
			if c.WorkloadID == redirect.UnresolvedWorkload || c.WorkloadID == unitID {
				total += c.Redirected
			}
		}
		return total, st
	}
	before, st := redirects()
	tracked := slices.ContainsFunc(st.Links, func(l redirect.LinkState) bool { return l.Name == "cgroup_mkdir" })
	if err := gw.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer gw.cmd.Process.Signal(syscall.SIGCONT) //nolint:errcheck // already sent on the way that does not fail
	frozen := restart()
	result := make(chan redirecttest.Result, 1)
	go func() { result <- redirecttest.Agent(t, frozen, toTarget) }()
	waitFor(t, func() bool { n, _ := redirects(); return n > before }, "the kernel to send the new cgroup's connect to the frozen gateway")
	if tracked {
		_, st := redirects()
		if !slices.Contains(st.Workloads, redirect.Workload{CgroupID: frozen.ID, ID: unitID, EgressDeny: true}) {
			t.Errorf("while the gateway was frozen, the kernel's workloads %+v lack the new cgroup %d", st.Workloads, frozen.ID)
		}
	}
	if err := gw.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if r := <-result; !proxied(r) {
		t.Fatalf("restarted unit's connect while the gateway was frozen: %+v", r)
	}
	if got := e.metric("interlock_unresolved_connections_total", `outcome="workload"`); !tracked && got != 1 {
		t.Errorf("unresolved connections resolved to a workload = %v, want 1", got)
	}
	if got := sessions(); got != 3 {
		t.Errorf("unit-agent sessions = %v, want 3", got)
	}
	if r := redirecttest.Agent(t, restart(), redirecttest.Dial{Network: "tcp4", Address: allowed, Send: "ping\n"}); !strings.HasPrefix(r.Reply, "from=") {
		t.Errorf("restarted unit to an egress-allowed address: %+v", r)
	}
	if r := redirecttest.Agent(t, restart(), redirecttest.Dial{Network: "tcp4", Address: denied, Send: "ping\n"}); r.Reply != "" {
		t.Errorf("restarted unit reached an address its egress denies: %+v", r)
	}

	// A new unit next to it is nobody's workload: its connects work as
	// without interlock and count for no workload.
	other := e.cgroup(fmt.Sprintf("/test.slice/other-%d.service", os.Getpid()))
	for _, d := range []string{echo, denied} {
		if r := redirecttest.Agent(t, other, redirecttest.Dial{Network: "tcp4", Address: d, Send: "ping\n"}); !strings.HasPrefix(r.Reply, "from=") {
			t.Errorf("a new unit in no workload, to %s: %+v", d, r)
		}
	}
	if got := sessions(); got != 3 {
		t.Errorf("unit-agent sessions = %v after a non-workload's connect, want 3", got)
	}
	waitFor(t, func() bool { return e.status().Workloads[0].CgroupID == cg.ID }, "the gateway to follow the unit's latest cgroup without its interval pass")
	if got := e.metric("interlock_unresolved_connections_total", `outcome="egress_denied"`) + e.metric("interlock_connections_total", `workload="unit-agent"`, `action="denied"`); got < 1 {
		t.Errorf("the denied egress connect was counted neither by the gateway nor by the kernel (%v)", got)
	}
}

// TestExplicitMode: no eBPF; callers are identified from /proc.
func TestExplicitMode(t *testing.T) {
	e := newE2E(t)
	port := freePort(t, "127.0.0.2")
	echo := fmt.Sprintf("127.0.0.2:%d", port)
	redirecttest.EchoServer(t, echo)
	plain := freePort(t, "127.0.0.1")
	e.writeConfig(fmt.Sprintf(`targets:
  - name: echo
    protocol: tcp
    address: %s
    listen: 127.0.0.1:%d
workloads:
  - name: agent
    match: {cgroup: %s/agent}
`, echo, plain, e.top))
	agent := e.cgroup("/agent")
	e.start("--explicit")
	if _, err := os.Stat(e.pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("explicit mode pinned eBPF state at %s", e.pin)
	}
	dial := redirecttest.Dial{Network: "tcp4", Address: fmt.Sprintf("127.0.0.1:%d", plain), Send: "ping\n"}
	r := redirecttest.Agent(t, agent, dial)
	if !strings.HasPrefix(r.Reply, "from=") {
		t.Errorf("workload process through the explicit listener: %+v", r)
	}
	r = redirecttest.Outsider(t, dial)
	if r.Reply != "" {
		t.Errorf("a process in no workload was served: %+v", r)
	}
	waitFor(t, func() bool {
		return e.metric("interlock_connections_refused_total", `reason="unknown_workload"`) == 1
	}, "the outsider to be refused as unknown_workload")
	if got := e.metric("interlock_sessions_total", `workload="agent"`); got != 1 {
		t.Errorf("sessions for agent: %v, want 1", got)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// A workload reaches neither the admin API nor the gateway's listener, even
// with an egress that allows all of loopback.
func TestWorkloadsCannotReachTheGateway(t *testing.T) {
	e := newE2E(t)
	p := freePort(t, "127.0.0.2")
	redirecttest.EchoServer(t, fmt.Sprintf("127.0.0.2:%d", p))
	e.writeConfig(fmt.Sprintf(`targets:
  - {name: echo, protocol: tcp, address: "127.0.0.2:%d"}
workloads:
  - name: agent
    match: {cgroup: %s/agent}
    egress: {default: allow}
`, p, e.top))
	e.start()
	agent := e.cgroup("/agent")
	for _, addr := range []string{e.admin, fmt.Sprintf("127.0.0.1:%d", e.listen), fmt.Sprintf("0.0.0.0:%d", e.listen)} {
		if r := redirecttest.Agent(t, agent, redirecttest.Dial{Network: "tcp4", Address: addr}); r.Errno != "EPERM" {
			t.Errorf("a workload dialled the gateway's %s: %+v", addr, r)
		}
	}
	// Its target is still redirected to that same listener.
	if r := redirecttest.Agent(t, agent, redirecttest.Dial{Network: "tcp4", Address: fmt.Sprintf("127.0.0.2:%d", p), Send: "hi\n"}); !proxied(r) {
		t.Errorf("the target was not reached through the gateway: %+v", r)
	}
	// Processes outside the workloads still can (the operator's CLI).
	// (The connect is what counts: the admin listener sends nothing first.)
	if r := redirecttest.Outsider(t, redirecttest.Dial{Network: "tcp4", Address: e.admin}); r.Peer != e.admin {
		t.Errorf("an outside process cannot reach the admin listener: %+v", r)
	}
}

// TestGatewayClosesEarlierConnections: a connection a workload opened to a
// target before the gateway attached is closed when it starts, and the
// workload's next connect goes through the gateway; with
// gateway.open_connections: report it is logged and left open.
func TestGatewayClosesEarlierConnections(t *testing.T) {
	for _, mode := range []string{"close", "report"} {
		t.Run(mode, func(t *testing.T) {
			e := newE2E(t)
			if mode == "report" {
				e.gatewayExtra = "  open_connections: report\n"
			}
			p := freePort(t, "127.0.0.2")
			echo := fmt.Sprintf("127.0.0.2:%d", p)
			redirecttest.EchoServer(t, echo)
			e.writeConfig(fmt.Sprintf(`targets:
  - name: echo
    protocol: tcp
    address: %s
workloads:
  - name: agent
    match:
      cgroup: %s/agents/demo
    identity:
      subject: agent:demo
`, echo, e.top))
			agent := e.cgroup("/agents/demo")
			early := redirecttest.StartHold(t, agent, redirecttest.Hold{Address: echo})
			g := e.start()
			if mode == "report" {
				waitFor(t, func() bool {
					b, _ := os.ReadFile(g.log.Name())
					return strings.Contains(string(b), "left open (gateway.open_connections: report)")
				}, "the gateway to report the connection")
				if end := early.Ended(time.Second); end != "" {
					t.Errorf("the connection opened before the gateway ended with %q in report mode", end)
				}
				if got := e.metric("interlock_closed_connections_total", `workload="agent"`, `target="echo"`); got != 0 {
					t.Errorf("interlock_closed_connections_total = %v in report mode, want 0", got)
				}
				return
			}
			if end := early.Ended(5 * time.Second); end != "ECONNABORTED" {
				t.Errorf("the connection opened before the gateway: ended with %q, want ECONNABORTED", end)
			}
			waitFor(t, func() bool {
				return e.metric("interlock_closed_connections_total", `workload="agent"`, `target="echo"`) == 1
			}, "interlock_closed_connections_total to count it")
			if r := redirecttest.Agent(t, agent, redirecttest.Dial{Network: "tcp4", Address: echo, Send: "ping\n"}); !proxied(r) {
				t.Errorf("agent saw %+v after the sweep: want the echo server reached through the gateway", r)
			}
		})
	}
}
