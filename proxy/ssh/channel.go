package ssh

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/record"
	"github.com/interlock-dev/interlock/record/asciicast"
)

// errMalformedRequest: a request whose payload does not decode.
var errMalformedRequest = errors.New("malformed request")

// deniedExitStatus is the exit status of a command, shell or subsystem the
// policy refused: 126, the shell's "found but cannot be run".
const deniedExitStatus = 126

// sessionChannel is one "session" channel: a shell, a command or a
// subsystem, relayed between the agent's channel and upstream's.
type sessionChannel struct {
	c  *conn
	n  int // the channel's number in the session, for its .cast file
	ch ssh.Channel
	up ssh.Channel

	eofMu sync.Mutex // orders tell against the output relay's CloseWrite

	mu       sync.Mutex
	pty      *ptyRequest
	started  bool   // exec, shell or subsystem ran
	seq      uint64 // strict recording: its command event's Seq
	cmd      record.Command
	begun    time.Time
	exit     string // "exit 0", "signal KILL"
	cast     *asciicast.Writer
	castFrom time.Time
	input    bool // record input into the cast
}

type ptyRequest struct {
	Term                 string
	Cols, Rows, WPx, HPx uint32
	Modes                string
}

// terminalName reports a pty request's terminal type that names a terminal
// (xterm-256color, screen.xterm, rxvt-unicode, vt100) and nothing else:
// ASCII letters, digits and . _ + -, at most 64 bytes. An empty one
// passes (no TERM).
func terminalName(term string) bool {
	if len(term) > 64 {
		return false
	}
	for i := 0; i < len(term); i++ {
		switch b := term[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '.', b == '_', b == '+', b == '-':
		default:
			return false
		}
	}
	return true
}

// sessionChannel relays one session channel.
func (c *conn) sessionChannel(nc ssh.NewChannel) {
	up, upReqs, err := c.upstream.OpenChannel("session", nc.ExtraData())
	if err != nil {
		rejectLike(nc, err)
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		up.Close()
		return
	}
	c.mu.Lock()
	c.nextChan++
	sc := &sessionChannel{c: c, n: c.nextChan, ch: ch, up: up}
	c.open[sc] = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.open, sc)
		c.mu.Unlock()
	}()

	pumps := &sync.WaitGroup{}
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		sc.upstreamRequests(upReqs)
		// Upstream closed its channel: the output still in flight goes
		// out, then the agent's channel closes.
		pumps.Wait()
		ch.Close()
	}()
	for req := range reqs {
		sc.request(req, pumps)
	}
	// The agent closed its channel.
	up.Close()
	<-upDone
	sc.finish()
}

// rejectLike refuses nc with upstream's reason for refusing the same.
func rejectLike(nc ssh.NewChannel, err error) {
	if oe, ok := err.(*ssh.OpenChannelError); ok {
		nc.Reject(oe.Reason, oe.Message)
		return
	}
	nc.Reject(ssh.ConnectionFailed, "interlock: upstream: "+err.Error())
}

