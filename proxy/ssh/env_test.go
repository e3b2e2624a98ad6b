package ssh_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/prometheus/client_golang/prometheus"
	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/proxytest"
	sshproxy "github.com/interlock-dev/interlock/proxy/ssh"
	"github.com/interlock-dev/interlock/proxy/ssh/sshtest"
	"github.com/interlock-dev/interlock/proxy/sshca"
	"github.com/interlock-dev/interlock/record"
)

// testPolicy is the policy every test runs under, unless it says otherwise.
const testPolicy = `
default: allow
rules:
  - name: no-rm
    when: ssh.request == "exec" && "rm" in ssh.programs
    action: deny
    message: deleting files is not allowed for agents
  - name: no-forwarding
    when: ssh.request in ["direct-tcpip", "forwarded-tcpip", "agent-forwarding", "x11"]
    action: deny
    message: forwarding is not allowed for agents
  - name: etc-read-only
    when: ssh.request == "sftp" && ssh.file.writes && ssh.file.path.startsWith("/etc/")
    action: deny
    message: /etc is read-only
`

// env is a real sshd behind a proxy.Server running the ssh handler.
type env struct {
	sshd       *sshtest.Server
	store      *record.Store
	reg        *prometheus.Registry
	ca         *sshca.CA
	listener   string // host:port agents dial
	server     *proxy.Server
	knownHosts string // the agent's known_hosts: the gateway CA's line
	logs       *lockedBuffer
	policy     *policy.Live // reload replaces it, as the gateway's reload does
	policyEnv  policy.Env
}

// reload puts polText in force.
func (e *env) reload(t testing.TB, polText string) {
	t.Helper()
	var cfg policy.Config
	if err := yaml.Unmarshal([]byte(polText), &cfg); err != nil {
		t.Fatalf("policy yaml: %v", err)
	}
	pol, err := policy.Compile(cfg, e.policyEnv)
	if err != nil {
		t.Fatalf("compiling policy: %v", err)
	}
	e.policy.Store(pol)
}

type envOptions struct {
	policy string
	target sshproxy.Target // filled from the sshd where empty
	// needsLogin makes the caller a workload that must log in with a token
	// from this issuer; login checks the token.
	needsLogin string
	login      proxy.LoginFunc
	strict     bool // strict recording
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	sshd := sshtest.Start(t, sshtest.Options{Host: "127.0.0.2"})
	return startProxy(t, sshd, o)
}

