package ssh

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/record"
)

// serverVersion is what agents see; it names no version, so it tells an
// attacker nothing about which vulnerabilities the gateway may have.
const serverVersion = "SSH-2.0-interlock"

// ciphers are the ciphers the gateway offers on both sides: AES (with the
// CPU's AES instructions) and not chacha20-poly1305, which x/crypto runs in
// plain Go at about twice the CPU per byte on amd64 (docs/benchmarks.md).
// Upstream, the gateway's order (GCM first) decides; toward the agent the
// client's does. Every OpenSSH since 6.2 speaks these.
var ciphers = []string{
	ssh.CipherAES128GCM, ssh.CipherAES256GCM,
	ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR,
}

// Errors a session ends with.
var (
	errUpstreamClosed = errors.New("upstream closed the connection")
	errAgentClosed    = errors.New("client closed the connection")
)

// run is the whole connection.
func (c *conn) run() error {
	conf, err := c.serverConfig()
	if err != nil {
		return err
	}
	c.s.Client.SetDeadline(time.Now().Add(c.h.opts.HandshakeTimeout))
	agent, chans, reqs, err := ssh.NewServerConn(c.s.Client, conf)
	if err != nil {
		if errors.Is(err, net.ErrClosed) || isEOF(err) {
			return nil // a probe, or a client that gave up
		}
		return fmt.Errorf("ssh handshake with the agent: %w", err)
	}
	c.s.Client.SetDeadline(time.Time{})
	c.agent = agent
	// The identity is final now (a token given as the password included).
	c.cmds = c.h.opts.Commands.Session("ssh", c.s.Target.Name, c.s.Caller)
	c.user = agent.User()
	defer agent.Close()
	c.base = policy.Request{
		Target:   policy.Target{Name: c.s.Target.Name, Protocol: "ssh", Address: c.s.Target.Address},
		Workload: policy.Workload{Name: c.s.Caller.Workload},
		Identity: policy.Identity{
			Subject: c.s.Caller.Identity.Subject,
			Groups:  slices.Clone(c.s.Caller.Identity.Groups),
			Issuer:  c.s.Caller.Identity.Issuer,
		},
	}

	if err := c.startRecording(agent); err != nil {
		c.rejectAll(chans, reqs, "interlock cannot record this session, so it does not run it")
		return err
	}
	end := record.End{}
	defer func() {
		if err := c.rec.Close(end); err != nil {
			c.log.Error("closing the session recording", "error", err)
		}
	}()
	stopWatch := proxy.WatchRecording(c.rec, c.cancel, c.log)
	defer stopWatch()

	up, err := c.dialUpstream()
	if err != nil {
		if c.ctx.Err() != nil {
			end.Reason = context.Cause(c.ctx).Error()
			return context.Cause(c.ctx)
		}
		c.log.Warn("upstream login failed", "error", err)
		end.Reason = "upstream login failed: " + err.Error()
		c.rejectAll(chans, reqs, fmt.Sprintf("interlock cannot log in to %s: %v", c.s.Target.Name, err))
		return fmt.Errorf("logging in upstream: %w", err)
	}
	c.upstream = up
	defer up.Close()
	c.log.Info("ssh session ready", "user", c.user, "client_version", string(agent.ClientVersion()))

	// Reverse channels: only what an allowed request asked for.
	for _, typ := range []string{"forwarded-tcpip", "auth-agent@openssh.com", "x11"} {
		c.wg.Go(func() { c.reverseChannels(typ, up.HandleChannelOpen(typ)) })
	}
	stop := context.AfterFunc(c.ctx, func() { c.abort(context.Cause(c.ctx)) })
	defer stop()

	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		c.globalRequests(reqs)
	}()
	upDone := make(chan struct{})
	go func() {
		up.Wait()
		c.mu.Lock()
		c.upGone = !c.agentGone
		c.mu.Unlock()
		close(upDone)
		agent.Close() // upstream is gone: so is the session
	}()
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			c.wg.Go(func() { c.sessionChannel(nc) })
		case "direct-tcpip":
			c.wg.Go(func() { c.directTCPIP(nc) })
		default:
			c.refuseChannel(nc, policy.SSH{Request: nc.ChannelType()}, ssh.UnknownChannelType,
				"channel type "+nc.ChannelType()+" is not supported")
		}
	}
	<-agentDone
	up.Close()
	<-upDone
	// What a channel still waits for (a held command's review) ends with
	// the connection.
	cause := errAgentClosed
	if c.upstreamEndedFirst() {
		cause = errUpstreamClosed
	}
	aborted := !stop() // the abort already ran, or is running
	c.cancel(cause)
	c.wg.Wait()

	if aborted {
		end.Reason = context.Cause(c.ctx).Error()
		return context.Cause(c.ctx)
	}
	end.Reason = cause.Error()
	return nil
}

