package redirect

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

const testTargetLoopback = 24

// TestUnspecifiedDestination: a connect to 0.0.0.0, :: or ::ffff:0.0.0.0
// goes where the kernel would send it — the socket's bound address, else
// loopback — and is decided as that address: redirected when it is a
// target, held to the egress rules otherwise. Decided as "0.0.0.0" it
// matched nothing and reached local targets directly.
func TestUnspecifiedDestination(t *testing.T) {
	e := setup(t)
	must(t, e.dp.SyncTargets([]Target{
		{ID: testTarget4, Prefix: netip.MustParsePrefix("127.0.0.2/32"), Port: 7000},
		{ID: testTarget6, Prefix: netip.MustParsePrefix("::1/128"), Port: 7001},
		{ID: testTargetLoopback, Prefix: netip.MustParsePrefix("127.0.0.1/32"), Port: 7003},
	}))
	redirecttest.EchoServer(t, "127.0.0.1:7003")

	redirected := []struct {
		name     string
		dial     redirecttest.Dial
		wantDst  string
		wantTgt  int
		wantPeer string
	}{
		{"0.0.0.0 unbound", redirecttest.Dial{Network: "tcp4", Address: "0.0.0.0:7003"}, "127.0.0.1:7003", testTargetLoopback, "127.0.0.1:7003"},
		{"0.0.0.0 bound", redirecttest.Dial{Network: "tcp4", Address: "0.0.0.0:7000", Bind: "127.0.0.2"}, "127.0.0.2:7000", testTarget4, "127.0.0.2:7000"},
		{":: unbound", redirecttest.Dial{Network: "tcp6", Address: "[::]:7001"}, "[::1]:7001", testTarget6, "[::1]:7001"},
		{":: bound v4-mapped", redirecttest.Dial{Network: "tcp6", Address: "[::]:7003", Bind: "::ffff:127.0.0.2"}, "127.0.0.1:7003", testTargetLoopback, "[::ffff:127.0.0.1]:7003"},
		{"::ffff:0.0.0.0 unbound", redirecttest.Dial{Network: "tcp6", Address: "[::ffff:0.0.0.0]:7003"}, "127.0.0.1:7003", testTargetLoopback, "[::ffff:127.0.0.1]:7003"},
		{"::ffff:0.0.0.0 bound", redirecttest.Dial{Network: "tcp6", Address: "[::ffff:0.0.0.0]:7000", Bind: "::ffff:127.0.0.2"}, "127.0.0.2:7000", testTarget4, "[::ffff:127.0.0.2]:7000"},
	}
	check := func(t *testing.T) {
		for _, tt := range redirected {
			t.Run(tt.name, func(t *testing.T) {
				r := redirecttest.Agent(t, e.agent, tt.dial)
				want := fmt.Sprintf("dst=%s wl=%d tgt=%d pid=%d", tt.wantDst, testWorkload, tt.wantTgt, r.PID)
				if r.Reply != want {
					t.Errorf("dial %s: gateway answered %q (errno %q, %s), want %q", tt.dial.Address, r.Reply, r.Errno, r.Error, want)
				}
				// What the kernel reports for a direct connect to the
				// unspecified address: the address it connected to.
				if r.Peer != tt.wantPeer {
					t.Errorf("dial %s: getpeername = %q, want %q", tt.dial.Address, r.Peer, tt.wantPeer)
				}
			})
		}
	}
	t.Run("egress deny", check)
	e.allowAll(t)
	t.Run("egress allow", check)

	// Egress rules see the resolved address too (127.0.0.4 is allowed on
	// any port, 127.0.0.1 is not).
	must(t, e.dp.SyncWorkloads([]Workload{{CgroupID: e.agent.ID, ID: testWorkload, EgressDeny: true}}))
	for _, tt := range []struct {
		dial  redirecttest.Dial
		errno string
	}{
		{redirecttest.Dial{Network: "tcp4", Address: "0.0.0.0:7100", Bind: "127.0.0.4"}, "ECONNREFUSED"},
		{redirecttest.Dial{Network: "tcp4", Address: "0.0.0.0:7100"}, "EPERM"},
		{redirecttest.Dial{Network: "tcp6", Address: "[::]:7100"}, "EPERM"},
	} {
		r := redirecttest.Agent(t, e.agent, tt.dial)
		if r.Errno != tt.errno {
			t.Errorf("dial %s bound to %q: errno %q (%s), want %s", tt.dial.Address, tt.dial.Bind, r.Errno, r.Error, tt.errno)
		}
	}

	// The kernel's own resolution, for comparison: a process outside the
	// workloads reaches the listener on 127.0.0.1 directly.
	if r := redirecttest.Outsider(t, redirecttest.Dial{Network: "tcp4", Address: "0.0.0.0:7003"}); outcome(r) != reached {
		t.Errorf("outsider dialling 0.0.0.0:7003: %+v, want the echo server on 127.0.0.1:7003", r)
	}
}
