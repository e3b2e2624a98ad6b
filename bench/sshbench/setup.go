//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/interlock-dev/interlock/bench/benchenv"
	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/proxytest"
	sshproxy "github.com/interlock-dev/interlock/proxy/ssh"
	"github.com/interlock-dev/interlock/proxy/ssh/sshtest"
	"github.com/interlock-dev/interlock/proxy/sshca"
	"github.com/interlock-dev/interlock/record"
)

const (
	// sshdHost is upstream's address; the gateway listens on 127.0.0.1, so
	// the two paths never share an address by mistake.
	sshdHost = "127.0.0.2"
	// targetName is the gateway's ssh target.
	targetName = "bastion"
	// workload is the caller the fixed attribution names.
	workload = "bench"
	// deniedCommand is refused by the no-rm rule, and harmless when run.
	deniedCommand = "rm -rf /nonexistent-x"
	// deniedExitStatus is what the gateway answers a denied command with.
	deniedExitStatus = 126
	// runTimeout bounds one ssh client run.
	runTimeout = 5 * time.Minute
	// settleTimeout bounds the wait for a session's processes and
	// goroutines to end after its client has.
	settleTimeout = 10 * time.Second
)

// benchPolicy is the gateway's policy: every allowed request is decided
// against all three rules, as in proxy/ssh's tests.
var benchPolicy = policy.Config{
	Default: "allow",
	Rules: []policy.RuleConfig{
		{
			Name:    "no-rm",
			When:    `ssh.request == "exec" && "rm" in ssh.programs`,
			Action:  "deny",
			Message: "deleting files is not allowed for agents",
		},
		{
			Name:    "no-forwarding",
			When:    `ssh.request in ["direct-tcpip", "forwarded-tcpip", "agent-forwarding", "x11"]`,
			Action:  "deny",
			Message: "forwarding is not allowed for agents",
		},
		{
			Name:    "etc-read-only",
			When:    `ssh.request == "sftp" && ssh.file.writes && ssh.file.path.startsWith("/etc/")`,
			Action:  "deny",
			Message: "/etc is read-only",
		},
	},
}

// path is one way for a client to reach sshd.
type path struct {
	name string // direct, gateway
	// sshArgs are the OpenSSH client's arguments to run command.
	sshArgs func(command string) []string
	// addr is what a client dials; hostName what its host key is checked
	// under; config the x/crypto client configuration.
	addr, hostName string
	config         *ssh.ClientConfig
}

// bench is one run: what it started and how to reach it.
type bench struct {
	opts   options
	dir    string
	sshBin string

	sshd              *sshtest.Server
	store             *record.Store
	server            *proxy.Server
	gwLog             string
	payload           string // -size MiB of random bytes
	empty             string // zero bytes
	size              int64
	direct            path
	gateway           path
	benchenv.Cleanups // stops what the run started, newest first
}

// setUp starts sshd and the gateway and writes the payload; on error it
// leaves nothing behind.
func setUp(o options) (_ *bench, err error) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		return nil, fmt.Errorf("finding the OpenSSH client (openssh-client): %w", err)
	}
	dir, err := os.MkdirTemp("", "interlock-sshbench-")
	if err != nil {
		return nil, fmt.Errorf("making the run's folder: %w", err)
	}
	b := &bench{opts: o, dir: dir, sshBin: sshBin, size: int64(o.sizeMiB) << 20}
	b.OnClose(func() error {
		if o.keep {
			logf("kept %s (recordings, gateway.log, sshd.log)", dir)
			return nil
		}
		return os.RemoveAll(dir)
	})
	defer func() {
		if err != nil {
			err = errors.Join(err, b.Close())
		}
	}()

	b.payload = filepath.Join(dir, "payload")
	if err := writeRandom(b.payload, b.size); err != nil {
		return nil, err
	}
	b.empty = filepath.Join(dir, "empty")
	if err := os.WriteFile(b.empty, nil, 0o600); err != nil {
		return nil, err
	}

	sshd, err := sshtest.Launch(sshtest.Options{Host: sshdHost})
	if err != nil {
		return nil, fmt.Errorf("starting sshd: %w", err)
	}
	b.sshd = sshd
	b.OnClose(func() error {
		if o.keep {
			if log, err := os.ReadFile(sshd.LogFile); err == nil {
				os.WriteFile(filepath.Join(dir, "sshd.log"), log, 0o600)
			}
		}
		return sshd.Close()
	})
	if err := b.startGateway(); err != nil {
		return nil, err
	}
	return b, nil
}

