package ssh_test

import (
	"errors"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// TestReloadFollowedByOpenConnections: an SSH connection opened before a
// reload has its next request decided by the new policy.
func TestReloadFollowedByOpenConnections(t *testing.T) {
	e := newEnv(t, envOptions{})
	c, err := gossh.Dial("tcp", e.listener, &gossh.ClientConfig{
		User: "agent", HostKeyCallback: gossh.InsecureIgnoreHostKey(), // the gateway's key is not what this test is about
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
