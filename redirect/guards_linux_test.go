package redirect

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

const testWorkloadDeep = 12

// Destinations that are not targets: the egress rules of setup's workload
// refuse the first and allow the second (127.0.0.4 on any port).
const (
	plainDenied  = "127.0.0.3:7300"
	plainAllowed = "127.0.0.4:7300"
)

// newestChild is the watermark the gateway writes for a guarded parent: the
// highest id among its child cgroups.
func newestChild(t *testing.T, parent redirecttest.Cgroup) uint64 {
	t.Helper()
	entries, err := os.ReadDir(parent.Dir())
	must(t, err)
	var newest uint64
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		id, err := identity.CgroupID(filepath.Join(parent.Dir(), e.Name()))
		must(t, err)
		newest = max(newest, id)
	}
	return newest
}

// viaGateway is what the fake gateway answers for a connect the kernel
// sent it.
func viaGateway(r redirecttest.Result, dst string, workload, target uint32) string {
	return fmt.Sprintf("dst=%s wl=%d tgt=%d pid=%d", dst, workload, target, r.PID)
}

// reachedDirectly tells a connect that reached the echo server itself: the server
// saw the agent's own address.
func reachedDirectly(r redirecttest.Result) bool {
	return r.Errno == "" && r.Reply == "from="+r.Local
}

// guardEnv is setup's data path with cgroups under two guarded parents and
// one unguarded one, made as a unit's restart makes them: some before the
// gateway's last pass (the watermark), some after.
type guardEnv struct {
	*env
	guarded  redirecttest.Cgroup // a guarded parent
	old      redirecttest.Cgroup // its child at the last pass; no workload
	fresh    redirecttest.Cgroup // its child made since
	deep     redirecttest.Cgroup // a workload below fresh
	loose    redirecttest.Cgroup // a child made since, of an unguarded parent
	inAgent  redirecttest.Cgroup // a child made since, of the guarded workload cgroup e.agent
	guards   []Guard
	echoDst  string // the target's echo server
	gwDirect []string
}

// The cgroup_mkdir program is left out: these tests are of the guards
// alone, as a kernel without BTF runs them and as they still cover what
// that program leaves to them (cgroupwatch_linux_test.go).
func setupGuards(t *testing.T) *guardEnv {
	e := setup(t, withoutCgroupWatch)
	top := e.top.Path
	g := &guardEnv{env: e, echoDst: "127.0.0.2:7000"}
	redirecttest.EchoServer(t, g.echoDst)
	redirecttest.EchoServer(t, plainDenied)
	redirecttest.EchoServer(t, plainAllowed)

	g.guarded = redirecttest.MakeCgroup(t, e.top.Root, top+"/guarded")
	g.old = redirecttest.MakeCgroup(t, e.top.Root, top+"/guarded/old")
	unguarded := redirecttest.MakeCgroup(t, e.top.Root, top+"/unguarded")
	// The gateway's pass: it guards the parents of the workload cgroups it
	// knows, e.agent's (agents) and e.agent itself for its sub-cgroups,
	// and g.guarded, standing for a unit's slice.
	agents := redirecttest.MakeCgroup(t, e.top.Root, top+"/agents")
	g.guards = []Guard{
		{CgroupID: g.guarded.ID, Watermark: newestChild(t, g.guarded)},
		{CgroupID: agents.ID, Watermark: newestChild(t, agents)},
		{CgroupID: e.agent.ID, Watermark: newestChild(t, e.agent)},
	}
	must(t, e.dp.SyncGuards(g.guards))

	// Since then: a restarted unit's new cgroup, with a workload below it
	// that the gateway already knows; a cgroup under a parent nobody
	// guards; a new sub-cgroup of a workload.
	g.fresh = redirecttest.MakeCgroup(t, e.top.Root, top+"/guarded/fresh")
	g.deep = redirecttest.MakeCgroup(t, e.top.Root, top+"/guarded/fresh/deep")
	g.loose = redirecttest.MakeCgroup(t, e.top.Root, top+"/unguarded/new")
	g.inAgent = redirecttest.MakeCgroup(t, e.top.Root, e.agent.Path+"/fresh")
	for _, cg := range []redirecttest.Cgroup{g.fresh, g.inAgent, g.loose} {
		if cg.ID <= max(g.guards[0].Watermark, g.guards[2].Watermark, unguarded.ID) {
			t.Fatalf("cgroup %s has id %d, not above the ones made before it: cgroup ids must grow", cg.Path, cg.ID)
		}
	}
	must(t, e.dp.SyncWorkloads([]Workload{
		{CgroupID: e.agent.ID, ID: testWorkload, EgressDeny: true},
		{CgroupID: g.deep.ID, ID: testWorkloadDeep, EgressDeny: true},
	}))
	// The gateway's listeners are protected, as the gateway sets them.
	gw4 := netip.MustParseAddrPort(e.gw4.Addr().String())
	gw6 := netip.MustParseAddrPort(e.gw6.Addr().String())
	must(t, e.dp.SetProtected([]netip.AddrPort{gw4, gw6}))
	g.gwDirect = []string{gw4.String(), gw6.String()}
	return g
}