// writeRandom writes size bytes that do not compress, so that nothing on
// either path can shrink them.
func writeRandom(name string, size int64) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing the payload: %w", err)
	}
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(i * 7)
	}
	src := rand.NewChaCha8(seed)
	_, err = io.CopyN(f, src, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing the payload: %w", err)
	}
	return nil
}

// startGateway runs the ssh handler behind a proxy.Server in this process,
// wired as proxy/ssh's tests wire it.
func (b *bench) startGateway() error {
	sshd := b.sshd
	tgt := sshproxy.Target{
		Name:           targetName,
		Address:        sshd.Addr(),
		User:           sshd.User,
		PrivateKeyFile: sshd.ClientKeyFile,
		KnownHosts:     sshd.KnownHostsFile,
	}
	pol, err := policy.Compile(benchPolicy, policy.Env{Targets: map[string]string{targetName: "ssh"}, Workloads: []string{workload}})
	if err != nil {
		return fmt.Errorf("compiling the policy: %w", err)
	}
	store, err := record.OpenStore(filepath.Join(b.dir, "recordings"))
	if err != nil {
		return err
	}
	b.store = store
	ca, err := sshca.LoadOrCreate(filepath.Join(b.dir, "ssh-ca"))
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	commands, err := proxy.NewCommandMetrics(reg)
	if err != nil {
		return err
	}
	b.gwLog = filepath.Join(b.dir, "gateway.log")
	logFile, err := os.OpenFile(b.gwLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	b.OnClose(logFile.Close)
	logger := slog.New(slog.NewTextHandler(logFile, nil))
	h, err := sshproxy.New(sshproxy.Options{
		Targets:    map[uint32]sshproxy.Target{1: tgt},
		Policy:     pol,
		Recordings: store,
		CA:         ca,
		Commands:   commands,
		Logger:     logger,
	})
	if err != nil {
		return fmt.Errorf("starting the ssh handler: %w", err)
	}
	srv, err := proxy.NewServer(proxy.Options{Handlers: map[string]proxy.Handler{"ssh": h}, Logger: logger, Registerer: reg})
	if err != nil {
		return err
	}
	b.server = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for agents: %w", err)
	}
	at := proxy.Attribution{
		Target: proxy.Target{ID: 1, Name: targetName, Protocol: "ssh", Address: tgt.Address},
		Caller: identity.Caller{
			Workload: workload,
			Identity: identity.Identity{Subject: "agent:bench", Groups: []string{"agents"}},
			PID:      uint32(os.Getpid()),
			UID:      uint32(os.Getuid()),
		},
		Destination: netip.MustParseAddrPort(sshd.Addr()),
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ctx, ln, proxytest.Fixed(at))
	}()
	b.OnClose(func() error {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), settleTimeout)
		defer scancel()
		cut, err := srv.Shutdown(sctx)
		<-served
		if err != nil {
			return fmt.Errorf("stopping the gateway (%d sessions cut): %w", cut, err)
		}
		return nil
	})

	// The agent's trust: the gateway CA for sshd's address, as
	// `interlock ca ssh-known-hosts` writes it.
	line, err := ca.KnownHostsLine(sshd.Host)
	if err != nil {
		return err
	}
	agentKnownHosts := filepath.Join(b.dir, "agent_known_hosts")
	if err := os.WriteFile(agentKnownHosts, []byte(line+"\n"), 0o600); err != nil {
		return err
	}
	hostKeys, err := knownhosts.New(agentKnownHosts)
	if err != nil {
		return fmt.Errorf("reading the agent's known_hosts: %w", err)
	}

	b.direct = path{
		name: "direct",
		sshArgs: func(command string) []string {
			return sshd.SSHArgs(command)
		},
		addr:     sshd.Addr(),
		hostName: sshd.Addr(),
		config:   sshd.ClientConfig(),
	}
	gwAddr := ln.Addr().String()
	gwHost, gwPort, _ := net.SplitHostPort(gwAddr)
	b.gateway = path{
		name: "gateway",
		// An agent's options: no key of its own, the gateway CA as the only
		// trust, sshd's address as the name the certificate must carry.
		sshArgs: func(command string) []string {
			return []string{
				"-F", "/dev/null",
				"-o", "IdentityFile=/dev/null",
				"-o", "IdentitiesOnly=yes",
				"-o", "UserKnownHostsFile=" + agentKnownHosts,
				"-o", "GlobalKnownHostsFile=/dev/null",
				"-o", "StrictHostKeyChecking=yes",
				"-o", "HostKeyAlias=" + sshd.Host,
				"-o", "UpdateHostKeys=no",
				"-o", "BatchMode=yes",
				"-o", "ControlPath=none",
				"-o", "ConnectTimeout=10",
				"-o", "LogLevel=ERROR",
				"-p", gwPort,
				"agent@" + gwHost,
				command,
			}
		},
		addr: gwAddr,
		// HostKeyAlias's counterpart: the certificate is checked for sshd's
		// address (port 22 is how known_hosts names a bare host).
		hostName: net.JoinHostPort(sshd.Host, "22"),
		config: &ssh.ClientConfig{
			User:            "agent",
			HostKeyCallback: hostKeys,
			Timeout:         10 * time.Second,
		},
	}
	return nil
}

