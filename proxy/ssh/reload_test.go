package ssh_test

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock-dev/interlock/proxy"
)

// TestReloadFollowedByOpenConnections: an SSH connection opened before a
// reload has its next request decided by the new policy.
func TestReloadFollowedByOpenConnections(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	run := func(cmd string) (string, error) {
		t.Helper()
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var out, errOut strings.Builder
		s.Stdout, s.Stderr = &out, &errOut
		err = s.Run(cmd)
		return out.String() + errOut.String(), err
	}
	if out, err := run("echo before"); err != nil || out != "before\n" {
		t.Fatalf("before the reload: %q, %v", out, err)
	}
	e.reload(t, testPolicy+`  - name: no-echo
    when: '"echo" in ssh.programs'
    action: deny
    message: no echo after the reload
`)
	out, err := run("echo after")
	var exit *gossh.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 126 || !strings.Contains(out, "no echo after the reload") {
		t.Fatalf("after the reload, on the same connection: %q, %v; want the new rule's denial", out, err)
	}
	if out, err := run("id -un"); err != nil || strings.TrimSpace(out) != e.sshd.User {
		t.Fatalf("an allowed command after the denial: %q, %v", out, err)
	}
}

// TestReloadStopsForwardsAllowedBefore: a remote forward (ssh -R) allowed
// before a reload that denies forwarded connections relays no new
// connection after it.
func TestReloadStopsForwardsAllowedBefore(t *testing.T) {
	e := newEnv(t, envOptions{policy: "default: allow\n"})
	c := e.dial(t)
	ln, err := c.Listen("tcp", "127.0.0.1:0") // sshd listens upstream
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan string, 4)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			b := make([]byte, 5)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _ := io.ReadFull(conn, b)
			accepted <- string(b[:n])
			conn.Close()
		}
	}()
	connect := func(msg string) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write([]byte(msg))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, conn) // until the forward's end closes it
	}
	connect("hello")
	if got := <-accepted; got != "hello" {
		t.Fatalf("before the reload the forward carried %q", got)
	}
	e.reload(t, `default: allow
rules:
  - name: no-reverse
    when: ssh.request == "forwarded-tcpip"
    action: deny
`)
	connect("again")
	select {
	case got := <-accepted:
		t.Fatalf("after the reload the forward still carried %q", got)
	case <-time.After(500 * time.Millisecond):
	}
	// The gateway cancelled the forward upstream: the port closes, and
	// whoever reaches it cannot fill the recording with refusals.
	waitFor(t, "the forward's port to close", func() bool {
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err == nil {
			conn.Close()
			return false
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	c.Close()
	e.idle(t)
	var denied bool
	for _, cmd := range e.commands(t) {
		if cmd.Command == "forwarded-tcpip" && cmd.Decision == "deny" && cmd.Rule == "no-reverse" && strings.HasPrefix(cmd.Text, "forwarded-tcpip channel 127.0.0.1:") {
			denied = true
		}
	}
	if !denied {
		t.Fatalf("the refused channel was not recorded: %+v", e.commands(t))
	}
}

// TestEndSessionWhoseAgentStoppedReading: ending a session (sessions end,
// an expired login, a failed recording) ends it even when the agent
// stopped reading its output, so that telling it why cannot be written:
// the connection closes and nothing more runs on it.
func TestEndSessionWhoseAgentStoppedReading(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	go gossh.DiscardRequests(reqs)
	if ok, err := ch.SendRequest("exec", true, gossh.Marshal(struct{ Command string }{"yes"})); !ok || err != nil {
		t.Fatalf("exec yes: %v, %v", ok, err)
	}
	// Never read: the channel's window fills within a moment.
	time.Sleep(time.Second)
	if ended := e.server.End(func(proxy.SessionInfo) bool { return true }, errors.New("ended by the test")); len(ended) != 1 {
		t.Fatalf("End ended %d sessions, want 1", len(ended))
	}
	e.idle(t)
	s, err := c.NewSession()
	if err == nil {
		out, err := s.CombinedOutput("echo still-here")
		if err == nil || strings.Contains(string(out), "still-here") {
			t.Fatalf("a command ran on the ended session: %q, %v", out, err)
		}
	}
}
