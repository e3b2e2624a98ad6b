// Command demo is what `make demo` runs: the interlock gateway with
// demo.yaml, a TCP echo target on 127.0.0.2:7000, a real PostgreSQL on
// 127.0.0.2:5432, a real OpenSSH sshd on 127.0.0.2:2222, and a scripted
// agent started inside the workload's cgroup that dials the echo target
// (redirected through the gateway), a host it may not reach (refused by the
// kernel), the database with psql and no password (rows masked, DROP TABLE
// refused), and the sshd with ssh and no key (a command runs, rm -rf and a
// port forward are refused), and last an UPDATE that a review rule holds:
// meanwhile this process, as the approver alice, finds the request with
// `interlock approvals`, approves it, and the agent's psql completes. Then
// the operator closes the customers table to agents without a restart:
// a rule added to the running configuration (a copy of demo.yaml) is first
// refused by `interlock reload` because the policy's own test contradicts
// it, then put in force with the test corrected, and the agent's next
// SELECT is denied. It prints what the agent saw, `interlock status`, the refused and the
// reviewed sessions' recordings and the metrics, then stops the gateway and
// the servers and removes the data path and /tmp/interlock-demo again. It
// needs root.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/proxy/postgres/pgtest"
	"github.com/interlock-dev/interlock/proxy/ssh/sshtest"
)

