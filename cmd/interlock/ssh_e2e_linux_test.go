package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/interlock-dev/interlock/proxy/ssh/sshtest"
	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

const bastionPolicy = `policy:
  default: allow
  rules:
    - name: no-rm
      targets: [bastion]
      when: ssh.request == "exec" && "rm" in ssh.programs
      action: deny
      message: deleting files is not allowed for agents
    - name: no-forwarding
      when: ssh.request in ["direct-tcpip", "forwarded-tcpip", "agent-forwarding", "x11"]
      action: deny
      message: forwarding is not allowed for agents
  tests:
    - request: {target: bastion, ssh: {command: "rm -rf /tmp/x"}}
      expect: deny
      rule: no-rm
    - request: {target: bastion, ssh: {command: "id"}}
      expect: allow
    - request: {target: bastion, ssh: {request: direct-tcpip, forward_host: 127.0.0.1, forward_port: 5432}}
      expect: deny
`

// bastion starts a real sshd on 127.0.0.2 (port 22 when it is free, as an
// agent would dial it) and returns it with the target section of a config.
func bastion(t *testing.T, e *e2e) (*sshtest.Server, string) {
	t.Helper()
	port := 0
	if ln, err := net.Listen("tcp", "127.0.0.2:22"); err == nil {
		ln.Close()
		port = 22
	}
	srv := sshtest.Start(t, sshtest.Options{Host: "127.0.0.2", Port: port})
	// The gateway's copies, as an operator keeps them in /etc/interlock:
	// the config stays loadable after the server's folder is gone.
	key, kh := filepath.Join(e.dir, "bastion.key"), filepath.Join(e.dir, "bastion.known_hosts")
	for src, dst := range map[string]string{srv.ClientKeyFile: key, srv.KnownHostsFile: kh} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return srv, fmt.Sprintf(`  - name: bastion
    protocol: ssh
    address: %s
    upstream:
      user: %s
      private_key_file: %s
      known_hosts: %s
`, srv.Addr(), srv.User, key, kh)
}

// agentSSH runs the real ssh client as a process in cg with no key of its
// own and the gateway's CA line as its only trust.
func agentSSH(t *testing.T, cg redirecttest.Cgroup, knownHosts, host string, port int, extra []string, command ...string) (string, int) {
	t.Helper()
	args := append(extra,
		"-F", "/dev/null", "-o", "IdentityFile=/dev/null", "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile="+knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
		"-p", strconv.Itoa(port), "root@"+host)
	out, err := redirecttest.RunIn(t, cg, exec.Command("ssh", append(args, command...)...))
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ssh: %v", err)
	}
	return string(out), code
}