func startProxy(t testing.TB, sshd *sshtest.Server, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	tgt := o.target
	if tgt.Name == "" {
		tgt.Name = "bastion"
	}
	if tgt.Address == "" {
		tgt.Address = sshd.Addr()
	}
	if tgt.User == "" {
		tgt.User = sshd.User
	}
	if tgt.PrivateKeyFile == "" && tgt.PasswordFile == "" {
		tgt.PrivateKeyFile = sshd.ClientKeyFile
	}
	if tgt.KnownHosts == "" && tgt.HostKey == "" {
		tgt.KnownHosts = sshd.KnownHostsFile
	}
	polText := o.policy
	if polText == "" {
		polText = testPolicy
	}
	var cfg policy.Config
	if err := yaml.Unmarshal([]byte(polText), &cfg); err != nil {
		t.Fatalf("policy yaml: %v", err)
	}
	polEnv := policy.Env{Targets: map[string]string{tgt.Name: "ssh"}, Workloads: []string{"agent"}}
	pol, err := policy.Compile(cfg, polEnv)
	if err != nil {
		t.Fatalf("compiling policy: %v", err)
	}
	live := policy.NewLive(pol)
	store, err := record.OpenStore(filepath.Join(dir, "recordings"))
	if err != nil {
		t.Fatal(err)
	}
	store.Strict = o.strict
	ca, err := sshca.LoadOrCreate(filepath.Join(dir, "ssh-ca"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	commands, err := proxy.NewCommandMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := sshproxy.New(sshproxy.Options{
		Targets:    map[uint32]sshproxy.Target{1: tgt},
		Policy:     live,
		Recordings: store,
		CA:         ca,
		Commands:   commands,
		Logger:     logger,
		Login:      o.login,
	})
	if err != nil {
		t.Fatal(err)
	}
	at := proxy.Attribution{
		Target: proxy.Target{ID: 1, Name: tgt.Name, Protocol: "ssh", Address: tgt.Address},
		Caller: identity.Caller{
			Workload: "agent",
			Identity: identity.Identity{Subject: "agent:demo", Groups: []string{"agents"}},
			PID:      uint32(os.Getpid()),
			UID:      uint32(os.Getuid()),
		},
		Destination: netip.MustParseAddrPort(sshd.Addr()),
	}
	if o.needsLogin != "" {
		at.Caller.Identity, at.Caller.NeedsLogin = identity.Identity{}, o.needsLogin
	}
	t.Cleanup(func() { // after the server's shutdown
		if t.Failed() {
			t.Logf("gateway log:\n%s\nsshd log:\n%s", logs.String(), sshd.LogTail())
		}
	})
	srv, addr := proxytest.Serve(t, "ssh", h, logger, reg, at)
	line, err := ca.KnownHostsLine(sshd.Host)
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "agent_known_hosts")
	if err := os.WriteFile(kh, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{sshd: sshd, store: store, reg: reg, ca: ca, listener: addr, server: srv,
		knownHosts: kh, logs: logs, policy: live, policyEnv: polEnv}
	return e
}

// agentOptions are the OpenSSH client options of an agent: no key of its
// own, the gateway CA as the only trust, the sshd's address as the host
// name the certificate must carry (the client dials the gateway's
// listener, which the kernel path makes unnecessary).
// dial connects to the gateway as the agent with x/crypto's client (the
// gateway's host key is not what these tests are about); the connection
// closes when the test ends, if the test has not closed it.
func (e *env) dial(t testing.TB) *gossh.Client {
	t.Helper()
	c, err := gossh.Dial("tcp", e.listener, &gossh.ClientConfig{
		User: "agent", HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) agentOptions() []string {
	_, port, _ := net.SplitHostPort(e.listener)
	return []string{
		"-F", "/dev/null",
		"-o", "IdentityFile=/dev/null",
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + e.knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "HostKeyAlias=" + e.sshd.Host,
		"-o", "BatchMode=yes",
		"-o", "ControlPath=none",
		"-o", "ConnectTimeout=10",
		"-o", "LogLevel=ERROR",
		"-p", port,
	}
}

// ssh runs the real ssh client as the agent; extra are options before the
// destination, command what to run.
func (e *env) ssh(t *testing.T, stdin string, extra []string, command ...string) (stdout, stderr string, code int) {
	t.Helper()
	host, _, _ := net.SplitHostPort(e.listener)
	// extra first: ssh keeps the first value of an option.
	args := append(append(extra, e.agentOptions()...), "agent@"+host)
	return run(t, stdin, "ssh", append(args, command...)...)
}

// sshEnv is ssh with extra environment variables for the client.
func (e *env) sshEnv(t *testing.T, environ, extra []string, command ...string) (stdout, stderr string, code int) {
	t.Helper()
	host, _, _ := net.SplitHostPort(e.listener)
	args := append(append(extra, e.agentOptions()...), "agent@"+host)
	return runEnv(t, environ, "", "ssh", append(args, command...)...)
}

// run runs an OpenSSH client program with a time limit.
func run(t *testing.T, stdin, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runEnv(t, nil, stdin, name, args...)
}

func runEnv(t *testing.T, environ []string, stdin, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshtest.ClientBinary(t, name), args...)
	cmd.Env = append(os.Environ(), environ...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = bytes.NewBufferString(stdin)
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running %s: %v", name, err)
	}
	return out.String(), errb.String(), code
}

// commands returns the command events of every recorded session, once
// every session has ended.
func (e *env) commands(t *testing.T) []record.Command {
	t.Helper()
	e.idle(t)
	return proxytest.Commands(t, e.store)
}

// idle waits until the gateway has no session running.
func (e *env) idle(t testing.TB) {
	t.Helper()
	proxytest.Idle(t, e.server)
}

// counter reads a counter of the registry with the given label values.
func (e *env) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return proxytest.Counter(t, e.reg, name, labels)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	proxytest.WaitFor(t, what, cond)
}

// lockedBuffer is the gateway's log sink.
type lockedBuffer = proxytest.LockedBuffer