// upstreamEndedFirst reports whether upstream closed the connection while
// the agent still had it open; the agent's side is closed after.
func (c *conn) upstreamEndedFirst() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.upGone
}

func isEOF(err error) bool {
	return errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "EOF") ||
		strings.Contains(err.Error(), "connection reset by peer")
}

// serverConfig is the agent-facing SSH server: the CA's certificate for
// the names the agent may have dialled (and the target's plain host key,
// if it has one); the workload's kernel-attested identity is the
// credential, so "none" and any public key are accepted, passwords and
// keyboard-interactive refused.
func (c *conn) serverConfig() (*ssh.ServerConfig, error) {
	conf := &ssh.ServerConfig{
		NoClientAuth: true,
		NoClientAuthCallback: func(ssh.ConnMetadata) (*ssh.Permissions, error) {
			return &ssh.Permissions{}, nil
		},
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			return &ssh.Permissions{Extensions: map[string]string{"public_key": ssh.FingerprintSHA256(key)}}, nil
		},
		ServerVersion: serverVersion,
	}
	conf.Ciphers = ciphers
	if need := c.s.Caller.NeedsLogin; need != "" {
		c.requireToken(conf, need)
	}
	cert, err := c.h.opts.CA.HostSigner(c.principals())
	if err != nil {
		return nil, fmt.Errorf("minting the host certificate: %w", err)
	}
	conf.AddHostKey(cert)
	if c.t.agentKey != nil {
		conf.AddHostKey(c.t.agentKey)
	}
	return conf, nil
}

// requireToken makes a caller whose workload must log in with an OIDC
// token (and has not) give the token as its SSH password or
// keyboard-interactive answer; nothing else authenticates it.
func (c *conn) requireToken(conf *ssh.ServerConfig, issuer string) {
	how := fmt.Sprintf("interlock: workload %s must prove its identity with an OIDC token from %s: run interlock login, or give the token as the password", c.s.Caller.Workload, issuer)
	conf.NoClientAuth = false
	conf.NoClientAuthCallback = nil
	conf.PublicKeyCallback = nil
	conf.BannerCallback = func(ssh.ConnMetadata) string { return how + "\n" }
	check := func(token string) (*ssh.Permissions, error) {
		if c.h.opts.Login == nil {
			return nil, errors.New(how)
		}
		id, expires, err := c.h.opts.Login(c.ctx, c.s.Caller, token, "ssh password")
		if err != nil {
			c.log.Warn("OIDC token refused", "error", err)
			return nil, fmt.Errorf("OIDC token refused: %w", err)
		}
		c.s.Caller.Identity, c.s.Caller.IdentityExpires, c.s.Caller.NeedsLogin = id, expires, ""
		return &ssh.Permissions{}, nil
	}
	conf.PasswordCallback = func(_ ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) { return check(string(pw)) }
	conf.KeyboardInteractiveCallback = func(_ ssh.ConnMetadata, ask ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
		answers, err := ask("", how, []string{"OIDC token: "}, []bool{false})
		if err != nil || len(answers) != 1 {
			return nil, errors.New("no token given")
		}
		return check(answers[0])
	}
}