// request handles one request of the agent on a session channel.
func (sc *sessionChannel) request(req *ssh.Request, pumps *sync.WaitGroup) {
	c := sc.c
	switch req.Type {
	case "exec", "shell", "subsystem":
		sc.start(req, pumps)
	case "pty-req":
		var p ptyRequest
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			req.Reply(false, nil)
			return
		}
		if !terminalName(p.Term) {
			// sshd exports it as TERM, which the shell and the programs
			// it starts read (bash evaluates a variable's text in
			// arithmetic): only a terminal's name passes.
			d := policy.Decision{Action: policy.Deny, Message: "a terminal name is letters, digits and . _ + - only"}
			c.cmds.Decided(d)
			c.recordDecision(policy.SSH{Request: "pty-req"}, "pty-req TERM="+p.Term, d)
			req.Reply(false, nil)
			return
		}
		sc.mu.Lock()
		sc.pty = &p
		sc.mu.Unlock()
		sc.forward(req)
	case "env":
		var e struct{ Name, Value string }
		if err := ssh.Unmarshal(req.Payload, &e); err != nil {
			req.Reply(false, nil)
			return
		}
		f := policy.SSH{Request: "env", EnvName: e.Name, EnvValue: e.Value}
		d := c.decide(f)
		c.recordDecision(f, e.Name+"="+e.Value, d)
		if d.Action != policy.Allow {
			req.Reply(false, nil)
			return
		}
		sc.forward(req)
	case "auth-agent-req@openssh.com":
		f := policy.SSH{Request: "agent-forwarding"}
		d := c.decide(f)
		c.recordDecision(f, "agent forwarding", d)
		if d.Action != policy.Allow {
			req.Reply(false, nil)
			return
		}
		c.mu.Lock()
		c.agentFwd = true
		c.mu.Unlock()
		sc.forward(req)
	case "x11-req":
		f := policy.SSH{Request: "x11"}
		d := c.decide(f)
		c.recordDecision(f, "x11 forwarding", d)
		if d.Action != policy.Allow {
			req.Reply(false, nil)
			return
		}
		c.mu.Lock()
		c.x11Fwd = true
		c.mu.Unlock()
		sc.forward(req)
	case "window-change":
		var w struct{ Cols, Rows, WPx, HPx uint32 }
		if ssh.Unmarshal(req.Payload, &w) == nil {
			sc.mu.Lock()
			if sc.cast != nil {
				sc.cast.Resize(time.Since(sc.castFrom), int(w.Cols), int(w.Rows))
			}
			sc.mu.Unlock()
		}
		sc.forward(req)
	case "signal", "break", "xon-xoff", "eow@openssh.com":
		sc.forward(req)
	default:
		if req.WantReply {
			req.Reply(false, nil)
		}
	}
}

// forward passes req upstream and its answer back.
func (sc *sessionChannel) forward(req *ssh.Request) {
	ok, err := sc.up.SendRequest(req.Type, req.WantReply, req.Payload)
	if req.WantReply {
		req.Reply(ok && err == nil, nil)
	}
}

// start decides an exec, shell or subsystem request; allowed, it goes
// upstream and the channel's data starts to flow; denied, the agent is told
// why on stderr and the channel ends with exit status 126.
func (sc *sessionChannel) start(req *ssh.Request, pumps *sync.WaitGroup) {
	c := sc.c
	sc.mu.Lock()
	again := sc.started
	sc.mu.Unlock()
	if again {
		req.Reply(false, nil) // as sshd: one program per channel
		return
	}
	f, text, err := sessionFacts(req)
	if errors.Is(err, errMalformedRequest) {
		req.Reply(false, nil)
		return
	}
	var d policy.Decision
	var verdict *proxy.Verdict
	if err != nil {
		f.User = c.user
		d = policy.Decision{Action: policy.Deny, Message: err.Error()}
		c.cmds.Decided(d)
	} else {
		d = c.evaluate(f)
		if d.Action == policy.Review {
			d, verdict = sc.hold(f, text, d)
		}
		c.cmds.Decided(d)
	}
	if !proxy.Allowed(d) {
		c.recordVerdict(f, text, d, verdict)
		sc.refuse(req, "interlock: "+d.Message)
		return
	}
	sc.mu.Lock()
	sc.started = true
	sc.begun = time.Now()
	sc.cmd = record.Command{Text: text, Command: f.Request, Decision: string(d.Action), Rule: d.Rule}
	if verdict != nil {
		sc.cmd.Review, sc.cmd.Decider = verdict.RequestID, verdict.Decider
	}
	terminal := f.Request == "shell" || sc.pty != nil
	sc.mu.Unlock()
	if terminal && f.Subsystem == "" {
		sc.startCast(d.RecordInput)
	}
	sc.mu.Lock()
	seq, err := c.beginCommand(sc.cmd)
	sc.seq = seq
	sc.mu.Unlock()
	if err != nil {
		sc.mu.Lock()
		sc.started = false // nothing ran: nothing to finish
		sc.mu.Unlock()
		sc.refuse(req, "interlock: cannot record this command, so it does not run it: "+err.Error())
		return
	}
	// Output is relayed from before the request goes upstream: a command
	// that ends at once must not close the channel ahead of its output.
	var relay *sftpRelay
	if f.Request == "subsystem" && f.Subsystem == "sftp" {
		relay = newSFTPRelay(sc)
	}
	// The agent's channel closes only once the request is answered: a
	// command that ends at once must not close it ahead of the answer,
	// which the agent would then never get.
	replied := make(chan struct{})
	sc.relayOutput(pumps, relay, replied)
	ok, err := sc.up.SendRequest(req.Type, true, req.Payload)
	if err != nil || !ok {
		sc.mu.Lock()
		sc.exit = ""
		sc.cmd.Error = "upstream refused the " + f.Request + " request"
		sc.mu.Unlock()
		req.Reply(false, nil)
		close(replied)
		sc.up.Close() // ends the output relay
		return
	}
	sc.relayInput(relay)
	req.Reply(true, nil)
	close(replied)
}