func TestSSHThroughKernel(t *testing.T) {
	e := newE2E(t)
	srv, target := bastion(t, e)
	e.writeConfig("targets:\n" + target + fmt.Sprintf(`workloads:
  - name: agent
    match: {cgroup: %s/agent}
    identity: {subject: "agent:demo", groups: [agents]}
    egress: {default: deny}
`, e.top) + bastionPolicy)
	if out := e.run("check"); !strings.Contains(out, "3 passed, 0 failed") {
		t.Errorf("interlock check: %s", out)
	}
	knownHosts := filepath.Join(e.dir, "agent_known_hosts")
	if err := os.WriteFile(knownHosts, []byte(e.run("ca", "ssh-known-hosts")), 0o644); err != nil {
		t.Fatal(err)
	}
	e.start()
	agent := e.cgroup("/agent")

	t.Run("allowed exec", func(t *testing.T) {
		out, code := agentSSH(t, agent, knownHosts, srv.Host, srv.Port, nil, "id", "-un")
		if code != 0 || strings.TrimSpace(out) != srv.User {
			t.Fatalf("ssh %s id -un: exit %d\n%s\nsshd:\n%s", srv.Host, code, out, srv.LogTail())
		}
	})

	t.Run("denied exec", func(t *testing.T) {
		victim := filepath.Join(e.dir, "x")
		if err := os.Mkdir(victim, 0o755); err != nil {
			t.Fatal(err)
		}
		out, code := agentSSH(t, agent, knownHosts, srv.Host, srv.Port, nil, "rm -rf "+victim)
		if code != 126 || !strings.Contains(out, "interlock: deleting files is not allowed for agents") {
			t.Errorf("rm: exit %d\n%s", code, out)
		}
		if _, err := os.Stat(victim); err != nil {
			t.Errorf("the denied command ran: %v", err)
		}
		if got := e.metric("interlock_blocked_commands_total", `rule="no-rm"`, `protocol="ssh"`, `workload="agent"`); got != 1 {
			t.Errorf("blocked commands for no-rm: %v, want 1", got)
		}
	})

	t.Run("port forward refused", func(t *testing.T) {
		out, code := agentSSH(t, agent, knownHosts, srv.Host, srv.Port, []string{"-W", "127.0.0.1:9"})
		if code != 255 || !strings.Contains(out, "administratively prohibited: interlock: forwarding is not allowed for agents") {
			t.Errorf("ssh -W: exit %d\n%s", code, out)
		}
	})

	t.Run("scp and sftp", func(t *testing.T) {
		local := filepath.Join(e.dir, "up.txt")
		if err := os.WriteFile(local, []byte("through the gateway\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		remote := filepath.Join(e.dir, "remote.txt")
		opts := []string{"-F", "/dev/null", "-o", "IdentityFile=/dev/null", "-o", "IdentitiesOnly=yes",
			"-o", "UserKnownHostsFile=" + knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
			"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-P", strconv.Itoa(srv.Port)}
		out, err := redirecttest.RunIn(t, agent, exec.Command("scp", append(opts, local, "root@"+srv.Host+":"+remote)...))
		if err != nil {
			t.Fatalf("scp up: %v\n%s", err, out)
		}
		back := filepath.Join(e.dir, "back.txt")
		batch := filepath.Join(e.dir, "batch")
		os.WriteFile(batch, []byte("get "+remote+" "+back+"\n"), 0o644)
		out, err = redirecttest.RunIn(t, agent, exec.Command("sftp", append(append(opts, "-b", batch), "root@"+srv.Host)...))
		if err != nil {
			t.Fatalf("sftp get: %v\n%s", err, out)
		}
		if b, _ := os.ReadFile(back); string(b) != "through the gateway\n" {
			t.Errorf("round trip gave %q", b)
		}
	})

	t.Run("pty session replays", func(t *testing.T) {
		out, code := agentSSH(t, agent, knownHosts, srv.Host, srv.Port, []string{"-tt"}, "echo replay-$((40+2))")
		if code != 0 || !strings.Contains(out, "replay-42") {
			t.Fatalf("ssh -tt: exit %d\n%s", code, out)
		}
		var replayed bool
		for _, line := range strings.Split(e.run("sessions", "list"), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !strings.Contains(line, "bastion") {
				continue
			}
			if strings.Contains(e.run("sessions", "show", f[0]), "replay-$((40+2))") {
				dump := e.run("sessions", "replay", f[0], "--dump")
				replayed = strings.Contains(dump, "replay-42")
				if v := e.run("sessions", "verify", f[0]); !strings.Contains(v, "intact") {
					t.Errorf("verify: %s", v)
				}
			}
		}
		if !replayed {
			t.Error("no bastion session replays the pty command's output")
		}
	})
}

func TestSSHExplicit(t *testing.T) {
	e := newE2E(t)
	srv, target := bastion(t, e)
	plain := freePort(t, "127.0.0.1")
	target += fmt.Sprintf("    listen: 127.0.0.1:%d\n", plain)
	e.writeConfig("targets:\n" + target + fmt.Sprintf(`workloads:
  - name: agent
    match: {cgroup: %s/agent}
`, e.top) + bastionPolicy)
	knownHosts := filepath.Join(e.dir, "agent_known_hosts")
	if err := os.WriteFile(knownHosts, []byte(e.run("ca", "ssh-known-hosts")), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := e.cgroup("/agent")
	e.start("--explicit")

	// The certificate names the target's address; the client dials the
	// explicit listener, so it checks the certificate under that name.
	alias := []string{"-o", "HostKeyAlias=" + srv.Host}
	out, code := agentSSH(t, agent, knownHosts, "127.0.0.1", plain, alias, "id", "-un")
	if code != 0 || strings.TrimSpace(out) != srv.User {
		t.Errorf("explicit id: exit %d\n%s", code, out)
	}
	out, code = agentSSH(t, agent, knownHosts, "127.0.0.1", plain, alias, "/bin/rm", "-rf", "/nonexistent")
	if code != 126 || !strings.Contains(out, "no-rm") && !strings.Contains(out, "deleting files") {
		t.Errorf("explicit rm: exit %d\n%s", code, out)
	}
}

func TestSSHReviewThroughKernel(t *testing.T) {
	e := newE2E(t)
	srv, target := bastion(t, e)
	e.writeConfig("targets:\n" + target + fmt.Sprintf(`workloads:
  - name: agent
    match: {cgroup: %s/agent}
    identity: {subject: "agent:demo", groups: [agents]}
    egress: {default: deny}
policy:
  default: allow
  rules:
    - name: touch-needs-approval
      when: ssh.request == "exec" && "touch" in ssh.programs
      action: review
      review: {approvers: [dba], timeout: 60s}
`, e.top))
	knownHosts := filepath.Join(e.dir, "agent_known_hosts")
	if err := os.WriteFile(knownHosts, []byte(e.run("ca", "ssh-known-hosts")), 0o644); err != nil {
		t.Fatal(err)
	}
	e.start()
	agent := e.cgroup("/agent")
	marker := filepath.Join(e.dir, "approved-marker")
	done := make(chan struct{})
	var out string
	var code int
	go func() {
		defer close(done)
		out, code = agentSSH(t, agent, knownHosts, srv.Host, srv.Port, nil, "touch "+marker+" && echo touched")
	}()
	req := e.pendingApproval(t)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the held command ran before the approval")
	}
	if o, err := e.runAs("alice", "approvals", "approve", req.ID); err != nil {
		t.Fatalf("approve: %v\n%s", err, o)
	}
	<-done
	if code != 0 || !strings.Contains(out, "touched") || !strings.Contains(out, "holds this command for review as request "+req.ID) {
		t.Errorf("ssh after the approval: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the approved command did not run: %v", err)
	}
	if got := e.metric("interlock_commands_total", `decision="approved"`, `protocol="ssh"`); got != 1 {
		t.Errorf("approved ssh commands: %v", got)
	}
}
