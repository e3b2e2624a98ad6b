package redirect

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
	"golang.org/x/sys/unix"
)

// mptcpEnabled says whether the kernel makes MPTCP sockets.
func mptcpEnabled() bool {
	b, err := os.ReadFile("/proc/sys/net/mptcp/enabled")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// requireMPTCP skips the test with a reason (or fails it, see
// redirecttest.RequiredEnv) when the kernel cannot make MPTCP sockets:
// then socket() refuses them before the data path is asked.
func requireMPTCP(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/mptcp/enabled")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		redirecttest.Unavailable(t, "this kernel has no MPTCP", "no /proc/sys/net/mptcp/enabled (CONFIG_MPTCP)")
	case err != nil:
		t.Fatal(err)
	case strings.TrimSpace(string(b)) != "1":
		redirecttest.Unavailable(t, "MPTCP is disabled", "net.mptcp.enabled is "+strings.TrimSpace(string(b)))
	}
}

// mptcpDial is d made over an MPTCP socket.
func mptcpDial(network, address string) redirecttest.Dial {
	return redirecttest.Dial{Network: network, Address: address, Protocol: unix.IPPROTO_MPTCP}
}

// refusedAtSocket tells a dial whose socket() failed with EPERM: the
// sock_create program refused the socket, before any connect.
func refusedAtSocket(r redirecttest.Result) bool {
	return r.Errno == "EPERM" && strings.HasPrefix(r.Error, "socket: ")
}

// TestMPTCPRefused: a workload cannot make an MPTCP socket, whatever it
// would dial and whatever its egress allows: the kernel connects an MPTCP
// socket's extra subflows from a worker thread, outside the workload's
// cgroup, where its egress rules would not apply. Plain TCP is still
// redirected and UDP passes; processes in no workload make MPTCP sockets
// as before.
func TestMPTCPRefused(t *testing.T) {
	redirecttest.RequirePrivileged(t)
	requireMPTCP(t)
	e := setup(t)
	redirecttest.EchoServer(t, plainDenied)
	redirecttest.EchoServer(t, plainAllowed)
	redirecttest.EchoServer(t, "[::1]:7300")
	udp := redirecttest.UDPEchoServer(t, "127.0.0.3:0").LocalAddr().String()
	udp6 := redirecttest.UDPEchoServer(t, "[::1]:0").LocalAddr().String()

	refused := []struct {
		name string
		cg   redirecttest.Cgroup
		dial redirecttest.Dial
	}{
		{"IPv4, target", e.agent, mptcpDial("tcp4", "127.0.0.2:7000")},
		{"IPv6, target", e.agent, mptcpDial("tcp6", "[::1]:7001")},
		{"IPv6, v4-mapped target", e.agent, mptcpDial("tcp6", "[::ffff:127.0.0.2]:7000")},
		// Egress allows 127.0.0.4 on any port, but not where the server
		// may send the extra subflows.
		{"IPv4, egress allowed", e.agent, mptcpDial("tcp4", plainAllowed)},
		{"IPv4, egress denied", e.agent, mptcpDial("tcp4", plainDenied)},
		{"sub-cgroup", e.sub, mptcpDial("tcp4", plainAllowed)},
		{"child process", e.agent, redirecttest.Dial{Network: "tcp4", Address: plainAllowed, Protocol: unix.IPPROTO_MPTCP, ViaChild: true}},
	}
	check := func(t *testing.T) {
		for _, tt := range refused {
			t.Run(tt.name, func(t *testing.T) {
				if r := redirecttest.Agent(t, tt.cg, tt.dial); !refusedAtSocket(r) {
					t.Errorf("MPTCP socket dialling %s: %+v, want socket() to fail with EPERM", tt.dial.Address, r)
				}
			})
		}
	}
	t.Run("egress deny", check)
	before := counters(t, e.dp)[[2]uint32{testWorkload, 0}]
	if before.Denied != uint64(len(refused)) || before.Allowed != 0 || before.Redirected != 0 {
		t.Errorf("counters %+v, want %d denied (one per MPTCP socket) and nothing else", before, len(refused))
	}
	e.allowAll(t)
	t.Run("egress allow", check)

	// Plain TCP from the workload: redirected to the gateway, or held to
	// egress (allowAll: reaches the server directly); UDP passes.
	t.Run("plain TCP and UDP", func(t *testing.T) {
		for _, d := range []redirecttest.Dial{
			{Network: "tcp4", Address: "127.0.0.2:7000"},
			{Network: "tcp6", Address: "[::1]:7001"},
		} {
			r := redirecttest.Agent(t, e.agent, d)
			if !strings.HasPrefix(r.Reply, "dst=") || !strings.Contains(r.Reply, fmt.Sprintf(" wl=%d ", testWorkload)) || r.Peer != d.Address {
				t.Errorf("TCP dial of target %s: %+v, want it redirected to the gateway", d.Address, r)
			}
		}
		for _, d := range []redirecttest.Dial{
			{Network: "tcp4", Address: plainDenied},
			{Network: "udp4", Address: udp},
			{Network: "udp6", Address: udp6},
		} {
			if r := redirecttest.Agent(t, e.agent, d); !reachedDirectly(r) {
				t.Errorf("%s dial of %s: %+v, want a direct connection", d.Network, d.Address, r)
			}
		}
	})

	// No workload's: the programs run (e.other is below the attach
	// point) and let MPTCP through; so does a process outside.
	t.Run("other cgroup", func(t *testing.T) {
		for _, d := range []redirecttest.Dial{mptcpDial("tcp4", plainDenied), mptcpDial("tcp6", "[::1]:7300")} {
			if r := redirecttest.Agent(t, e.other, d); !reachedDirectly(r) {
				t.Errorf("MPTCP dial of %s: %+v, want a direct connection", d.Address, r)
			}
			if r := redirecttest.Outsider(t, d); !reachedDirectly(r) {
				t.Errorf("MPTCP dial of %s from outside: %+v, want a direct connection", d.Address, r)
			}
		}
	})

	// A cgroup the gateway has not resolved may be a workload's: refused
	// too, as connect4 sends its connects to the gateway; the gateway's
	// own cgroup is exempt.
	t.Run("unresolved cgroup", func(t *testing.T) {
		must(t, e.dp.SyncGuards([]Guard{{CgroupID: e.top.ID, Watermark: e.other.ID - 1}}))
		if r := redirecttest.Agent(t, e.other, mptcpDial("tcp4", plainDenied)); !refusedAtSocket(r) {
			t.Errorf("unresolved cgroup: %+v, want socket() to fail with EPERM", r)
		}
		if c := counters(t, e.dp)[[2]uint32{UnresolvedWorkload, 0}]; c.Denied != 1 {
			t.Errorf("unresolved counters %+v, want 1 denied", c)
		}
		must(t, e.dp.SetGatewayCgroup(e.other.ID))
		if r := redirecttest.Agent(t, e.other, mptcpDial("tcp4", plainDenied)); !reachedDirectly(r) {
			t.Errorf("the gateway's cgroup: %+v, want a direct connection", r)
		}
	})
}