// startRecording opens the session's event log.
func (c *conn) startRecording(agent *ssh.ServerConn) error {
	attrs := map[string]string{
		"user":           agent.User(),
		"client_version": string(agent.ClientVersion()),
	}
	if p := agent.Permissions; p != nil && p.Extensions["public_key"] != "" {
		attrs["public_key"] = p.Extensions["public_key"]
	}
	start := proxy.RecordStart(c.s, "ssh", attrs)
	rec, err := c.h.opts.Recordings.Create(c.s.ID, start, time.Now())
	if err != nil {
		c.log.Error("cannot record the session; refusing it", "error", err)
		return fmt.Errorf("starting the session recording: %w", err)
	}
	c.rec = rec
	return nil
}

// rejectAll refuses every channel and request of an agent connection that
// cannot be served, with why, until the agent gives up (at most a minute).
func (c *conn) rejectAll(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, why string) {
	go ssh.DiscardRequests(reqs)
	timer := time.AfterFunc(time.Minute, func() { c.agent.Close() })
	defer timer.Stop()
	stop := context.AfterFunc(c.ctx, func() { c.agent.Close() })
	defer stop()
	for nc := range chans {
		nc.Reject(ssh.ConnectionFailed, why)
	}
}

// dialUpstream connects to the address the agent dialled and logs in with
// the target's credentials, checking upstream's host key.
func (c *conn) dialUpstream() (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.h.opts.HandshakeTimeout)
	defer cancel()
	addr := c.s.Destination.String()
	nc, err := c.s.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conf := &ssh.ClientConfig{
		User:              c.t.User,
		Auth:              c.t.auth,
		HostKeyCallback:   c.t.hostKeys,
		HostKeyAlgorithms: c.t.hostKeyAlgos,
		ClientVersion:     serverVersion,
		Timeout:           c.h.opts.HandshakeTimeout,
	}
	conf.Ciphers = ciphers
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	cc, chans, reqs, err := ssh.NewClientConn(nc, c.hostKeyName(), conf)
	stop()
	if err != nil {
		nc.Close()
		if ctx.Err() != nil && c.ctx.Err() == nil {
			return nil, fmt.Errorf("upstream handshake timed out: %w", err)
		}
		return nil, err
	}
	return ssh.NewClient(cc, chans, reqs), nil
}

// hostKeyName is the host:port upstream's key is looked up under: the
// configured address, so known_hosts can name the host as operators know it.
func (c *conn) hostKeyName() string {
	if c.t.Address != "" {
		return c.t.Address
	}
	return c.s.Destination.String()
}

// keyAlgorithms are the handshake algorithms of keys, so that the
// handshake asks upstream for a key the gateway can check (a server with
// several host keys would otherwise be asked for whichever type x/crypto
// prefers). Nil for no keys: the default order.
func keyAlgorithms(keys []ssh.PublicKey) []string {
	var algos []string
	for _, k := range keys {
		switch k.Type() {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, k.Type())
		}
	}
	return algos
}

// knownKeys are the plain (not hashed, not CA) keys file lists for address.
func knownKeys(file, address string) []ssh.PublicKey {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	want := knownhosts.Normalize(address)
	var keys []ssh.PublicKey
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		marker, hosts, key, _, _, err := ssh.ParseKnownHosts(sc.Bytes())
		if err != nil || marker != "" {
			continue
		}
		for _, h := range hosts {
			if knownhosts.Normalize(h) == want {
				keys = append(keys, key)
				break
			}
		}
	}
	return keys
}

// abort ends the session because ctx is done: every open shell or command
// is told why on its stderr, then both connections close. The telling is
// bounded by tellTimeout: an agent that stopped reading (its channel's
// window full) must not keep a session an administrator, an expired login
// or a failed recording ended running; closing the connections ends the
// write.
func (c *conn) abort(cause error) {
	c.mu.Lock()
	open := make([]*sessionChannel, 0, len(c.open))
	for sc := range c.open {
		open = append(open, sc)
	}
	c.mu.Unlock()
	told := make(chan struct{})
	go func() {
		defer close(told)
		for _, sc := range open {
			sc.tell("interlock ended the session: " + cause.Error())
		}
	}()
	timer := time.NewTimer(tellTimeout)
	select {
	case <-told:
	case <-timer.C:
	}
	timer.Stop()
	c.agent.Close()
	if c.upstream != nil {
		c.upstream.Close()
	}
}

