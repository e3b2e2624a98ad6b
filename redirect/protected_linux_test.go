package redirect

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// reached is what the echo server's greeting looks like: the dial got
// through to the listener.
const reached = "reached"

// outcome names what a dial did: reached, or the errno it failed with.
func outcome(r redirecttest.Result) string {
	if r.Errno == "" && strings.HasPrefix(r.Reply, "from=") {
		return reached
	}
	if r.Errno != "" {
		return r.Errno
	}
	return fmt.Sprintf("reply %q, error %q", r.Reply, r.Error)
}

func addrPort(addr string, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), port)
}

// allowAll makes the test's workload egress-default-allow: then only the
// protected set stands between it and the listeners.
func (e *env) allowAll(t *testing.T) {
	t.Helper()
	must(t, e.dp.SyncWorkloads([]Workload{{CgroupID: e.agent.ID, ID: testWorkload}}))
}

// TestProtected: a workload whose egress allows everything still cannot
// dial a protected listener, by any spelling of its address, while a
// process outside the workloads can.
func TestProtected(t *testing.T) {
	e := setup(t)
	e.allowAll(t)
	// One listener on one address (like the admin API), one on every
	// address (like an explicit-mode listener on 0.0.0.0), one unprotected.
	one := redirecttest.Port(redirecttest.EchoServer(t, "127.0.0.1:0"))
	every := redirecttest.Port(redirecttest.EchoServer(t, "0.0.0.0:0"))
	free := redirecttest.Port(redirecttest.EchoServer(t, "127.0.0.1:0"))
	must(t, e.dp.SetProtected([]netip.AddrPort{addrPort("127.0.0.1", one), addrPort("0.0.0.0", every)}))

	tests := []struct {
		name, network, address string
		workload, outsider     string
	}{
		{"listener", "tcp4", addrPort("127.0.0.1", one).String(), "EPERM", reached},
		{"listener v4-mapped", "tcp6", addrPort("::ffff:127.0.0.1", one).String(), "EPERM", reached},
		// The kernel sends a dial of 0.0.0.0 to a local address: here the
		// listener, as the outsider shows.
		{"listener via 0.0.0.0", "tcp4", addrPort("0.0.0.0", one).String(), "EPERM", reached},
		{"listener via ::", "tcp6", addrPort("::", one).String(), "EPERM", "ECONNREFUSED"},
		{"same port, other address", "tcp4", addrPort("127.0.0.3", one).String(), "ECONNREFUSED", "ECONNREFUSED"},
		{"any address: 127.0.0.1", "tcp4", addrPort("127.0.0.1", every).String(), "EPERM", reached},
		{"any address: 127.0.0.3", "tcp4", addrPort("127.0.0.3", every).String(), "EPERM", reached},
		{"any address: v4-mapped", "tcp6", addrPort("::ffff:127.0.0.3", every).String(), "EPERM", reached},
		{"any address: ::1", "tcp6", addrPort("::1", every).String(), "EPERM", reached},
		{"unprotected", "tcp4", addrPort("127.0.0.1", free).String(), reached, reached},
	}
	var denied, allowed uint64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := redirecttest.Dial{Network: tt.network, Address: tt.address}
			if got := outcome(redirecttest.Agent(t, e.agent, d)); got != tt.workload {
				t.Errorf("workload dialling %s: %s, want %s", tt.address, got, tt.workload)
			}
			if got := outcome(redirecttest.Outsider(t, d)); got != tt.outsider {
				t.Errorf("outsider dialling %s: %s, want %s", tt.address, got, tt.outsider)
			}
		})
		if tt.workload == "EPERM" {
			denied++
		} else {
			allowed++
		}
	}
	c := counters(t, e.dp)[[2]uint32{testWorkload, 0}]
	if c.Denied != denied || c.Allowed != allowed || c.Redirected != 0 {
		t.Errorf("counters %+v, want %d denied and %d allowed", c, denied, allowed)
	}
}

