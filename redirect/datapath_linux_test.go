package redirect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

func TestMain(m *testing.M) {
	redirecttest.MaybeRunAgent()
	os.Exit(m.Run())
}

const (
	testWorkload  = 11
	testTarget4   = 21
	testTarget6   = 22
	testTargetNet = 23
)

// fakeGateway stands in for the proxy: it answers each redirected
// connection with what OriginalDestination reported.
func fakeGateway(t *testing.T, d *Datapath, addr string) net.Listener {
	t.Helper()
	lc := ListenConfig()
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o, err := d.OriginalDestination(c)
			if err != nil {
				fmt.Fprintf(c, "error=%v\n", err)
			} else {
				fmt.Fprintf(c, "dst=%s wl=%d tgt=%d pid=%d\n", o.Destination, o.WorkloadID, o.TargetID, o.PID)
			}
			// Drain what the agent sent before closing: closing with
			// unread data resets the connection, and the agent's
			// getpeername would race the reset.
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	return ln
}

type env struct {
	dp       *Datapath
	pin      string
	top      redirecttest.Cgroup
	agent    redirecttest.Cgroup
	sub      redirecttest.Cgroup
	other    redirecttest.Cgroup
	gw4, gw6 net.Listener
	options  []func(*Options) // applied by open
}

// setup attaches the data path at a test cgroup (not the host's root, so
// nothing outside the test is touched), with one workload, three targets
// and a deny-by-default egress with two exceptions. options change what
// Open is given.
func setup(t *testing.T, options ...func(*Options)) *env {
	redirecttest.RequirePrivileged(t)
	root, err := identity.CgroupV2Root()
	if err != nil {
		t.Fatal(err)
	}
	top := fmt.Sprintf("/interlock-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	e := &env{
		top:     redirecttest.MakeCgroup(t, root, top),
		agent:   redirecttest.MakeCgroup(t, root, top+"/agents/demo"),
		sub:     redirecttest.MakeCgroup(t, root, top+"/agents/demo/sub"),
		other:   redirecttest.MakeCgroup(t, root, top+"/other"),
		pin:     filepath.Join("/sys/fs/bpf", filepath.Base(top)),
		options: options,
	}
	// Before Open: an Open that fails (a program the verifier refuses)
	// has made the pin folder and pinned maps already.
	t.Cleanup(func() {
		if e.dp != nil {
			e.dp.Close()
		}
		if err := Uninstall(e.pin); err != nil && !errors.Is(err, ErrNotInstalled) {
			t.Errorf("uninstall: %v", err)
		}
	})
	e.open(t)
	must(t, e.dp.SyncWorkloads([]Workload{{CgroupID: e.agent.ID, ID: testWorkload, EgressDeny: true}}))
	must(t, e.dp.SyncTargets([]Target{
		{ID: testTarget4, Prefix: netip.MustParsePrefix("127.0.0.2/32"), Port: 7000},
		{ID: testTarget6, Prefix: netip.MustParsePrefix("::1/128"), Port: 7001},
		{ID: testTargetNet, Prefix: netip.MustParsePrefix("127.0.10.0/24"), Port: 7002},
	}))
	must(t, e.dp.SyncEgress([]EgressAllow{
		{WorkloadID: testWorkload, Prefix: netip.MustParsePrefix("127.0.0.4/32")},
		{WorkloadID: testWorkload, Prefix: netip.MustParsePrefix("127.0.0.5/32"), Port: 7200},
	}))
	e.listen(t)
	return e
}

func (e *env) open(t *testing.T) {
	t.Helper()
	o := Options{PinPath: e.pin, CgroupRoot: e.top.Dir()}
	for _, f := range e.options {
		f(&o)
	}
	dp, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	e.dp = dp
}

func (e *env) listen(t *testing.T) {
	t.Helper()
	e.gw4 = fakeGateway(t, e.dp, "127.0.0.1:0")
	e.gw6 = fakeGateway(t, e.dp, "[::1]:0")
	must(t, e.dp.SetListeners(
		netip.MustParseAddrPort(e.gw4.Addr().String()),
		netip.MustParseAddrPort(e.gw6.Addr().String())))
	t.Cleanup(func() { e.gw4.Close(); e.gw6.Close() })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRedirect(t *testing.T) {
	e := setup(t)
	redirecttest.EchoServer(t, "127.0.0.2:7000")

	tests := []struct {
		name     string
		cg       redirecttest.Cgroup
		dial     redirecttest.Dial
		wantDst  string
		wantTgt  int
		wantPeer string
	}{
		{"ipv4", e.agent, redirecttest.Dial{Network: "tcp4", Address: "127.0.0.2:7000"}, "127.0.0.2:7000", testTarget4, "127.0.0.2:7000"},
		{"ipv6", e.agent, redirecttest.Dial{Network: "tcp6", Address: "[::1]:7001"}, "[::1]:7001", testTarget6, "[::1]:7001"},
		{"v4-mapped", e.agent, redirecttest.Dial{Network: "tcp6", Address: "[::ffff:127.0.0.2]:7000"}, "127.0.0.2:7000", testTarget4, "[::ffff:127.0.0.2]:7000"},
		{"prefix target", e.agent, redirecttest.Dial{Network: "tcp4", Address: "127.0.10.77:7002"}, "127.0.10.77:7002", testTargetNet, "127.0.10.77:7002"},
		{"sub-cgroup", e.sub, redirecttest.Dial{Network: "tcp4", Address: "127.0.0.2:7000"}, "127.0.0.2:7000", testTarget4, "127.0.0.2:7000"},
		{"child process", e.agent, redirecttest.Dial{Network: "tcp4", Address: "127.0.0.2:7000", ViaChild: true}, "127.0.0.2:7000", testTarget4, "127.0.0.2:7000"},
		{"fast open", e.agent, redirecttest.Dial{Network: "tcp4", Address: "127.0.0.2:7000", FastOpen: true, Send: "hello\n"}, "127.0.0.2:7000", testTarget4, "127.0.0.2:7000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := redirecttest.Agent(t, tt.cg, tt.dial)
			want := fmt.Sprintf("dst=%s wl=%d tgt=%d pid=%d", tt.wantDst, testWorkload, tt.wantTgt, r.PID)
			if r.Reply != want {
				t.Errorf("gateway answered %q (%s), want %q", r.Reply, r.Error, want)
			}
			if r.Peer != tt.wantPeer {
				t.Errorf("getpeername = %q, want the dialled %q", r.Peer, tt.wantPeer)
			}
		})
	}

	t.Run("other cgroup unaffected", func(t *testing.T) {
		r := redirecttest.Agent(t, e.other, redirecttest.Dial{Network: "tcp4", Address: "127.0.0.2:7000"})
		if want := "from=" + r.Local; r.Reply != want {
			t.Errorf("echo server answered %q, want %q (a direct connection)", r.Reply, want)
		}
	})

	c := counters(t, e.dp)
	if got := c[[2]uint32{testWorkload, testTarget4}].Redirected; got != 5 {
		t.Errorf("redirected to target 4: %d, want 5", got)
	}
}