func dialNetwork(addr string) string {
	if netip.MustParseAddrPort(addr).Addr().Is4() {
		return "tcp4"
	}
	return "tcp6"
}

func (g *guardEnv) dial(t *testing.T, cg redirecttest.Cgroup, addr string) redirecttest.Result {
	t.Helper()
	return redirecttest.Agent(t, cg, redirecttest.Dial{Network: dialNetwork(addr), Address: addr})
}

// TestGuardsRedirect: with the gateway listening, a cgroup made under a
// guarded parent since the gateway's last pass is sent to the gateway,
// whatever it dials, as UnresolvedWorkload; cgroups the gateway knew of,
// and ones under unguarded parents, are not.
func TestGuardsRedirect(t *testing.T) {
	g := setupGuards(t)
	unresolved := []struct {
		name     string
		cg       redirecttest.Cgroup
		address  string
		dst      string
		target   uint32
		wantPeer string
	}{
		{"new cgroup, target", g.fresh, g.echoDst, g.echoDst, testTarget4, g.echoDst},
		{"new cgroup, IPv6 target", g.fresh, "[::1]:7001", "[::1]:7001", testTarget6, "[::1]:7001"},
		{"new cgroup, v4-mapped target", g.fresh, "[::ffff:127.0.0.2]:7000", g.echoDst, testTarget4, "[::ffff:127.0.0.2]:7000"},
		{"new cgroup, not a target", g.fresh, plainDenied, plainDenied, 0, plainDenied},
		{"new cgroup, not a target, v4-mapped", g.fresh, "[::ffff:127.0.0.4]:7300", plainAllowed, 0, "[::ffff:127.0.0.4]:7300"},
		// Unresolved below a workload (its new sub-cgroup may be another
		// workload's): the gateway decides, even where the workload's
		// own egress would refuse.
		{"new sub-cgroup of a workload, target", g.inAgent, g.echoDst, g.echoDst, testTarget4, g.echoDst},
		{"new sub-cgroup of a workload, not a target", g.inAgent, plainDenied, plainDenied, 0, plainDenied},
	}
	for _, tt := range unresolved {
		t.Run(tt.name, func(t *testing.T) {
			r := g.dial(t, tt.cg, tt.address)
			if want := viaGateway(r, tt.dst, UnresolvedWorkload, tt.target); r.Reply != want {
				t.Errorf("dial %s: gateway answered %q (errno %q, %s), want %q", tt.address, r.Reply, r.Errno, r.Error, want)
			}
			if r.Peer != tt.wantPeer {
				t.Errorf("dial %s: getpeername = %q, want the dialled %q", tt.address, r.Peer, tt.wantPeer)
			}
		})
	}

	known := []struct {
		name     string
		cg       redirecttest.Cgroup
		workload uint32
	}{
		// A known workload deeper than the new cgroup is itself.
		{"workload below a new cgroup", g.deep, testWorkloadDeep},
		// e.agent and its sub-cgroup were there at the last pass.
		{"workload", g.agent, testWorkload},
		{"workload's sub-cgroup made before the pass", g.sub, testWorkload},
	}
	for _, tt := range known {
		t.Run(tt.name, func(t *testing.T) {
			r := g.dial(t, tt.cg, g.echoDst)
			if want := viaGateway(r, g.echoDst, tt.workload, testTarget4); r.Reply != want {
				t.Errorf("target: gateway answered %q (errno %q, %s), want %q", r.Reply, r.Errno, r.Error, want)
			}
			if r := g.dial(t, tt.cg, plainDenied); r.Errno != "EPERM" {
				t.Errorf("not a target: %+v, want EPERM (the workload's egress denies it)", r)
			}
		})
	}

	untouched := []struct {
		name string
		cg   redirecttest.Cgroup
	}{
		{"cgroup there at the last pass", g.old},
		{"new cgroup of an unguarded parent", g.loose},
		{"the guarded parent itself", g.guarded},
	}
	for _, tt := range untouched {
		t.Run(tt.name, func(t *testing.T) {
			for _, addr := range []string{g.echoDst, plainDenied} {
				if r := g.dial(t, tt.cg, addr); !reachedDirectly(r) {
					t.Errorf("dial %s: %+v, want a direct connection", addr, r)
				}
			}
		})
	}

	t.Run("gateway's listeners", func(t *testing.T) {
		for _, addr := range g.gwDirect {
			if r := g.dial(t, g.fresh, addr); r.Errno != "EPERM" {
				t.Errorf("new cgroup dialling the listener %s: %+v, want EPERM", addr, r)
			}
		}
	})

	c := counters(t, g.dp)
	if got := c[[2]uint32{UnresolvedWorkload, testTarget4}].Redirected; got != 3 {
		t.Errorf("unresolved connects redirected to target %d: %d, want 3", testTarget4, got)
	}
	if got := c[[2]uint32{UnresolvedWorkload, 0}]; got.Redirected != 3 || got.Denied != 2 || got.Allowed != 0 {
		t.Errorf("unresolved connects to other destinations: %+v, want 3 redirected and 2 denied (the listeners)", got)
	}
}