func main() {
	bin := flag.String("interlock", "bin/interlock", "the interlock binary")
	cfgPath := flag.String("config", "docs/demo/demo.yaml", "demo configuration")
	agent := flag.Bool("agent", false, "internal: run as the scripted agent")
	afterReload := flag.Bool("after-reload", false, "internal: with -agent, the agent's part after the reload")
	flag.Parse()
	if *agent && *afterReload {
		os.Exit(runAgentAfterReload())
	}
	if *agent {
		os.Exit(runAgent())
	}
	if err := run(*bin, *cfgPath); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n\033[1m==> "+format+"\033[0m\n", args...)
}

func run(bin, cfgPath string) error {
	if os.Geteuid() != 0 {
		return errors.New("the demo loads eBPF programs and creates cgroups: run it as root (sudo make demo)")
	}
	// The upstream password exists before the configuration is loaded:
	// loading checks the file. The agent never sees it.
	password := fmt.Sprintf("demo-%d", time.Now().UnixNano())
	if err := os.MkdirAll(filepath.Dir(demoPasswordFile), 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(demoPasswordFile))
	if err := os.WriteFile(demoPasswordFile, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	// So is alice's admin token: the approver's credential for the admin
	// API, which this process uses and the agent never gets.
	token, err := writeAdminTokens()
	if err != nil {
		return err
	}
	// sshd runs before the configuration is loaded for the same reason:
	// its client key and host key are the bastion's upstream files.
	step("OpenSSH sshd on %s (a bastion); the gateway logs in as %q with a key only it holds", bastionAddr, "root")
	sshd, err := startBastion()
	if err != nil {
		return err
	}
	defer sshd.Close()
	// The gateway runs from a copy, which the demo edits to show a reload.
	orig, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	cfgPath = filepath.Join(filepath.Dir(demoPasswordFile), "interlock.yaml")
	if err := os.WriteFile(cfgPath, orig, 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	if b := cfg.Target("bastion"); b == nil || b.Address != sshd.Addr() {
		return fmt.Errorf("%s: the demo needs an ssh target bastion at %s", cfgPath, sshd.Addr())
	}
	root, err := identity.CgroupV2Root()
	if err != nil {
		return err
	}
	agentCgroup := filepath.Join(root, cfg.Workloads[0].Match.Cgroup)
	// Deferred calls run last-first: the agent's cgroup goes before its
	// parent.
	defer os.Remove(filepath.Dir(agentCgroup))
	defer os.Remove(agentCgroup)
	defer os.RemoveAll(filepath.Dir(cfg.Gateway.StateDir))

	step("echo target listening on %s (a stand-in for any TCP service)", cfg.Targets[0].Address)
	echo, err := net.Listen("tcp", cfg.Targets[0].Address)
	if err != nil {
		return err
	}
	defer echo.Close()
	go serveEcho(echo)

	shop := cfg.Target("shop")
	step("PostgreSQL on %s with a customers table; the gateway logs in as %q", shop.Address, shop.Upstream.User)
	db, err := startDatabase(shop, password)
	if err != nil {
		return err
	}
	defer db.Close()
	step("interlock check --config %s (validates the file, runs the policy's tests)", cfgPath)
	if err := runShow(bin, "check", "--config", cfgPath); err != nil {
		return err
	}

	step("starting the gateway: %s gateway --config %s (a copy of demo.yaml)", bin, cfgPath)
	gw := exec.Command(bin, "gateway", "--config", cfgPath)
	gw.Stdout, gw.Stderr = prefixed("  gateway | "), prefixed("  gateway | ")
	if err := gw.Start(); err != nil {
		return err
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = gw.Process.Signal(syscall.SIGTERM)
			_ = gw.Wait()
		}
	}
	defer func() {
		stop()
		out, _ := exec.Command(bin, "uninstall", "--config", cfgPath).CombinedOutput()
		fmt.Print("  " + string(out))
	}()
	if err := waitReady("http://"+cfg.Gateway.Admin+"/readyz", 15*time.Second); err != nil {
		return err
	}

	step("the agent's known_hosts trusts the gateway's SSH CA: %s ca ssh-known-hosts", bin)
	if err := writeAgentKnownHosts(bin, cfgPath); err != nil {
		return err
	}

	step("the agent runs inside cgroup %s and uses plain connect(2); %s, an approver, watches for held commands", cfg.Workloads[0].Match.Cgroup, approver)
	agentOut, noticed := watched("  agent   | ", "holds this statement for review")
	agent, err := startAgent(agentCgroup, agentOut, "-agent")
	if err != nil {
		return err
	}
	held, err := approveHeld(bin, cfgPath, token, agent, noticed)
	if err != nil {
		// Its psql would wait for a decision that is not coming.
		agent.stop()
		return err
	}
	if err := agent.wait(); err != nil {
		return err
	}
	if err := reloadClosed(bin, cfgPath, token, orig, agentCgroup); err != nil {
		return err
	}

	step("INTERLOCK_TOKEN=<%s's token> interlock status", approver)
	if err := runAdmin(bin, token, "status", "--config", cfgPath); err != nil {
		return err
	}

	step("interlock sessions list, the recordings of the refused PostgreSQL (before and after the reload) and SSH sessions and of the reviewed UPDATE")
	if err := runShow(bin, "sessions", "list", "--config", cfgPath); err != nil {
		return err
	}
	if err := showDeniedSessions(bin, cfgPath, "shop", 2); err != nil {
		return err
	}
	if err := showDeniedSessions(bin, cfgPath, "bastion", 2); err != nil {
		return err
	}
	if err := runShow(bin, "sessions", "show", held.Session, "--config", cfgPath); err != nil {
		return err
	}

	step("metrics on http://%s/metrics (interlock_*)", cfg.Gateway.Admin)
	if err := showMetrics("http://" + cfg.Gateway.Admin + "/metrics"); err != nil {
		return err
	}

	step("stopping the gateway and removing the data path")
	stop()
	return nil
}

// agentProcess is the scripted agent running in its cgroup, which the
// approver waits alongside.
type agentProcess struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited; err is then set
	err  error
}

// startAgent starts this program as the scripted agent inside cgroupDir,
// its output (stdout and stderr) going to out. It does not wait: the agent
// blocks on a held UPDATE until this process approves it.
func startAgent(cgroupDir string, out io.Writer, args ...string) (*agentProcess, error) {
	dir, err := os.Open(cgroupDir)
	if err != nil {
		return nil, fmt.Errorf("the gateway should have created %s: %w", cgroupDir, err)
	}
	defer dir.Close()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// The environment is this process's own, which holds no admin token:
	// the agent has no credential of the gateway's.
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the agent: %w", err)
	}
	a := &agentProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		a.err = cmd.Wait()
		close(a.done)
	}()
	return a, nil
}