// refuse answers an exec, shell or subsystem that does not run: the agent
// reads why on stderr and gets exit status 126, and the channel closes.
func (sc *sessionChannel) refuse(req *ssh.Request, msg string) {
	req.Reply(true, nil)
	sc.tell(msg)
	sc.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{deniedExitStatus}))
	sc.eofMu.Lock()
	sc.ch.CloseWrite()
	sc.eofMu.Unlock()
	sc.ch.Close()
	sc.up.Close()
}

// hold asks a human about an exec, shell or subsystem a review rule holds.
// The agent is told on stderr what it waits for; the channel's requests
// wait with it.
func (sc *sessionChannel) hold(f policy.SSH, text string, d policy.Decision) (policy.Decision, *proxy.Verdict) {
	c := sc.c
	if c.h.opts.Reviewer == nil {
		return policy.Decision{Action: policy.Deny, Rule: d.Rule, Message: d.Message + " (review is not configured, so it is denied)"}, nil
	}
	op := f.Subsystem
	if len(f.Programs) > 0 {
		op = strings.Join(f.Programs, " ")
	}
	v, err := c.h.opts.Reviewer.Hold(c.ctx, proxy.Held{Session: c.s, Decision: d, Command: text, Kind: f.Request, Operation: op},
		func(id, how string) {
			sc.tell("interlock: rule " + d.Rule + " holds this command for review as request " + id + "; " + how)
		})
	if err != nil && v.State == "" {
		c.log.Error("holding a command for review", "error", err)
		return policy.Decision{Action: policy.Deny, Rule: d.Rule, Message: "interlock could not hold the command for review: " + err.Error()}, nil
	}
	c.log.Info("held command decided", "request", v.RequestID, "state", v.State, "decider", v.Decider)
	return v.Decision(d.Rule), &v
}

// sessionFacts are the policy facts of an exec, shell or subsystem
// request, and the text the recording shows for it.
func sessionFacts(req *ssh.Request) (policy.SSH, string, error) {
	switch req.Type {
	case "exec":
		var m struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &m); err != nil {
			return policy.SSH{}, "", fmt.Errorf("%w: %w", errMalformedRequest, err)
		}
		f, err := ExecFacts(m.Command)
		return f, m.Command, err
	case "subsystem":
		var m struct{ Name string }
		if err := ssh.Unmarshal(req.Payload, &m); err != nil {
			return policy.SSH{}, "", fmt.Errorf("%w: %w", errMalformedRequest, err)
		}
		return policy.SSH{Request: "subsystem", Subsystem: m.Name}, "subsystem " + m.Name, nil
	}
	return policy.SSH{Request: "shell"}, "(shell)", nil
}

// startCast starts the channel's terminal recording.
func (sc *sessionChannel) startCast(input bool) {
	c := sc.c
	name := c.s.ID + "." + strconv.Itoa(sc.n)
	path, err := asciicast.Path(c.h.opts.Recordings.Dir(), name)
	if err != nil {
		c.log.Error("naming the terminal recording", "error", err)
		return
	}
	h := asciicast.Header{Width: 80, Height: 24, Timestamp: time.Now().Unix(),
		Title: c.s.Target.Name + " " + c.user + " (" + c.s.Caller.Workload + ")"}
	sc.mu.Lock()
	if p := sc.pty; p != nil {
		if p.Cols > 0 && p.Cols <= 65535 {
			h.Width = int(p.Cols)
		}
		if p.Rows > 0 && p.Rows <= 65535 {
			h.Height = int(p.Rows)
		}
		if p.Term != "" {
			h.Env = map[string]string{"TERM": p.Term}
		}
	}
	sc.mu.Unlock()
	w, err := asciicast.Create(path, h)
	if err != nil {
		// The terminal stream is part of the session's record: without it
		// the session must not go on.
		c.log.Error("creating the terminal recording", "error", err)
		c.cancel(fmt.Errorf("%w: %w", proxy.ErrRecordingFailed, err))
		return
	}
	sc.mu.Lock()
	sc.cast, sc.castFrom, sc.input = w, time.Now(), input
	sc.cmd.Recording = name + asciicast.FileExt
	sc.mu.Unlock()
	go func() {
		select {
		case <-w.Failed():
			c.cancel(fmt.Errorf("%w: terminal recording", proxy.ErrRecordingFailed))
		case <-c.ctx.Done():
		}
	}()
}