// TestProtectedReplace: SetProtected replaces the whole set, and the set is
// pinned: it holds without the process and is adopted by the next one.
func TestProtectedReplace(t *testing.T) {
	e := setup(t)
	e.allowAll(t)
	a := redirecttest.Port(redirecttest.EchoServer(t, "127.0.0.1:0"))
	b := redirecttest.Port(redirecttest.EchoServer(t, "0.0.0.0:0"))
	dial := func(t *testing.T, addr string, port uint16) string {
		t.Helper()
		return outcome(redirecttest.Agent(t, e.agent, redirecttest.Dial{Network: "tcp4", Address: addrPort(addr, port).String()}))
	}
	inspect := func(t *testing.T) []netip.AddrPort {
		t.Helper()
		st, err := Inspect(e.pin)
		must(t, err)
		return st.Protected
	}

	steps := []struct {
		name    string
		set     []netip.AddrPort
		inspect []netip.AddrPort // what Inspect reports
		a, b    string           // the workload dialling 127.0.0.1:a, 127.0.0.3:b
	}{
		{"a and any address on b", []netip.AddrPort{addrPort("127.0.0.1", a), addrPort("0.0.0.0", b)},
			[]netip.AddrPort{addrPort("127.0.0.1", a), addrPort("::", b)}, "EPERM", "EPERM"},
		{"replaced by b on 127.0.0.3", []netip.AddrPort{addrPort("127.0.0.3", b)},
			[]netip.AddrPort{addrPort("127.0.0.3", b)}, reached, "EPERM"},
		{"replaced by a on ::", []netip.AddrPort{addrPort("::", a)},
			[]netip.AddrPort{addrPort("::", a)}, "EPERM", reached},
		{"emptied", nil, nil, reached, reached},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			must(t, e.dp.SetProtected(s.set))
			if got := inspect(t); !slices.Equal(got, s.inspect) {
				t.Errorf("Inspect reports %v, want %v", got, s.inspect)
			}
			if got := dial(t, "127.0.0.1", a); got != s.a {
				t.Errorf("dialling 127.0.0.1:%d: %s, want %s", a, got, s.a)
			}
			if got := dial(t, "127.0.0.3", b); got != s.b {
				t.Errorf("dialling 127.0.0.3:%d: %s, want %s", b, got, s.b)
			}
		})
	}

	// Without the process the pinned set still holds; the next one adopts it.
	must(t, e.dp.SetProtected([]netip.AddrPort{addrPort("127.0.0.1", a)}))
	must(t, e.dp.Close())
	e.dp = nil
	if got := dial(t, "127.0.0.1", a); got != "EPERM" {
		t.Errorf("with no gateway process: %s, want EPERM", got)
	}
	e.open(t)
	if got := inspect(t); !slices.Equal(got, []netip.AddrPort{addrPort("127.0.0.1", a)}) {
		t.Errorf("after restart Inspect reports %v", got)
	}
	if got := dial(t, "127.0.0.1", a); got != "EPERM" {
		t.Errorf("after restart: %s, want EPERM", got)
	}
}

// TestProtectedRedirect: with the gateway's listeners protected (as the
// gateway does), a workload cannot dial them directly, but its connects to
// targets are still rewritten to them.
func TestProtectedRedirect(t *testing.T) {
	e := setup(t)
	e.allowAll(t)
	gw4 := netip.MustParseAddrPort(e.gw4.Addr().String())
	gw6 := netip.MustParseAddrPort(e.gw6.Addr().String())
	mapped := netip.AddrPortFrom(netip.AddrFrom16(gw4.Addr().As16()), gw4.Port())

	sets := []struct {
		name string
		set  []netip.AddrPort
	}{
		{"listener addresses", []netip.AddrPort{gw4, gw6}},
		{"any address on the listeners' ports", []netip.AddrPort{addrPort("0.0.0.0", gw4.Port()), addrPort("::", gw6.Port())}},
	}
	for _, s := range sets {
		t.Run(s.name, func(t *testing.T) {
			must(t, e.dp.SetProtected(s.set))
			redirects := []struct {
				network, address, dst string
				target                uint32
			}{
				{"tcp4", "127.0.0.2:7000", "127.0.0.2:7000", testTarget4},
				{"tcp6", "[::ffff:127.0.0.2]:7000", "127.0.0.2:7000", testTarget4},
				{"tcp6", "[::1]:7001", "[::1]:7001", testTarget6},
			}
			for _, r := range redirects {
				got := redirecttest.Agent(t, e.agent, redirecttest.Dial{Network: r.network, Address: r.address})
				want := fmt.Sprintf("dst=%s wl=%d tgt=%d pid=%d", r.dst, testWorkload, r.target, got.PID)
				if got.Reply != want {
					t.Errorf("dialling target %s: gateway answered %q (%s), want %q", r.address, got.Reply, got.Error, want)
				}
			}
			direct := []struct{ network, address string }{
				{"tcp4", gw4.String()},
				{"tcp6", mapped.String()},
				{"tcp6", gw6.String()},
			}
			for _, d := range direct {
				got := redirecttest.Agent(t, e.agent, redirecttest.Dial{Network: d.network, Address: d.address})
				if got.Errno != "EPERM" {
					t.Errorf("dialling the listener %s directly: %+v, want EPERM", d.address, got)
				}
			}
		})
	}
}