func (a *agentProcess) wait() error {
	<-a.done
	if a.err != nil {
		return fmt.Errorf("the agent: %w", a.err)
	}
	return nil
}

// stop ends the agent (by its pid): SIGTERM, which also ends the psql it
// may be waiting on, then SIGKILL if it has not exited within 5s.
func (a *agentProcess) stop() {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// heldRequest is what the demo reads of `interlock approvals list -o json`.
type heldRequest struct {
	ID        string   `json:"id"`
	Session   string   `json:"session"`
	Target    string   `json:"target"`
	Requester string   `json:"requester"`
	Command   string   `json:"command"`
	Rule      string   `json:"rule"`
	Approvers []string `json:"approvers"`
}

// approveHeld is the human side of review, as alice: it polls the pending
// requests until the agent's UPDATE is held, shows it and approves it.
// noticed closes when the agent has printed the NOTICE psql got, so the
// output reads in the order things happened.
func approveHeld(bin, cfgPath, token string, agent *agentProcess, noticed <-chan struct{}) (heldRequest, error) {
	req, err := waitPending(bin, cfgPath, token, agent, time.Minute)
	if err != nil {
		return req, err
	}
	select {
	case <-noticed:
	case <-agent.done:
	case <-time.After(5 * time.Second):
	}
	step("%s finds it: INTERLOCK_TOKEN=<%s's token> interlock approvals list --state pending -o json", approver, approver)
	fmt.Printf("  request %s: %s wants to run %q on %s (rule %s, approvers %s)\n",
		req.ID, req.Requester, req.Command, req.Target, req.Rule, strings.Join(req.Approvers, ","))
	step("interlock approvals show %s", req.ID)
	if err := runAdmin(bin, token, "approvals", "show", req.ID, "--config", cfgPath); err != nil {
		return req, err
	}
	step("interlock approvals approve %s (the agent's psql, waiting all along, completes)", req.ID)
	if err := runAdmin(bin, token, "approvals", "approve", req.ID, "--config", cfgPath); err != nil {
		return req, err
	}
	return req, nil
}

// waitPending polls `interlock approvals list --state pending` until one
// request waits, the agent exits, or timeout passes.
func waitPending(bin, cfgPath, token string, agent *agentProcess, timeout time.Duration) (heldRequest, error) {
	deadline := time.Now().Add(timeout)
	for {
		cmd := exec.Command(bin, "approvals", "list", "--state", "pending", "-o", "json", "--config", cfgPath)
		cmd.Env = withToken(token)
		out, err := cmd.Output()
		if err != nil {
			return heldRequest{}, fmt.Errorf("interlock approvals list: %w", err)
		}
		var list []heldRequest
		if err := json.Unmarshal(out, &list); err != nil {
			return heldRequest{}, fmt.Errorf("reading interlock approvals list: %w", err)
		}
		if len(list) > 0 {
			return list[0], nil
		}
		select {
		case <-agent.done:
			return heldRequest{}, errors.Join(errors.New("the agent ended before a command of its was held for review"), agent.err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return heldRequest{}, fmt.Errorf("no command held for review after %s", timeout)
		}
	}
}

// runAgent is the scripted agent: an ordinary client that knows nothing of
// interlock.
func runAgent() int {
	// SIGTERM (the demo giving up on the approval) ends a psql that waits,
	// rather than leaving it to wait for a decision that is not coming.
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	cg, _ := identity.ProcessCgroup(uint32(os.Getpid()))
	fmt.Printf("pid %d in cgroup %s\n", os.Getpid(), cg)

	fmt.Println("dialling 127.0.0.2:7000 (a target)")
	c, err := net.DialTimeout("tcp", "127.0.0.2:7000", 5*time.Second)
	if err != nil {
		fmt.Println("  unexpected:", err)
		return 1
	}
	fmt.Printf("  connected; getpeername says %s (the address dialled)\n", c.RemoteAddr())
	fmt.Fprintln(c, "hello")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil {
		fmt.Println("  unexpected:", err)
		return 1
	}
	fmt.Printf("  target answered %q — it saw the gateway's address, not the agent's %s\n", strings.TrimSpace(line), c.LocalAddr())

	fmt.Println("dialling 127.0.0.3:7100 (not a target, egress default deny)")
	_, err = net.DialTimeout("tcp", "127.0.0.3:7100", 5*time.Second)
	if !errors.Is(err, syscall.EPERM) {
		fmt.Println("  unexpected:", err)
		return 1
	}
	fmt.Println("  refused by the kernel:", err)

	// psql with no password: the workload is the credential.
	psql := func(sql string) (string, error) {
		out, err := psqlCommand(ctx, sql).CombinedOutput()
		return string(out), err
	}
	fmt.Println("psql -h 127.0.0.2 -c 'SELECT * FROM customers' (no password)")
	out, err := psql("SELECT * FROM customers ORDER BY id")
	indent(out)
	if err != nil {
		fmt.Println("  unexpected:", err)
		return 1
	}
	fmt.Println("psql -h 127.0.0.2 -c 'DROP TABLE customers'")
	out, err = psql("DROP TABLE customers")
	indent(out)
	if err == nil {
		fmt.Println("  unexpected: the DROP was not refused")
		return 1
	}
	fmt.Println("psql -h 127.0.0.2 -c 'SELECT count(*) FROM customers' (the table is still there)")
	out, _ = psql("SELECT count(*) FROM customers")
	indent(out)

	// ssh with no key: the workload is the credential here too, and the
	// only trust it needs is the gateway CA's line in its known_hosts.
	fmt.Println("ssh -p 2222 root@127.0.0.2 id -un (no key)")
	out, code := sshRun("id -un")
	indent(out)
	if code != 0 {
		fmt.Println("  unexpected: exit status", code)
		return 1
	}
	fmt.Printf("ssh -p 2222 root@127.0.0.2 'rm -rf %s'\n", keepMeDir)
	out, code = sshRun("rm -rf " + keepMeDir)
	indent(out)
	fmt.Println("    exit status", code)
	if code != 126 {
		fmt.Println("  unexpected: the rm was not refused")
		return 1
	}
	fmt.Printf("ssh -p 2222 root@127.0.0.2 'ls -d %s' (the folder is still there)\n", keepMeDir)
	out, code = sshRun("ls -d " + keepMeDir)
	indent(out)
	if code != 0 {
		fmt.Println("  unexpected: exit status", code)
		return 1
	}
	fmt.Println("ssh -W 127.0.0.1:5432 -p 2222 root@127.0.0.2 (a tunnel through the bastion)")
	out, code = sshRun("-W", "127.0.0.1:5432")
	indent(out)
	fmt.Println("    exit status", code)
	if code == 0 || !strings.Contains(out, "administratively prohibited") {
		fmt.Println("  unexpected: the forward was not refused")
		return 1
	}

	// A write waits for a human: psql prints the gateway's NOTICE (on
	// stderr) as soon as the statement is held, then blocks like any slow
	// statement until the demo's approver decides.
	fmt.Printf("psql -h 127.0.0.2 -c %q (a write: held until an approver in dba decides)\n", heldUpdate)
	out, err = psqlStreamed(ctx, heldUpdate)
	if err != nil || !strings.Contains(out, "holds this statement for review") || !strings.Contains(out, "UPDATE 1") {
		fmt.Println("  unexpected: the UPDATE was not held and then run:", err)
		return 1
	}
	fmt.Println("psql -h 127.0.0.2 -c 'SELECT name FROM customers WHERE id = 1' (the row changed)")
	out, err = psql("SELECT name FROM customers WHERE id = 1")
	indent(out)
	if err != nil || !strings.Contains(out, "Ada L.") {
		fmt.Println("  unexpected: the approved UPDATE did not change the row:", err)
		return 1
	}
	return 0
}

// The rule the operator adds while the gateway runs, and the policy test
// that contradicts it until it is corrected.
const (
	closedRule = `  rules:
    - name: customers-closed
      targets: [shop]
      when: sql.command == "SELECT" && "customers" in sql.tables
      action: deny
      message: reading the customers table is closed to agents
`
	selectTest   = "    - request: {target: shop, sql: \"SELECT * FROM customers WHERE id = 1\"}\n      expect: allow\n"
	selectDenied = "    - request: {target: shop, sql: \"SELECT * FROM customers WHERE id = 1\"}\n      expect: deny\n      rule: customers-closed\n"
)

// reloadClosed edits the running configuration and reloads it twice: the
// first reload is refused (the policy's own test contradicts the new
// rule) and changes nothing, the second puts the rule in force; then the
// agent's next SELECT is denied.
func reloadClosed(bin, cfgPath, token string, orig []byte, agentCgroup string) error {
	text := string(orig)
	if !strings.Contains(text, "  rules:\n") || !strings.Contains(text, selectTest) {
		return fmt.Errorf("%s: the demo's reload step needs its rules and its SELECT test as shipped", cfgPath)
	}
	text = strings.Replace(text, "  rules:\n", closedRule, 1)
	step("the operator closes the customers table to agents without a restart: rule customers-closed added to %s; interlock reload", cfgPath)
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		return err
	}
	if err := runAdmin(bin, token, "reload", "--config", cfgPath); err == nil {
		return errors.New("the reload of a policy that fails its own test was not refused")
	}
	fmt.Println("  (refused, as it should be: the policy's test still expects the SELECT allowed; the policy in force is unchanged)")

	step("the test corrected to expect the denial; interlock reload")
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(text, selectTest, selectDenied, 1)), 0o600); err != nil {
		return err
	}
	if err := runAdmin(bin, token, "reload", "--config", cfgPath); err != nil {
		return err
	}
	agent, err := startAgent(agentCgroup, prefixed("  agent   | "), "-agent", "-after-reload")
	if err != nil {
		return err
	}
	return agent.wait()
}

