package ssh_test

import (
	"bufio"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/interlock-dev/interlock/proxy/proxytest"
	"github.com/interlock-dev/interlock/proxy/ssh/sshtest"
)

// BenchmarkSessionMemory reports what one more open SSH session through the
// in-process gateway keeps in heap and stacks (KiB/session): the agents'
// OpenSSH clients are processes of their own, so all of it is the
// gateway's. Each session runs a command that prints a line (or 200 KB
// first) and then waits on its input, as a shell waits for a keystroke.
func BenchmarkSessionMemory(b *testing.B) {
	e := newEnv(b, envOptions{})
	host, _, _ := net.SplitHostPort(e.listener)
	ssh := sshtest.ClientBinary(b, "ssh")
	const sessions = 15
	for _, c := range []struct{ name, command string }{
		{"idle", "echo ready; cat"},
		{"after-200KB", "head -c 200000 /dev/zero | tr '\\0' x; echo; echo ready; cat"},
	} {
		b.Run(c.name, func(b *testing.B) {
			// One session first: what the first one sets up for all is not
			// per session.
			if out, err := exec.Command(ssh, append(e.agentOptions(), "agent@"+host, "true")...).CombinedOutput(); err != nil {
				b.Fatalf("ssh: %v: %s", err, out)
			}
			e.idle(b)
			var total float64
			for b.Loop() {
				before := proxytest.InUse()
				cmds := make([]*exec.Cmd, 0, sessions)
				for range sessions {
					cmd := exec.Command(ssh, append(e.agentOptions(), "agent@"+host, c.command)...)
					if _, err := cmd.StdinPipe(); err != nil { // kept open: cat waits
						b.Fatal(err)
					}
					out, err := cmd.StdoutPipe()
					if err != nil {
						b.Fatal(err)
					}
					if err := cmd.Start(); err != nil {
						b.Fatal(err)
					}
					cmds = append(cmds, cmd)
					lines := bufio.NewReaderSize(out, 256<<10)
					for {
						line, err := lines.ReadString('\n')
						if err != nil {
							b.Fatalf("waiting for the command's line: %v", err)
						}
						if strings.TrimSpace(line) == "ready" {
							break
						}
					}
				}
				total += float64(proxytest.InUse()-before) / sessions / 1024
				for _, cmd := range cmds {
					cmd.Process.Kill()
					cmd.Wait()
				}
				e.idle(b)
			}
			b.ReportMetric(total/float64(b.N), "KiB/session")
		})
	}
}