// TestGuardsNoGateway: while no gateway listens, an unresolved cgroup may
// not reach a target, and reaches other destinations as its guards' egress
// says; one below a workload decides as that workload.
func TestGuardsNoGateway(t *testing.T) {
	g := setupGuards(t)
	g.gw4.Close()
	g.gw6.Close()

	steps := []struct {
		name       string
		egressDeny bool
		cg         redirecttest.Cgroup
		address    string
		want       string
	}{
		{"target", false, g.fresh, g.echoDst, "EPERM"},
		{"IPv6 target", false, g.fresh, "[::1]:7001", "EPERM"},
		{"not a target", false, g.fresh, plainDenied, reached},
		{"not a target, egress deny", true, g.fresh, plainDenied, "EPERM"},
		{"not a target, egress deny, v4-mapped", true, g.fresh, "[::ffff:127.0.0.3]:7300", "EPERM"},
		{"target, egress deny", true, g.fresh, g.echoDst, "EPERM"},
		// Below workload e.agent its own egress decides, not the guard:
		// it refuses plainDenied without the guard's flag and allows
		// plainAllowed with it.
		{"below a workload, denied by its egress", false, g.inAgent, plainDenied, "EPERM"},
		{"below a workload, allowed by its egress", true, g.inAgent, plainAllowed, reached},
		{"below a workload, target", false, g.inAgent, g.echoDst, "EPERM"},
		// Not unresolved: no workload's, so not the data path's business.
		{"cgroup there at the last pass", true, g.old, g.echoDst, reached},
		{"new cgroup of an unguarded parent", true, g.loose, plainDenied, reached},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			gs := slices.Clone(g.guards)
			for i := range gs {
				gs[i].EgressDeny = s.egressDeny
			}
			must(t, g.dp.SyncGuards(gs))
			if got := outcome(g.dial(t, s.cg, s.address)); got != s.want {
				t.Errorf("dial %s: %s, want %s", s.address, got, s.want)
			}
		})
	}

	c := counters(t, g.dp)
	if got := c[[2]uint32{UnresolvedWorkload, testTarget4}]; got.Denied != 2 || got.Redirected != 0 {
		t.Errorf("unresolved connects to target %d: %+v, want 2 denied", testTarget4, got)
	}
	if got := c[[2]uint32{UnresolvedWorkload, testTarget6}]; got.Denied != 1 {
		t.Errorf("unresolved connects to target %d: %+v, want 1 denied", testTarget6, got)
	}
	if got := c[[2]uint32{UnresolvedWorkload, 0}]; got.Allowed != 1 || got.Denied != 2 || got.Redirected != 0 {
		t.Errorf("unresolved connects to other destinations: %+v, want 1 allowed and 2 denied", got)
	}
	// Decided as workload e.agent, counted as it.
	if got := c[[2]uint32{testWorkload, 0}]; got.Allowed != 1 || got.Denied != 1 {
		t.Errorf("workload %d, other destinations: %+v, want 1 allowed and 1 denied", testWorkload, got)
	}
	if got := c[[2]uint32{testWorkload, testTarget4}]; got.Denied != 1 {
		t.Errorf("workload %d, target %d: %+v, want 1 denied", testWorkload, testTarget4, got)
	}
}