// runAgentAfterReload is the agent's part after the reload: the SELECT it
// ran before is denied now.
func runAgentAfterReload() int {
	fmt.Println("psql -h 127.0.0.2 -c 'SELECT name FROM customers WHERE id = 1' (after the reload)")
	out, err := psqlCommand(context.Background(), "SELECT name FROM customers WHERE id = 1").CombinedOutput()
	indent(string(out))
	if err == nil || !strings.Contains(string(out), "closed to agents") {
		fmt.Println("  unexpected: the SELECT was not denied by the reloaded policy:", err)
		return 1
	}
	return 0
}

// heldUpdate is the agent's write that the review rule holds.
const heldUpdate = "UPDATE customers SET name = 'Ada L.' WHERE id = 1"

// psqlCommand is psql with no password against the shop target, as the
// agent runs it.
func psqlCommand(ctx context.Context, sql string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "psql", "-X", "-h", "127.0.0.2", "-p", "5432", "-U", "agent", "-d", "postgres", "-c", sql)
	cmd.Env = append(os.Environ(), "PGSSLMODE=prefer", "PGCONNECT_TIMEOUT=10")
	return cmd
}

// psqlStreamed runs psql and prints its output (stdout and stderr, where
// NOTICEs go) indented line by line as it comes, rather than when psql
// ends, so a held statement's NOTICE shows while it waits. It returns the
// whole output too.
func psqlStreamed(ctx context.Context, sql string) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	defer r.Close()
	cmd := psqlCommand(ctx, sql)
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	// Only psql holds the write end now: reading ends when psql does.
	w.Close()
	if err != nil {
		return "", err
	}
	var out strings.Builder
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fmt.Println("    " + sc.Text())
		out.WriteString(sc.Text() + "\n")
	}
	return out.String(), cmd.Wait()
}