// relayOutput relays upstream's output and errors to the agent (through the
// terminal recording when there is one, or packet by packet for sftp),
// and sends the agent EOF once both have ended. The pump counts as running
// until replied is closed (the agent's request answered), so the channel
// does not close before that.
func (sc *sessionChannel) relayOutput(pumps *sync.WaitGroup, relay *sftpRelay, replied <-chan struct{}) {
	pumps.Add(1)
	go func() {
		defer func() {
			<-replied
			pumps.Done()
		}()
		var wg sync.WaitGroup
		wg.Go(func() {
			if relay != nil {
				relay.replies()
				return
			}
			relayCopy(sc.ch, sc.tee(sc.up, false))
		})
		wg.Go(func() { relayCopy(sc.ch.Stderr(), sc.tee(sc.up.Stderr(), false)) })
		wg.Wait()
		sc.eofMu.Lock()
		sc.ch.CloseWrite()
		sc.eofMu.Unlock()
	}()
}

// relayInput relays the agent's input upstream (through the recording when the
// rule asked for input, or decided packet by packet for sftp), and sends
// upstream EOF when it ends.
func (sc *sessionChannel) relayInput(relay *sftpRelay) {
	go func() {
		if relay != nil {
			relay.requests()
		} else {
			relayCopy(sc.up, sc.tee(sc.ch, true))
		}
		sc.up.CloseWrite()
	}()
}

// tee returns r, recording what is read from it into the cast: output, or
// input when the rule asked for input.
func (sc *sessionChannel) tee(r io.Reader, input bool) io.Reader {
	sc.mu.Lock()
	w, from, rec := sc.cast, sc.castFrom, !input || sc.input
	sc.mu.Unlock()
	if w == nil || !rec {
		return r
	}
	return &castTee{r: r, w: w, from: from, input: input}
}

type castTee struct {
	r     io.Reader
	w     *asciicast.Writer
	from  time.Time
	input bool
}

func (t *castTee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		if t.input {
			t.w.Input(time.Since(t.from), p[:n])
		} else {
			t.w.Output(time.Since(t.from), p[:n])
		}
	}
	return n, err
}

// upstreamRequests passes upstream's channel requests (exit-status,
// exit-signal, keepalives) to the agent, noting how the program ended.
func (sc *sessionChannel) upstreamRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch req.Type {
		case "exit-status":
			var m struct{ Status uint32 }
			if ssh.Unmarshal(req.Payload, &m) == nil {
				sc.mu.Lock()
				sc.exit = "exit " + strconv.FormatUint(uint64(m.Status), 10)
				sc.mu.Unlock()
			}
		case "exit-signal":
			var m struct {
				Signal     string
				CoreDumped bool
				Message    string
				Lang       string
			}
			if ssh.Unmarshal(req.Payload, &m) == nil {
				sc.mu.Lock()
				sc.exit = "signal " + m.Signal
				sc.mu.Unlock()
			}
		}
		ok, err := sc.ch.SendRequest(req.Type, req.WantReply, req.Payload)
		if req.WantReply {
			req.Reply(ok && err == nil, nil)
		}
	}
}

// tell writes a line to the agent's stderr (in a terminal, from the start
// of a line).
func (sc *sessionChannel) tell(msg string) {
	sc.mu.Lock()
	pty := sc.pty != nil
	sc.mu.Unlock()
	line := msg + "\n"
	if pty {
		line = "\r\n" + msg + "\r\n"
	}
	// Not concurrently with the output relay's EOF: x/crypto's channel
	// does not guard its EOF flag against a concurrent write.
	sc.eofMu.Lock()
	defer sc.eofMu.Unlock()
	io.WriteString(sc.ch.Stderr(), line)
}