// sshRun is one finished OpenSSH client run.
type sshRun struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
	clientCPU      time.Duration
}

// runSSH runs the OpenSSH client on p with stdin from the file in, and
// extra options first (ssh keeps the first value of an option).
func (b *bench) runSSH(ctx context.Context, p path, command, in string, extra ...string) (sshRun, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	stdin, err := os.Open(in)
	if err != nil {
		return sshRun{}, err
	}
	defer stdin.Close()
	if b.opts.cipher != "" {
		extra = append(extra, "-c", b.opts.cipher)
	}
	cmd := exec.CommandContext(ctx, b.sshBin, append(extra, p.sshArgs(command)...)...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	// Dies with this program; ^C reaches this program only, which stops
	// its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	start := time.Now()
	err = cmd.Run()
	r := sshRun{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return r, fmt.Errorf("ssh %s %q: %w", p.name, command, context.Cause(ctx))
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		return r, fmt.Errorf("running ssh %s %q: %w", p.name, command, err)
	}
	r.clientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}

// settle waits until the gateway has no session left and sshd no
// connection process, so that the next run starts from the same state and
// their CPU time is all accounted for.
func (b *bench) settle(ctx context.Context) error {
	deadline := time.Now().Add(settleTimeout)
	for len(b.server.Active()) > 0 || hasChildren(b.sshd.Pid()) {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sessions still running %s after their clients ended (gateway: %d)", settleTimeout, len(b.server.Active()))
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// sessions counts the gateway's recorded sessions.
func (b *bench) sessions() (int, error) {
	sums, err := b.store.List()
	if err != nil {
		return 0, err
	}
	return len(sums), nil
}

// ciphers are what each leg negotiated.
type ciphers struct {
	direct, agentLeg, upstreamLeg string // OpenSSH ↔ sshd, OpenSSH ↔ gateway, gateway ↔ sshd
	keystroke                     [2]string
}

var (
	kexLine    = regexp.MustCompile(`kex: algorithm: (\S+)`)
	cipherLine = regexp.MustCompile(`kex: server->client cipher: (\S+) MAC: (\S+)`)
)

// check makes sure each path is what it claims before anything is
// measured: a session through the gateway is recorded and a command the
// policy denies exits 126 there, while on the direct path nothing is
// recorded and the same command runs. It returns the ciphers each leg
// negotiates.
func (b *bench) check(ctx context.Context) (ciphers, error) {
	var c ciphers
	for _, p := range []path{b.direct, b.gateway} {
		before, err := b.sessions()
		if err != nil {
			return c, err
		}
		r, err := b.runSSH(ctx, p, "true", b.empty, "-v")
		if err != nil {
			return c, err
		}
		if r.code != 0 {
			return c, fmt.Errorf("ssh %s true: exit status %d\n%s%s", p.name, r.code, r.stderr, b.logTails())
		}
		m, k := cipherLine.FindStringSubmatch(r.stderr), kexLine.FindStringSubmatch(r.stderr)
		if m == nil || k == nil {
			return c, fmt.Errorf("ssh -v %s: no negotiated algorithms in its output\n%s", p.name, r.stderr)
		}
		cipher := m[1]
		if m[2] != "<implicit>" {
			cipher += " + " + m[2]
		}
		cipher += ", key exchange " + k[1]
		if p.name == "direct" {
			c.direct = cipher
		} else {
			c.agentLeg = cipher
		}
		if err := b.settle(ctx); err != nil {
			return c, err
		}
		after, err := b.sessions()
		if err != nil {
			return c, err
		}
		if want := before + map[bool]int{true: 1}[p.name == "gateway"]; after != want {
			return c, fmt.Errorf("ssh %s true: the gateway recorded %d sessions, want %d: this path is not what it claims", p.name, after-before, want-before)
		}

		r, err = b.runSSH(ctx, p, deniedCommand, b.empty)
		if err != nil {
			return c, err
		}
		want := map[bool]int{true: deniedExitStatus}[p.name == "gateway"]
		if r.code != want {
			return c, fmt.Errorf("ssh %s %q: exit status %d, want %d (the gateway's policy denies it, sshd runs it)\n%s%s", p.name, deniedCommand, r.code, want, r.stderr, b.logTails())
		}
		if err := b.settle(ctx); err != nil {
			return c, err
		}
	}
	sums, err := b.store.List()
	if err != nil {
		return c, err
	}
	if len(sums) != 2 || sums[0].Denied != 1 {
		return c, fmt.Errorf("the gateway's recordings: %d sessions, want 2, the last with one denied command", len(sums))
	}

	// The gateway's upstream leg negotiates as any x/crypto client with the
	// default algorithms does against this sshd.
	up, err := dial(ctx, b.direct)
	if err != nil {
		return c, err
	}
	c.upstreamLeg = negotiated(up)
	if err := up.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return c, err
	}
	return c, b.settle(ctx)
}

// logTails are the ends of the gateway's and sshd's logs, for an error.
func (b *bench) logTails() string {
	gw, _ := os.ReadFile(b.gwLog)
	if len(gw) > 3000 {
		gw = gw[len(gw)-3000:]
	}
	return "\ngateway log:\n" + string(gw) + "\nsshd log:\n" + b.sshd.LogTail()
}

// dial opens an x/crypto client connection on p.
func dial(ctx context.Context, p path) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("dialing %s (%s): %w", p.name, p.addr, err)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	cc, chans, reqs, err := ssh.NewClientConn(nc, p.hostName, p.config)
	stop()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("ssh handshake on %s: %w", p.name, err)
	}
	return ssh.NewClient(cc, chans, reqs), nil
}

// negotiated names the cipher (and MAC, unless the cipher is an AEAD) a
// client connection sends with, and its key exchange.
func negotiated(c *ssh.Client) string {
	am, ok := c.Conn.(ssh.AlgorithmsConnMetadata)
	if !ok {
		return "?"
	}
	a := am.Algorithms()
	cipher := a.Write.Cipher
	if !strings.Contains(cipher, "gcm") && !strings.Contains(cipher, "poly1305") {
		cipher += " + " + a.Write.MAC
	}
	return cipher + ", key exchange " + a.KeyExchange
}

// hasChildren reports whether pid has a child process, from /proc.
func hasChildren(pid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	want := strconv.Itoa(pid)
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited since the listing
		}
		if f := statFields(stat); len(f) > 1 && f[1] == want {
			return true
		}
	}
	return false
}

// statFields are the fields of a /proc/PID/stat line after the command
// name, which may hold spaces and parentheses: state, ppid, ...
func statFields(stat []byte) []string {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(stat[i+1:]))
}