// sshRun runs the OpenSSH client against the bastion with no key and no
// configuration of the user's, trusting only agentKnownHostsFile; args are
// a remote command, or ssh options (-W). It returns what ssh printed and
// its exit status.
func sshRun(args ...string) (string, int) {
	opts := []string{
		"-F", "/dev/null",
		"-o", "IdentityFile=/dev/null",
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + agentKnownHostsFile,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=10",
	}
	var cmd *exec.Cmd
	if strings.HasPrefix(args[0], "-") {
		cmd = exec.Command("ssh", append(append(opts, args...), "-p", "2222", "root@127.0.0.2")...)
	} else {
		cmd = exec.Command("ssh", append(opts, "-p", "2222", "root@127.0.0.2", strings.Join(args, " "))...)
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		return err.Error(), -1
	}
	return string(out), 0
}

func indent(s string) {
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Println("    " + line)
	}
}

// The files demo.yaml names, which the demo writes: the shop password, and
// the key the gateway logs in to the bastion with and the bastion's host
// key. The agent never sees them.
const (
	demoPasswordFile   = "/tmp/interlock-demo/shop.password"
	demoKeyFile        = "/tmp/interlock-demo/bastion.key"
	demoKnownHostsFile = "/tmp/interlock-demo/bastion.known_hosts"
)