// finish records what ran on the channel, with how it ended.
func (sc *sessionChannel) finish() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	var cast asciicast.Digest
	if sc.cast != nil {
		if err := sc.cast.Close(); err != nil {
			sc.c.log.Error("closing the terminal recording", "error", err)
		}
		// The cast's hash and length go into the event log, whose chain
		// then covers the cast too; a cast whose writing failed has none
		// (verify reports it as not covered).
		var err error
		if cast, err = sc.cast.Digest(); err != nil {
			sc.c.log.Error("hashing the terminal recording", "error", err)
		}
	}
	if !sc.started {
		return
	}
	cmd := sc.cmd
	cmd.DurationMS = float64(time.Since(sc.begun).Microseconds()) / 1000
	cmd.Tag = sc.exit
	if sc.exit == "" && cmd.Error == "" {
		cmd.Error = "ended without an exit status"
	}
	// With strict recording the command event, naming the cast, was
	// written before the shell ran: the hash goes in its result.
	cmd.RecordingSHA256, cmd.RecordingBytes = cast.SHA256, cast.Bytes
	sc.c.endCommand(sc.seq, cmd)
}

// forwardPayload is the address part of direct-tcpip and forwarded-tcpip
// channels and of tcpip-forward requests.
type forwardPayload struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// directTCPIP decides an ssh -L channel and relays it when allowed.
func (c *conn) directTCPIP(nc ssh.NewChannel) {
	var p forwardPayload
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		nc.Reject(ssh.ConnectionFailed, "interlock: malformed direct-tcpip request")
		return
	}
	f := policy.SSH{Request: "direct-tcpip", ForwardHost: forwardHost(p.Host), ForwardPort: int64(p.Port)}
	text := "direct-tcpip " + forwardText(p.Host, f.ForwardHost, p.Port)
	d := c.decide(f)
	if d.Action != policy.Allow {
		c.recordDecision(f, text, d)
		nc.Reject(ssh.Prohibited, "interlock: "+d.Message)
		return
	}
	cmd := record.Command{Text: text, Command: f.Request, Decision: string(d.Action), Rule: d.Rule}
	seq, err := c.beginCommand(cmd)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, "interlock: cannot record this channel, so it does not open it")
		return
	}
	up, upReqs, err := c.upstream.OpenChannel("direct-tcpip", nc.ExtraData())
	if err != nil {
		cmd.Error = err.Error()
		c.endCommand(seq, cmd)
		rejectLike(nc, err)
		return
	}
	c.relayChannel(nc, up, upReqs, cmd, seq)
}

// relayChannel accepts nc and copies both ways between it and other until
// both directions end, then records cmd with the byte counts.
func (c *conn) relayChannel(nc ssh.NewChannel, other ssh.Channel, otherReqs <-chan *ssh.Request, cmd record.Command, seq uint64) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		other.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	go ssh.DiscardRequests(otherReqs)
	began := time.Now()
	var in, out int64
	var wg sync.WaitGroup
	wg.Go(func() {
		in, _ = relayCopy(other, ch)
		other.CloseWrite()
	})
	wg.Go(func() {
		out, _ = relayCopy(ch, other)
		ch.CloseWrite()
	})
	wg.Wait()
	ch.Close()
	other.Close()
	cmd.DurationMS = float64(time.Since(began).Microseconds()) / 1000
	cmd.Tag = fmt.Sprintf("%d bytes in, %d bytes out", in, out)
	c.endCommand(seq, cmd)
}

// tcpipForward decides an ssh -R request.
func (c *conn) tcpipForward(req *ssh.Request) {
	var p forwardRequest
	if err := ssh.Unmarshal(req.Payload, &p); err != nil {
		req.Reply(false, nil)
		return
	}
	f := policy.SSH{Request: "forwarded-tcpip", ForwardHost: forwardHost(p.Host), ForwardPort: int64(p.Port)}
	d := c.decide(f)
	c.recordDecision(f, "tcpip-forward "+forwardText(p.Host, f.ForwardHost, p.Port), d)
	if d.Action != policy.Allow {
		req.Reply(false, nil)
		return
	}
	ok, resp, err := c.upstream.SendRequest(req.Type, true, req.Payload)
	if err != nil {
		ok = false
	}
	if ok {
		c.mu.Lock()
		c.remoteFwd++
		c.mu.Unlock()
	}
	req.Reply(ok, resp)
}