// tellTimeout bounds how long abort waits to tell the agent why its session
// ends.
const tellTimeout = 2 * time.Second

// globalRequests handles the agent's connection-level requests until the
// agent's connection ends.
func (c *conn) globalRequests(reqs <-chan *ssh.Request) {
	defer func() {
		c.mu.Lock()
		c.agentGone = true
		c.mu.Unlock()
	}()
	for req := range reqs {
		switch req.Type {
		case "tcpip-forward":
			c.tcpipForward(req)
		case "cancel-tcpip-forward":
			ok, resp, err := c.upstream.SendRequest(req.Type, req.WantReply, req.Payload)
			if err != nil {
				ok = false
			}
			req.Reply(ok, resp)
		default:
			// keepalive@openssh.com (any answer keeps the client happy),
			// no-more-sessions@openssh.com and anything unknown.
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

// decide asks the policy about one request and counts the decision. Only
// exec, shell and subsystem requests can be held for review (see
// sessionChannel.hold); a review rule matching anything else denies it.
func (c *conn) decide(f policy.SSH) policy.Decision {
	d := c.evaluate(f)
	if d.Action == policy.Review {
		d = policy.Decision{Action: policy.Deny, Rule: d.Rule, Message: d.Message + " (only exec, shell and subsystem requests can be held for review)"}
	}
	c.cmds.Decided(d)
	return d
}

// evaluate is the policy's decision on one request, uncounted (review
// included). A caller
// whose OIDC identity expired gets nothing more: its session ends.
func (c *conn) evaluate(f policy.SSH) policy.Decision {
	if proxy.IdentityExpired(c.s.Caller, time.Now()) {
		c.cancel(proxy.ErrIdentityExpired)
		return policy.Decision{Action: policy.Deny, Message: proxy.ErrIdentityExpired.Error()}
	}
	f.User = c.user
	r := c.base
	r.SSH = &f
	return c.h.opts.Policy.Decide(r)
}

// record appends a command event; a failure ends the session through
// watchRecording.
func (c *conn) record(cmd record.Command) {
	if err := c.rec.Command(cmd); err != nil {
		c.log.Error("recording a command", "error", err, "command", cmd.Command)
	}
}

// recordDecision records a request decided and, when denied, done with.
func (c *conn) recordDecision(f policy.SSH, text string, d policy.Decision) {
	c.recordVerdict(f, text, d, nil)
}

// beginCommand records, with strict recording, a command about to be
// forwarded, on disk before it runs, and returns its Seq for endCommand;
// without strict recording it records nothing and returns 0 (the command
// is recorded whole when it ends). An error means it must not run.
func (c *conn) beginCommand(cmd record.Command) (uint64, error) {
	if !c.rec.Strict() {
		return 0, nil
	}
	return c.rec.Begin(cmd)
}

// endCommand records how a command ended: as a result of its Begin, or
// whole.
func (c *conn) endCommand(seq uint64, cmd record.Command) {
	if seq == 0 {
		c.record(cmd)
		return
	}
	if err := c.rec.Result(cmd.Outcome(seq)); err != nil {
		c.log.Error("recording a result", "error", err)
	}
}

// recordVerdict records a request decided, with the review that decided
// it when one held it.
func (c *conn) recordVerdict(f policy.SSH, text string, d policy.Decision, v *proxy.Verdict) {
	cmd := record.Command{Text: text, Command: f.Request, Kind: f.FileOp, Decision: string(d.Action), Rule: d.Rule}
	if !proxy.Allowed(d) {
		cmd.Message = d.Message
	}
	if v != nil {
		cmd.Review, cmd.Decider = v.RequestID, v.Decider
	}
	c.record(cmd)
}

// refuseChannel records and rejects a channel the policy (or the gateway)
// does not allow.
func (c *conn) refuseChannel(nc ssh.NewChannel, f policy.SSH, reason ssh.RejectionReason, msg string) {
	d := policy.Decision{Action: policy.Deny, Message: msg}
	c.cmds.Decided(d)
	c.recordDecision(f, f.Request, d)
	nc.Reject(reason, "interlock: "+msg)
}