// bastionAddr is where demo.yaml says the bastion is; sshd starts before the
// configuration is loaded, so the address is also here.
const (
	bastionHost = "127.0.0.2"
	bastionPort = 2222
	bastionAddr = "127.0.0.2:2222"
)

// agentKnownHostsFile is the agent's own known_hosts: the gateway CA's line,
// nothing about the bastion's real host key. keepMeDir is what the agent's
// rm -rf aims at.
const (
	agentKnownHostsFile = "/tmp/interlock-demo/agent_known_hosts"
	keepMeDir           = "/tmp/interlock-demo/keep-me"
)

// demoAdminTokensFile is demo.yaml's gateway.admin_tokens_file: one token,
// for approver, a member of dba (the review rule's approver group).
const (
	demoAdminTokensFile = "/tmp/interlock-demo/admin-tokens.yaml"
	approver            = "alice"
)

// writeAdminTokens writes demoAdminTokensFile with a fresh random token for
// approver and returns the token. The gateway refuses a tokens file others
// may read, hence 0600 even if an earlier run left the file behind.
func writeAdminTokens() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b)
	content := fmt.Sprintf("# written by `make demo`, removed when it ends\n- token: %q\n  subject: %s\n  groups: [dba]\n", token, approver)
	if err := os.WriteFile(demoAdminTokensFile, []byte(content), 0o600); err != nil {
		return "", err
	}
	if err := os.Chmod(demoAdminTokensFile, 0o600); err != nil {
		return "", err
	}
	return token, nil
}