// cancelForward asks upstream to stop listening for a remote forward
// whose connections the policy now denies (after a reload), so that
// whoever reaches the port cannot keep filling the recording with
// refusals. Once per listener; the agent's forward is gone from then on.
func (c *conn) cancelForward(p forwardedChannel) {
	key := net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port)))
	c.mu.Lock()
	if c.cancelled == nil {
		c.cancelled = map[string]bool{}
	}
	if c.cancelled[key] {
		c.mu.Unlock()
		return
	}
	c.cancelled[key] = true
	c.mu.Unlock()
	// Not on the channel loop: the answer comes through the connection
	// this loop drains.
	c.wg.Go(func() {
		ok, _, err := c.upstream.SendRequest("cancel-tcpip-forward", true, ssh.Marshal(forwardRequest{p.Host, p.Port}))
		c.log.Info("remote forward cancelled upstream: the policy denies its connections", "listener", key, "ok", ok, "error", err)
		if ok {
			c.mu.Lock()
			c.remoteFwd--
			c.mu.Unlock()
		}
	})
}

// reverseFacts are the facts of a channel upstream opens toward the
// agent, as the request that allowed it was decided: a forwarded
// connection by the address and port it came in on (RFC 4254 7.2), agent
// and X11 forwarding by their request.
func reverseFacts(typ string, payload []byte) (policy.SSH, string, *forwardedChannel) {
	switch typ {
	case "forwarded-tcpip":
		var p forwardedChannel
		if ssh.Unmarshal(payload, &p) != nil {
			return policy.SSH{Request: "forwarded-tcpip"}, "forwarded-tcpip channel (unreadable)", nil
		}
		f := policy.SSH{Request: "forwarded-tcpip", ForwardHost: forwardHost(p.Host), ForwardPort: int64(p.Port)}
		return f, "forwarded-tcpip channel " + forwardText(p.Host, f.ForwardHost, p.Port), &p
	case "auth-agent@openssh.com":
		return policy.SSH{Request: "agent-forwarding"}, "agent forwarding channel", nil
	default:
		return policy.SSH{Request: "x11"}, "x11 channel", nil
	}
}

// forwardRequest is the payload of tcpip-forward and
// cancel-tcpip-forward (RFC 4254 7.1).
type forwardRequest struct {
	Host string
	Port uint32
}

// forwardedChannel is the payload of a forwarded-tcpip channel: the
// forward's listener and the connection's origin (RFC 4254 7.2).
type forwardedChannel struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// reverseChannels relays the channels upstream opens toward the agent
// (forwarded connections, agent and X11 forwarding), but only those an
// allowed request of this session asked for.
func (c *conn) reverseChannels(typ string, chans <-chan ssh.NewChannel) {
	for nc := range chans {
		c.mu.Lock()
		allowed := (typ == "forwarded-tcpip" && c.remoteFwd > 0) ||
			(typ == "auth-agent@openssh.com" && c.agentFwd) || (typ == "x11" && c.x11Fwd)
		c.mu.Unlock()
		if !allowed {
			nc.Reject(ssh.Prohibited, "interlock: not requested")
			continue
		}
		// Each channel is decided again, by the policy in force: a reload
		// that denies forwarding holds for forwards allowed before it.
		f, text, fwd := reverseFacts(typ, nc.ExtraData())
		if d := c.decide(f); d.Action != policy.Allow {
			c.recordDecision(f, text, d)
			nc.Reject(ssh.Prohibited, "interlock: "+cmp.Or(d.Message, "denied by policy"))
			if fwd != nil {
				c.cancelForward(*fwd)
			}
			continue
		}
		c.wg.Go(func() {
			cmd := record.Command{Text: typ + " channel", Command: typ, Decision: string(policy.Allow)}
			seq, err := c.beginCommand(cmd)
			if err != nil {
				nc.Reject(ssh.ConnectionFailed, "interlock: cannot record this channel")
				return
			}
			ch, reqs, err := c.agent.OpenChannel(typ, nc.ExtraData())
			if err != nil {
				cmd.Error = err.Error()
				c.endCommand(seq, cmd)
				rejectLike(nc, err)
				return
			}
			c.relayChannel(nc, ch, reqs, cmd, seq)
		})
	}
}