// TestGuardedRoot: the root cgroup may be guarded (a workload right below
// it has the root as its parent); its children newer than the watermark
// are unresolved. The programs are attached at the test's own cgroup, so
// only its processes see the guard.
func TestGuardedRoot(t *testing.T) {
	e := setup(t)
	rootID, err := identity.CgroupID(e.top.Root)
	must(t, err)
	dial := redirecttest.Dial{Network: "tcp4", Address: "127.0.0.2:7000"}
	redirecttest.EchoServer(t, dial.Address)

	// The test's cgroup, a child of the root, made after the watermark.
	must(t, e.dp.SyncGuards([]Guard{{CgroupID: rootID, Watermark: e.top.ID - 1}}))
	r := redirecttest.Agent(t, e.other, dial)
	if want := viaGateway(r, dial.Address, UnresolvedWorkload, testTarget4); r.Reply != want {
		t.Errorf("below a new child of the guarded root: gateway answered %q (errno %q), want %q", r.Reply, r.Errno, want)
	}
	r = redirecttest.Agent(t, e.agent, dial)
	if want := viaGateway(r, dial.Address, testWorkload, testTarget4); r.Reply != want {
		t.Errorf("a workload below it: gateway answered %q (errno %q), want %q", r.Reply, r.Errno, want)
	}

	// At the watermark: known to the gateway.
	must(t, e.dp.SyncGuards([]Guard{{CgroupID: rootID, Watermark: e.top.ID}}))
	if r := redirecttest.Agent(t, e.other, dial); !reachedDirectly(r) {
		t.Errorf("below a child at the watermark: %+v, want a direct connection", r)
	}
}

// TestGatewayCgroupExempt: the gateway's own cgroup is never unresolved,
// however new (a restarted gateway unit in a workload unit's slice): its
// dials go where it dials, not back to itself.
func TestGatewayCgroupExempt(t *testing.T) {
	g := setupGuards(t)
	must(t, g.dp.SetGatewayCgroup(g.fresh.ID))
	for _, addr := range []string{g.echoDst, plainDenied} {
		if r := g.dial(t, g.fresh, addr); !reachedDirectly(r) {
			t.Errorf("the gateway's cgroup dialling %s: %+v, want a direct connection", addr, r)
		}
	}
	// Exactly its cgroup: a new cgroup below it is still unresolved, so
	// a gateway in the root cgroup exempts nobody else.
	below := redirecttest.MakeCgroup(t, g.fresh.Root, g.fresh.Path+"/below")
	if r := g.dial(t, below, g.echoDst); r.Reply != viaGateway(r, g.echoDst, UnresolvedWorkload, testTarget4) {
		t.Errorf("below the gateway's cgroup: %+v, want it sent to the gateway as unresolved", r)
	}
	// A later gateway's cgroup replaces it.
	must(t, g.dp.SetGatewayCgroup(g.inAgent.ID))
	if r := g.dial(t, g.fresh, g.echoDst); r.Reply != viaGateway(r, g.echoDst, UnresolvedWorkload, testTarget4) {
		t.Errorf("a former gateway's cgroup: %+v, want it sent to the gateway as unresolved", r)
	}
	if err := g.dp.SetGatewayCgroup(0); err == nil {
		t.Error("cgroup id 0 was accepted")
	}
}

// TestSyncGuards: the map holds exactly the last set, several guards of one
// parent merged into the stricter, and Inspect reads it back.
func TestSyncGuards(t *testing.T) {
	e := setup(t)
	inspect := func(t *testing.T) []Guard {
		t.Helper()
		st, err := Inspect(e.pin)
		must(t, err)
		return st.Guards
	}
	must(t, e.dp.SyncGuards([]Guard{
		{CgroupID: 7, Watermark: 100},
		{CgroupID: 5, Watermark: 40, EgressDeny: true},
		{CgroupID: 7, Watermark: 90},
		{CgroupID: 7, Watermark: 120, EgressDeny: true},
	}))
	want := []Guard{{CgroupID: 5, Watermark: 40, EgressDeny: true}, {CgroupID: 7, Watermark: 90, EgressDeny: true}}
	if got := inspect(t); !slices.Equal(got, want) {
		t.Errorf("guards %+v, want %+v", got, want)
	}
	must(t, e.dp.SyncGuards([]Guard{{CgroupID: 8, Watermark: 1}}))
	if got, want := inspect(t), []Guard{{CgroupID: 8, Watermark: 1}}; !slices.Equal(got, want) {
		t.Errorf("after replacing: guards %+v, want %+v", got, want)
	}
	if err := e.dp.SyncGuards([]Guard{{Watermark: 1}}); err == nil {
		t.Error("a guard with no cgroup id was accepted")
	}
}

