package ssh_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/proxy"
	sshproxy "github.com/interlock-dev/interlock/proxy/ssh"
	"github.com/interlock-dev/interlock/proxy/ssh/sshtest"
	"github.com/interlock-dev/interlock/proxy/sshca"
	"github.com/interlock-dev/interlock/record"
	"github.com/interlock-dev/interlock/record/asciicast"
)

func TestExec(t *testing.T) {
	e := newEnv(t, envOptions{})
	out, errOut, code := e.ssh(t, "", nil, "id", "-un")
	if code != 0 || strings.TrimSpace(out) != e.sshd.User {
		t.Fatalf("id -un: code %d, out %q, err %q", code, out, errOut)
	}

	victim := filepath.Join(t.TempDir(), "x")
	if err := os.Mkdir(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = e.ssh(t, "", nil, "rm -rf "+victim)
	if code != 126 || !strings.Contains(errOut, "interlock: deleting files is not allowed for agents") {
		t.Errorf("rm: code %d, out %q, err %q", code, out, errOut)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("the denied command ran: %v", err)
	}
	if got := e.counter(t, "interlock_blocked_commands_total", map[string]string{"protocol": "ssh", "rule": "no-rm"}); got != 1 {
		t.Errorf("blocked counter %v, want 1", got)
	}
	cmds := e.commands(t)
	var idCmd, rmCmd bool
	for _, c := range cmds {
		switch {
		case c.Text == "id -un":
			idCmd = c.Decision == "allow" && c.Tag == "exit 0" && c.Command == "exec"
		case strings.HasPrefix(c.Text, "rm -rf"):
			rmCmd = c.Decision == "deny" && c.Rule == "no-rm"
		}
	}
	if !idCmd || !rmCmd {
		t.Errorf("recorded %+v", cmds)
	}
}

func TestForwardingRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	// ssh -W is a direct-tcpip channel, as every connection through -L is.
	_, errOut, code := e.ssh(t, "", []string{"-o", "LogLevel=INFO", "-W", "127.0.0.1:9"})
	if code != 255 || !strings.Contains(errOut, "administratively prohibited: interlock: forwarding is not allowed for agents") {
		t.Errorf("-W: code %d, stderr %q", code, errOut)
	}
	// ssh -R asks the server to listen: a tcpip-forward request.
	_, errOut, code = e.ssh(t, "", []string{"-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"}, "true")
	if code != 255 || !strings.Contains(errOut, "remote port forwarding failed") {
		t.Errorf("-R: code %d, stderr %q", code, errOut)
	}
	// ssh -A with a running agent: the remote side gets no agent socket.
	agentSock := startSSHAgent(t)
	out, errOut, code := e.sshEnv(t, []string{"SSH_AUTH_SOCK=" + agentSock}, []string{"-A"}, `echo "[$SSH_AUTH_SOCK]"`)
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("-A: code %d, out %q, stderr %q", code, out, errOut)
	}
	var refused []string
	for _, c := range e.commands(t) {
		if c.Decision == "deny" && c.Rule == "no-forwarding" {
			refused = append(refused, c.Command)
		}
	}
	slices.Sort(refused) // sessions are listed newest first
	if got := strings.Join(refused, ","); got != "agent-forwarding,direct-tcpip,forwarded-tcpip" {
		t.Errorf("recorded refusals %s, want one each of agent-forwarding, direct-tcpip and forwarded-tcpip", got)
	}
	if got := e.counter(t, "interlock_blocked_commands_total", map[string]string{"protocol": "ssh", "rule": "no-forwarding"}); got != 3 {
		t.Errorf("blocked counter %v, want 3", got)
	}
}