func TestEgress(t *testing.T) {
	e := setup(t)
	tests := []struct {
		address, errno string
	}{
		{"127.0.0.3:7100", "EPERM"},        // not a target, not allowed
		{"127.0.0.4:7100", "ECONNREFUSED"}, // allowed host, any port: reaches the (closed) port
		{"127.0.0.5:7200", "ECONNREFUSED"}, // allowed host:port
		{"127.0.0.5:7201", "EPERM"},        // same host, other port
		{e.gw4.Addr().String(), "EPERM"},   // the gateway's listener is not reachable directly
	}
	for _, tt := range tests {
		r := redirecttest.Agent(t, e.agent, redirecttest.Dial{Network: "tcp4", Address: tt.address})
		if r.Errno != tt.errno {
			t.Errorf("dial %s: errno %q (%s), want %s", tt.address, r.Errno, r.Error, tt.errno)
		}
	}
	r := redirecttest.Agent(t, e.other, redirecttest.Dial{Network: "tcp4", Address: "127.0.0.3:7100"})
	if r.Errno != "ECONNREFUSED" {
		t.Errorf("other cgroup dial: errno %q, want ECONNREFUSED (no egress policy)", r.Errno)
	}
	c := counters(t, e.dp)[[2]uint32{testWorkload, 0}]
	if c.Denied != 3 || c.Allowed != 2 {
		t.Errorf("counters %+v, want 3 denied and 2 allowed", c)
	}
}

// TestPinnedLifecycle: the data path outlives the process that loaded it,
// fails closed without it, is adopted by the next one, and goes away with
// Uninstall.
func TestPinnedLifecycle(t *testing.T) {
	e := setup(t)
	redirecttest.EchoServer(t, "127.0.0.2:7000")
	dial := redirecttest.Dial{Network: "tcp4", Address: "127.0.0.2:7000"}
	links := len(attachments)
	if e.dp.TracksCgroups() {
		links++
	}

	// The "gateway" goes away: handles closed, listeners gone.
	must(t, e.dp.Close())
	e.dp = nil
	e.gw4.Close()
	e.gw6.Close()
	if r := redirecttest.Agent(t, e.agent, dial); r.Errno != "EPERM" {
		t.Fatalf("with no gateway the agent got %+v, want EPERM (fail closed)", r)
	}
	// Another process takes the gateway's port: it must not receive the
	// agent's connection.
	impostor, err := net.Listen("tcp", e.gw4.Addr().String())
	must(t, err)
	if r := redirecttest.Agent(t, e.agent, dial); r.Errno != "EPERM" {
		t.Errorf("with an impostor on the gateway's port the agent got %+v, want EPERM", r)
	}
	impostor.Close()
	if r := redirecttest.Outsider(t, dial); !strings.HasPrefix(r.Reply, "from=") {
		t.Fatalf("a process outside workloads got %+v, want the echo server", r)
	}

	st, err := Inspect(e.pin)
	must(t, err)
	if len(st.Links) != links || len(st.Workloads) != 1 || len(st.Targets) != 3 || !st.Enabled {
		t.Fatalf("pinned state %+v: want %d links, 1 workload, 3 targets, enabled", st, links)
	}

	// A new process adopts the pinned maps: no re-sync needed.
	e.open(t)
	e.listen(t)
	if r := redirecttest.Agent(t, e.agent, dial); !strings.HasPrefix(r.Reply, "dst=127.0.0.2:7000 ") {
		t.Fatalf("after restart the agent got %+v", r)
	}

	must(t, e.dp.Close())
	e.dp = nil
	must(t, Uninstall(e.pin))
	if _, err := os.Stat(e.pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin folder still there after uninstall: %v", err)
	}
	r := redirecttest.Agent(t, e.agent, dial)
	if want := "from=" + r.Local; r.Reply != want {
		t.Errorf("after uninstall the agent got %+v, want a direct connection", r)
	}
	if err := Uninstall(e.pin); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("second uninstall: %v, want ErrNotInstalled", err)
	}
}

func counters(t *testing.T, d *Datapath) map[[2]uint32]Counter {
	t.Helper()
	cs, err := d.Counters()
	must(t, err)
	out := map[[2]uint32]Counter{}
	for _, c := range cs {
		out[[2]uint32{c.WorkloadID, c.TargetID}] = c
	}
	return out
}