// TestUpgrade: links and maps pinned by an older gateway, whose programs
// know nothing of guards or of cgroups made since, are adopted with this
// version's programs; the guards, expected and settled maps are created
// beside the old maps, and the cgroup_mkdir and sock_create programs,
// which it did not have, are attached.
func TestUpgrade(t *testing.T) {
	e := setup(t)
	dial := redirecttest.Dial{Network: "tcp4", Address: "127.0.0.2:7000"}
	redirecttest.EchoServer(t, dial.Address)
	redirecttest.EchoServer(t, plainAllowed)
	mptcp := mptcpDial("tcp4", plainAllowed)

	// The older version: its programs (here: let everything through) in
	// the pinned links, no sock_create link, no guards map.
	must(t, e.dp.Close())
	e.dp = nil
	for _, a := range attachments {
		l, err := link.LoadPinnedLink(filepath.Join(e.pin, a.pin), nil)
		must(t, err)
		if a.attach == ebpf.AttachCGroupInetSockCreate {
			// Unpinned while held: closing the last handle detaches it.
			must(t, l.Unpin())
			l.Close()
			continue
		}
		old := passProgram(t, a.attach)
		must(t, l.Update(old))
		l.Close()
	}
	for _, m := range []string{"guards", "expected", "settled"} {
		must(t, os.Remove(filepath.Join(e.pin, m)))
	}
	must(t, removeCgroupWatch(e.pin))
	if r := redirecttest.Agent(t, e.agent, dial); !reachedDirectly(r) {
		t.Fatalf("with the older programs in place the workload got %+v, want a direct connection", r)
	}
	hasMPTCP := mptcpEnabled()
	if hasMPTCP {
		if r := redirecttest.Agent(t, e.agent, mptcp); !reachedDirectly(r) {
			t.Fatalf("with the older programs in place the workload's MPTCP dial got %+v, want a direct connection", r)
		}
	}

	e.open(t)
	e.listen(t)
	for _, a := range attachments {
		l, err := link.LoadPinnedLink(filepath.Join(e.pin, a.pin), nil)
		must(t, err)
		info, err := l.Info()
		l.Close()
		must(t, err)
		pinfo, err := a.prog(&e.dp.objs).Info()
		must(t, err)
		if id, _ := pinfo.ID(); info.Program != id {
			t.Errorf("link %s runs program %d, want this version's %d", a.pin, info.Program, id)
		}
	}
	r := redirecttest.Agent(t, e.agent, dial)
	if want := viaGateway(r, dial.Address, testWorkload, testTarget4); r.Reply != want {
		t.Errorf("after the upgrade the workload got %q (errno %q), want %q", r.Reply, r.Errno, want)
	}
	must(t, e.dp.SyncGuards([]Guard{{CgroupID: e.top.ID, Watermark: e.other.ID - 1}}))
	r = redirecttest.Agent(t, e.other, dial)
	if want := viaGateway(r, dial.Address, UnresolvedWorkload, testTarget4); r.Reply != want {
		t.Errorf("after the upgrade an unresolved cgroup got %q (errno %q), want %q", r.Reply, r.Errno, want)
	}
	t.Run("MPTCP", func(t *testing.T) {
		requireMPTCP(t)
		if r := redirecttest.Agent(t, e.agent, mptcp); !refusedAtSocket(r) {
			t.Errorf("after the upgrade the workload's MPTCP socket: %+v, want socket() to fail with EPERM", r)
		}
	})

	requireTracksCgroups(t, e.dp)
	path := e.top.Path + "/agent.service"
	must(t, e.dp.SyncExpected([]Expected{{Path: path, WorkloadID: testWorkloadMkdir, Workload: true}}))
	agent := redirecttest.MakeCgroup(t, e.top.Root, path)
	if got, ok := workloadOf(t, e.pin, agent); !ok || got.ID != testWorkloadMkdir {
		t.Errorf("after the upgrade a cgroup made at an expected path: workloads entry %+v (found %v), want workload %d", got, ok, testWorkloadMkdir)
	}
}

// passProgram is a program of the attach type's kind that lets everything
// through, standing for an older version's.
func passProgram(t *testing.T, at ebpf.AttachType) *ebpf.Program {
	t.Helper()
	typ := ebpf.CGroupSockAddr
	switch at {
	case ebpf.AttachCGroupSockOps:
		typ = ebpf.SockOps
	case ebpf.AttachCGroupInetSockCreate:
		typ = ebpf.CGroupSock
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         typ,
		AttachType:   at,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
		License:      "GPL",
	})
	must(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}