func TestWrongUpstreamHostKeyRefused(t *testing.T) {
	sshd := sshtest.Start(t, sshtest.Options{Host: "127.0.0.2"})
	other := filepath.Join(t.TempDir(), "known_hosts")
	// A known_hosts entry for the sshd's address with another key.
	line := "[127.0.0.2]:" + strconv.Itoa(sshd.Port) + " ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGT3eThmi0bqOyBsPTIWBYJBexShC8Ki+wHUDe1t9HX2\n"
	if sshd.Port == 22 {
		line = "127.0.0.2" + line[len("[127.0.0.2]:22"):]
	}
	if err := os.WriteFile(other, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startProxy(t, sshd, envOptions{target: sshproxy.Target{KnownHosts: other}})
	// The channel's refusal is an INFO message of the client (its default
	// level).
	_, errOut, code := e.ssh(t, "", []string{"-o", "LogLevel=INFO"}, "id")
	if code != 255 || !strings.Contains(errOut, "interlock cannot log in to bastion") || !strings.Contains(errOut, "key mismatch") {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
	if strings.Contains(sshd.LogTail(), "Accepted publickey") {
		t.Error("the gateway logged in to a server whose host key it does not know")
	}
}

// A shell is recorded as an asciicast file that replays it; the event log
// holds the file's SHA-256 and length (in the shell's command event, or
// with strict recording in its result), so verify covers the file too.
func TestShellRecordedAndReplayable(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run("strict="+strconv.FormatBool(strict), func(t *testing.T) { testShellRecorded(t, strict) })
	}
}

func testShellRecorded(t *testing.T, strict bool) {
	e := newEnv(t, envOptions{strict: strict})
	// -tt: a pty on the server, as for a person at a terminal; the input
	// is typed line by line.
	script := "echo interlock-$((6*7))\nstty size\nexit 3\n"
	out, errOut, code := e.ssh(t, script, []string{"-tt", "-o", "SetEnv=TERM=xterm"})
	if code != 3 || !strings.Contains(out, "interlock-42") {
		t.Fatalf("shell: code %d, out %q, stderr %q", code, out, errOut)
	}
	e.idle(t)
	sums, err := e.store.List()
	if err != nil || len(sums) != 1 {
		t.Fatalf("sessions %+v, %v", sums, err)
	}
	id := sums[0].ID
	events, err := e.store.Events(id)
	if err != nil {
		t.Fatal(err)
	}
	// The shell's outcome: its command event, completed by its result
	// when strict recording wrote the event before the shell ran.
	var shell *record.Command
	for _, ev := range events {
		switch {
		case ev.Command != nil && ev.Command.Command == "shell":
			c := *ev.Command
			shell = &c
		case ev.Result != nil && shell != nil && events[ev.Result.Of-1].Command != nil && events[ev.Result.Of-1].Command.Command == "shell":
			if shell.Tag != "" || shell.RecordingSHA256 != "" {
				t.Errorf("strict: the command event already holds the outcome: %+v", shell)
			}
			shell.Tag, shell.RecordingSHA256, shell.RecordingBytes = ev.Result.Tag, ev.Result.RecordingSHA256, ev.Result.RecordingBytes
		}
	}
	if shell == nil || shell.Decision != "allow" || shell.Tag != "exit 3" || shell.Recording == "" {
		t.Fatalf("recorded %+v", events)
	}
	path := filepath.Join(e.store.Dir(), shell.Recording)
	cast, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cast)
	if shell.RecordingSHA256 != hex.EncodeToString(sum[:]) || shell.RecordingBytes != int64(len(cast)) {
		t.Errorf("the log says the cast has %d bytes, sha256 %s; it has %d, %x",
			shell.RecordingBytes, shell.RecordingSHA256, len(cast), sum)
	}
	v, err := e.store.Verify(id)
	if err != nil || !v.OK || !v.Complete || len(v.Recordings) != 1 || v.Recordings[0].Status != record.RecordingIntact {
		t.Errorf("verify: %+v, %v", v, err)
	}

	var played bytes.Buffer
	if err := asciicast.Play(context.Background(), &played, bytes.NewReader(cast), asciicast.PlayOptions{
		Sleep: func(context.Context, time.Duration) error { return nil },
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(played.String(), "interlock-42") {
		t.Errorf("replay lacks the output: %q", played.String())
	}
	// The pty echoes what is typed, so the output shows it; input events
	// themselves must not be there unless a rule asks for them.
	r, err := asciicast.Open(bytes.NewReader(cast))
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := r.Next()
		if err != nil {
			break
		}
		if ev.Code == asciicast.CodeInput {
			t.Fatalf("input recorded although the rule did not ask for it: %+v", ev)
		}
	}

	// A forged cast no longer passes.
	forged := bytes.Replace(cast, []byte("interlock-42"), []byte("interlock-43"), 1)
	if err := os.WriteFile(path, forged, 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := e.store.Verify(id); err != nil || v.OK || v.Recordings[0].Status != record.RecordingAltered {
		t.Errorf("verify of a forged cast: %+v, %v", v, err)
	}
}

func TestEnvDecided(t *testing.T) {
	e := newEnv(t, envOptions{policy: `
default: allow
rules:
  - name: no-preload
    when: ssh.request == "env" && ssh.env.name == "INTERLOCK_TEST_PRELOAD"
    action: deny
`})
	out, errOut, code := e.ssh(t, "", []string{"-o", "SetEnv=INTERLOCK_TEST_PRELOAD=x INTERLOCK_TEST_OK=y"},
		`echo "[$INTERLOCK_TEST_PRELOAD][$INTERLOCK_TEST_OK]"`)
	if code != 0 || strings.TrimSpace(out) != "[][y]" {
		t.Errorf("code %d, out %q, stderr %q", code, out, errOut)
	}
}

// startSSHAgent runs ssh-agent on a socket of the test's own and stops it
// at the end.
func startSSHAgent(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command(sshtest.ClientBinary(t, "ssh-agent"), "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitFor(t, "ssh-agent's socket", func() bool { _, err := os.Stat(sock); return err == nil })
	return sock
}

func TestKeepalivesAndShutdown(t *testing.T) {
	e := newEnv(t, envOptions{})
	// The client's keepalives (global requests) are answered while a
	// command runs.
	out, errOut, code := e.ssh(t, "", []string{"-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2"}, "sleep 3; echo done")
	if code != 0 || strings.TrimSpace(out) != "done" {
		t.Fatalf("keepalive: code %d, out %q, stderr %q", code, out, errOut)
	}

	// A gateway shutdown tells a running command's client why it ends.
	host, _, _ := strings.Cut(e.listener, ":")
	cmd := exec.Command(sshtest.ClientBinary(t, "ssh"), append(e.agentOptions(), "agent@"+host, "sleep 30")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session to start", func() bool { return len(e.server.Active()) == 1 })
	time.Sleep(300 * time.Millisecond) // the exec is upstream
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if cut, _ := e.server.Shutdown(ctx); cut != 1 {
		t.Errorf("cut %d sessions", cut)
	}
	err := cmd.Wait()
	if err == nil || !strings.Contains(stderr.String(), "interlock ended the session: "+proxy.ErrShuttingDown.Error()) {
		t.Errorf("ssh: %v, stderr %q", err, stderr.String())
	}
}

// ssh -L: the client listens locally and opens a direct-tcpip channel for
// each connection; the gateway refuses the channel, so the connection
// closes without reaching the target.
func TestLocalForwardRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	reached := make(chan struct{}, 1)
	go func() {
		if c, err := target.Accept(); err == nil {
			reached <- struct{}{}
			c.Close()
		}
	}()
	local, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	localAddr := local.Addr().String()
	local.Close()
	host, _, _ := strings.Cut(e.listener, ":")
	args := append([]string{"-N", "-o", "ExitOnForwardFailure=yes", "-L", localAddr + ":" + target.Addr().String()}, e.agentOptions()...)
	cmd := exec.Command(sshtest.ClientBinary(t, "ssh"), append(args, "agent@"+host)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var conn net.Conn
	waitFor(t, "ssh -L to listen", func() bool {
		conn, err = net.Dial("tcp", localAddr)
		return err == nil
	})
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("the forwarded connection stayed open: %d, %v", n, err)
	}
	conn.Close()
	select {
	case <-reached:
		t.Error("the refused forward reached its target")
	case <-time.After(200 * time.Millisecond):
	}
	waitFor(t, "the refusal to be counted", func() bool {
		return e.counter(t, "interlock_blocked_commands_total", map[string]string{"protocol": "ssh", "rule": "no-forwarding"}) == 1
	})
}

func TestPinnedHostKeyAndAgentHostKey(t *testing.T) {
	sshd := sshtest.Start(t, sshtest.Options{Host: "127.0.0.2"})
	hostKeyFile := filepath.Join(t.TempDir(), "bastion.hostkey")
	e := startProxy(t, sshd, envOptions{target: sshproxy.Target{
		HostKey:          string(gossh.MarshalAuthorizedKey(sshd.HostKey)),
		AgentHostKeyFile: hostKeyFile,
	}})
	// An agent that trusts the target's own key instead of the CA.
	signer, err := sshca.LoadOrCreateHostKey(hostKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	line, err := sshca.KnownHostsLineForKey([]string{sshd.Host}, signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := e.ssh(t, "", []string{"-o", "HostKeyAlgorithms=ssh-ed25519"}, "id", "-un")
	if code != 0 || strings.TrimSpace(out) != sshd.User {
		t.Fatalf("plain host key and pinned upstream key: code %d, out %q, stderr %q", code, out, errOut)
	}
}

func TestRecordInputPerRule(t *testing.T) {
	e := newEnv(t, envOptions{policy: `
default: allow
rules:
  - name: shells-with-input
    when: ssh.request == "shell"
    action: allow
    record_input: true
`})
	out, errOut, code := e.ssh(t, "echo typed-$((1+1))\nexit\n", []string{"-tt"})
	if code != 0 || !strings.Contains(out, "typed-2") {
		t.Fatalf("shell: code %d, out %q, stderr %q", code, out, errOut)
	}
	var cast string
	for _, c := range e.commands(t) {
		if c.Command == "shell" {
			cast = c.Recording
		}
	}
	f, err := os.Open(filepath.Join(e.store.Dir(), cast))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := asciicast.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	var input strings.Builder
	for {
		ev, err := r.Next()
		if err != nil {
			break
		}
		if ev.Code == asciicast.CodeInput {
			input.WriteString(ev.Data)
		}
	}
	if !strings.Contains(input.String(), "echo typed-$((1+1))") {
		t.Errorf("input not recorded: %q", input.String())
	}
}

// Output on stderr after stdout has ended, and the output of a command that
// ends at once, reach the agent whole.
func TestOutputOrdering(t *testing.T) {
	e := newEnv(t, envOptions{})
	for i := range 10 {
		out, errOut, code := e.ssh(t, "", nil, "echo out; exec 1>&-; sleep 0.05; echo err >&2")
		if code != 0 || out != "out\n" || errOut != "err\n" {
			t.Fatalf("run %d: code %d, out %q, err %q", i, code, out, errOut)
		}
		out, _, code = e.ssh(t, "", nil, "echo quick")
		if code != 0 || out != "quick\n" {
			t.Fatalf("run %d: quick command: code %d, out %q", i, code, out)
		}
	}
}

// A workload that must log in with an OIDC token gives it as its SSH
// password; nothing else authenticates it.
func TestTokenAsPassword(t *testing.T) {
	var bound identity.Caller
	e := newEnv(t, envOptions{needsLogin: "corp", login: func(_ context.Context, c identity.Caller, token, via string) (identity.Identity, time.Time, error) {
		if token != "good-token" || via != "ssh password" || c.NeedsLogin != "corp" {
			return identity.Identity{}, time.Time{}, errors.New("signature invalid")
		}
		bound = c
		return identity.Identity{Subject: "agent-7", Issuer: "https://idp.example/"}, time.Now().Add(time.Hour), nil
	}})
	dial := func(auth ...gossh.AuthMethod) (*gossh.Client, error) {
		return gossh.Dial("tcp", e.listener, &gossh.ClientConfig{User: "agent", Auth: auth,
			HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}) // the host key is not what this test is about
	}
	if c, err := dial(); err == nil {
		c.Close()
		t.Error("a workload without a token logged in with none")
	}
	if c, err := dial(gossh.Password("bad-token")); err == nil {
		c.Close()
		t.Error("a bad token was accepted")
	}
	c, err := dial(gossh.Password("good-token"))
	if err != nil {
		t.Fatalf("the good token: %v", err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("id -un")
	if err != nil || strings.TrimSpace(string(out)) != e.sshd.User {
		t.Errorf("id -un: %q %v", out, err)
	}
	if bound.Workload != "agent" {
		t.Errorf("the login was bound for %+v", bound)
	}
	c.Close()
	e.idle(t)
	sums, _ := e.store.List()
	if len(sums) == 0 || sums[0].Start.Subject != "agent-7" {
		t.Errorf("the session is not recorded with the token's subject: %+v", sums)
	}
}

// With strict recording an exec is on disk before it runs upstream; its
// exit status follows in a result event.
func TestStrictRecording(t *testing.T) {
	e := newEnv(t, envOptions{strict: true})
	done := make(chan string, 1)
	go func() {
		out, _, _ := e.ssh(t, "", nil, "sleep 1; echo slept")
		done <- out
	}()
	waitFor(t, "the exec's command event while it runs", func() bool {
		sums, _ := e.store.List()
		for _, s := range sums {
			evs, _ := e.store.Events(s.ID)
			for _, ev := range evs {
				if ev.Command != nil && strings.HasPrefix(ev.Command.Text, "sleep 1") {
					return true
				}
			}
		}
		return false
	})
	select {
	case <-done:
		t.Fatal("the exec ended before its event was seen; the test proves nothing")
	default:
	}
	if out := <-done; strings.TrimSpace(out) != "slept" {
		t.Fatalf("exec output %q", out)
	}
	e.idle(t)
	sums, _ := e.store.List()
	evs, _ := e.store.Events(sums[0].ID)
	var result *record.Result
	for _, ev := range evs {
		if ev.Result != nil {
			result = ev.Result
		}
	}
	if result == nil || result.Tag != "exit 0" || evs[result.Of-1].Command == nil || evs[result.Of-1].Command.Tag != "" {
		t.Errorf("events %+v, result %+v", evs, result)
	}
	if v, err := e.store.Verify(sums[0].ID); err != nil || !v.OK || !v.Complete {
		t.Errorf("verify: %+v %v", v, err)
	}
}