// startDatabase runs a real PostgreSQL (Debian's server binaries, a
// temporary data folder) on the shop target's address, with the upstream
// role the gateway logs in as.
func startDatabase(shop *config.Target, password string) (*pgtest.Server, error) {
	db, err := pgtest.Launch(pgtest.Options{Host: shop.Prefix.Addr().String(), Port: int(shop.Port), Auth: pgtest.AuthSCRAM})
	if err != nil {
		return nil, fmt.Errorf("starting PostgreSQL on %s: %w", shop.Address, err)
	}
	err = db.ExecContext(context.Background(), `
		CREATE ROLE app LOGIN PASSWORD '`+password+`';
		CREATE TABLE customers (id int PRIMARY KEY, name text, email text, note text);
		INSERT INTO customers VALUES
			(1, 'Ada', 'ada@example.com', 'paid with 4111 1111 1111 1111'),
			(2, 'Bob', 'bob@example.org', 'prefers invoices');
		GRANT ALL ON customers TO app;`)
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// startBastion runs a real sshd (the server binary, a temporary folder
// with its keys) on the bastion's address, and copies the key it
// authorizes and its known_hosts to where demo.yaml says they are. It also
// makes the folder the agent will try to delete.
func startBastion() (*sshtest.Server, error) {
	srv, err := sshtest.Launch(sshtest.Options{Host: bastionHost, Port: bastionPort})
	if err != nil {
		return nil, fmt.Errorf("starting sshd on %s: %w", bastionAddr, err)
	}
	for _, f := range []struct{ from, to string }{
		{srv.ClientKeyFile, demoKeyFile},
		{srv.KnownHostsFile, demoKnownHostsFile},
	} {
		b, err := os.ReadFile(f.from)
		if err == nil {
			err = os.WriteFile(f.to, b, 0o600)
		}
		if err != nil {
			return nil, errors.Join(err, srv.Close())
		}
	}
	if err := os.MkdirAll(keepMeDir, 0o755); err != nil {
		return nil, errors.Join(err, srv.Close())
	}
	return srv, nil
}

// writeAgentKnownHosts writes the gateway CA's @cert-authority line, as
// `interlock ca ssh-known-hosts` prints it, to the agent's known_hosts.
func writeAgentKnownHosts(bin, cfgPath string) error {
	out, err := exec.Command(bin, "ca", "ssh-known-hosts", "--config", cfgPath).Output()
	if err != nil {
		return fmt.Errorf("interlock ca ssh-known-hosts: %w", err)
	}
	fmt.Print("  " + string(out))
	return os.WriteFile(agentKnownHostsFile, out, 0o644)
}

// showDeniedSessions prints the recordings of up to limit sessions on
// target that had a request refused, oldest first.
func showDeniedSessions(bin, cfgPath, target string, limit int) error {
	out, err := exec.Command(bin, "sessions", "list", "--config", cfgPath, "-o", "json").Output()
	if err != nil {
		return err
	}
	var sums []struct {
		ID     string
		Denied int
		Start  struct{ Target string }
	}
	if err := json.Unmarshal(out, &sums); err != nil {
		return err
	}
	// The list is newest first.
	var ids []string
	for _, s := range sums {
		if s.Start.Target == target && s.Denied > 0 && len(ids) < limit {
			ids = append([]string{s.ID}, ids...)
		}
	}
	if len(ids) == 0 {
		return fmt.Errorf("no %s session with a refused request recorded", target)
	}
	for _, id := range ids {
		if err := runShow(bin, "sessions", "show", id, "--config", cfgPath); err != nil {
			return err
		}
	}
	return nil
}

func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			fmt.Fprintf(c, "echo from target: %s (client %s)\n", strings.TrimSpace(line), c.RemoteAddr())
		}()
	}
}

func waitReady(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gateway not ready after %s", timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func runShow(bin string, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = prefixed("  "), prefixed("  ")
	return cmd.Run()
}

// runAdmin is runShow for the commands that call the admin API, with the
// approver's token in INTERLOCK_TOKEN.
func runAdmin(bin, token string, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Env = withToken(token)
	cmd.Stdout, cmd.Stderr = prefixed("  "), prefixed("  ")
	return cmd.Run()
}

// withToken is this process's environment plus INTERLOCK_TOKEN, for one
// command: the token never goes into the demo's own environment, which the
// agent inherits.
func withToken(token string) []string {
	return append(os.Environ(), "INTERLOCK_TOKEN="+token)
}

func showMetrics(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		// Histogram buckets and counters still at zero are noise here; the
		// pending approvals are not: 0 says nothing waits any more.
		pending := strings.HasPrefix(line, "interlock_approvals_pending{")
		if strings.HasPrefix(line, "interlock_") && !strings.Contains(line, "_bucket{") && (pending || !strings.HasSuffix(line, " 0")) {
			fmt.Println("  " + line)
		}
	}
	return sc.Err()
}

// prefixed writes each line with a prefix, so the gateway's log and the
// agent's output stay apart.
func prefixed(prefix string) io.Writer {
	w, _ := watched(prefix, "")
	return w
}

// watched is prefixed that also closes seen once it has printed a line
// containing marker (never, for marker "").
func watched(prefix, marker string) (io.Writer, <-chan struct{}) {
	seen := make(chan struct{})
	r, w := io.Pipe()
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			fmt.Println(prefix + sc.Text())
			if marker != "" && strings.Contains(sc.Text(), marker) {
				close(seen)
				marker = ""
			}
		}
	}()
	return w, seen
}
