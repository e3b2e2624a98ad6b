package redirect

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
	"golang.org/x/sys/unix"
)

const testLateWorkload = 12

// holdServer accepts connections on addr and keeps them open, reading,
// until the test ends.
func holdServer(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	holdAccepted(t, ln)
}

func holdAccepted(t *testing.T, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
}

// holdingGateway is a marked listener that keeps redirected connections
// open, so that a sweep meets them.
func holdingGateway(t *testing.T, e *env) {
	t.Helper()
	lc := ListenConfig()
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	holdAccepted(t, ln)
	must(t, e.dp.SetListeners(netip.MustParseAddrPort(ln.Addr().String()), netip.MustParseAddrPort(e.gw6.Addr().String())))
}

// TestSweep: connections a cgroup's processes opened before it became a
// workload's are closed when they reach a target directly or a
// destination its egress refuses; the others stay open.
func TestSweep(t *testing.T) {
	e := setup(t)
	holdingGateway(t, e)
	for _, a := range []string{"127.0.0.2:7000", "127.0.0.3:7300", "127.0.0.4:7400", "127.0.0.2:7001"} {
		holdServer(t, a)
	}
	root := e.top.Root
	late := redirecttest.MakeCgroup(t, root, e.top.Path+"/late")
	lateSub := redirecttest.MakeCgroup(t, root, e.top.Path+"/late/sub")

	// Before late is a workload's: these connects go out directly.
	toTarget := redirecttest.StartHold(t, late, redirecttest.Hold{Address: "127.0.0.2:7000"})
	refused := redirecttest.StartHold(t, lateSub, redirecttest.Hold{Address: "127.0.0.3:7300"})
	allowed := redirecttest.StartHold(t, late, redirecttest.Hold{Address: "127.0.0.4:7400"})
	otherPort := redirecttest.StartHold(t, late, redirecttest.Hold{Address: "127.0.0.2:7001"})
	outsider := redirecttest.StartHold(t, e.other, redirecttest.Hold{Address: "127.0.0.2:7000"})
	// A workload's connect to a target, redirected to the gateway.
	redirected := redirecttest.StartHold(t, e.agent, redirecttest.Hold{Address: "127.0.0.2:7000"})
	// A connection late accepted: egress decides connects, not these.
	server := redirecttest.StartHold(t, late, redirecttest.Hold{Address: "127.0.0.6:0", Listen: true})
	in, err := net.Dial("tcp", server.Local)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()

	if got, err := e.dp.Sweep(); err != nil || len(got) != 0 {
		t.Fatalf("sweep before late is a workload's: %+v, %v; want nothing closed", got, err)
	}

	must(t, e.dp.SyncWorkloads([]Workload{
		{CgroupID: e.agent.ID, ID: testWorkload, EgressDeny: true},
		{CgroupID: late.ID, ID: testLateWorkload, EgressDeny: true},
	}))
	must(t, e.dp.SyncEgress([]EgressAllow{
		{WorkloadID: testWorkload, Prefix: netip.MustParsePrefix("127.0.0.4/32")},
		{WorkloadID: testLateWorkload, Prefix: netip.MustParsePrefix("127.0.0.4/32"), Port: 7400},
		{WorkloadID: testLateWorkload, Prefix: netip.MustParsePrefix("127.0.0.2/32"), Port: 7001},
	}))
	// A report finds the same connections and closes none.
	reported, err := e.dp.SweepReport()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, c := range reported {
		if !c.Reported || c.Err != nil {
			t.Errorf("reported %+v: want Reported and no error", c)
		}
		found[c.Local.String()] = true
	}
	if len(reported) != 2 || !found[toTarget.Local] || !found[refused.Local] {
		t.Errorf("report found %+v, want the connections from %s and %s", reported, toTarget.Local, refused.Local)
	}
	if !toTarget.Open() || !refused.Open() {
		t.Fatal("a report closed a connection")
	}
	got, err := e.dp.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Closed{
		toTarget.Local: {WorkloadID: testLateWorkload, TargetID: testTarget4, CgroupID: late.ID, Remote: netip.MustParseAddrPort("127.0.0.2:7000")},
		refused.Local:  {WorkloadID: testLateWorkload, TargetID: 0, CgroupID: lateSub.ID, Remote: netip.MustParseAddrPort("127.0.0.3:7300")},
	}
	if len(got) != len(want) {
		t.Errorf("sweep closed %d connections, want %d: %+v", len(got), len(want), got)
	}
	for _, c := range got {
		w, ok := want[c.Local.String()]
		if !ok {
			t.Errorf("sweep closed %s → %s (cgroup %d), which should stay open", c.Local, c.Remote, c.CgroupID)
			continue
		}
		if c.Err != nil || c.WorkloadID != w.WorkloadID || c.TargetID != w.TargetID || c.CgroupID != w.CgroupID || c.Remote != w.Remote || c.UID != uint32(os.Getuid()) {
			t.Errorf("closed %+v, want %+v (uid %d)", c, w, os.Getuid())
		}
	}
	for name, h := range map[string]*redirecttest.Holder{"to the target": toTarget, "refused by egress": refused} {
		if end := h.Ended(5 * time.Second); end != "ECONNABORTED" {
			t.Errorf("connection %s: ended with %q, want ECONNABORTED", name, end)
		}
	}
	for name, h := range map[string]*redirecttest.Holder{"allowed by egress": allowed, "allowed port": otherPort, "outsider": outsider, "redirected": redirected, "accepted": server} {
		if !h.Open() {
			t.Errorf("connection %s was closed", name)
		}
	}
	if got, err := e.dp.Sweep(); err != nil || len(got) != 0 {
		t.Errorf("second sweep: %+v, %v; want nothing left to close", got, err)
	}
}

// TestSweepOtherNetns: a workload's process in a network namespace of its
// own is swept there.
func TestSweepOtherNetns(t *testing.T) {
	e := setup(t)
	late := redirecttest.MakeCgroup(t, e.top.Root, e.top.Path+"/late")
	h := redirecttest.StartHold(t, late, redirecttest.Hold{Address: "127.0.0.2:7000", OwnNetns: true})
	must(t, e.dp.SyncWorkloads([]Workload{{CgroupID: late.ID, ID: testLateWorkload}}))
	got, err := e.dp.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].TargetID != testTarget4 || got[0].Local.String() != h.Local || got[0].Err != nil {
		t.Fatalf("sweep closed %+v, want the connection from %s to target %d", got, h.Local, testTarget4)
	}
	if end := h.Ended(5 * time.Second); end != "ECONNABORTED" {
		t.Errorf("connection ended with %q, want ECONNABORTED", end)
	}
}

// quietServer accepts connections on addr and keeps each open, after the
// client's FIN too, until the test ends.
func quietServer(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
}

// sweepEnv is a test's data path, with workloads a case adds.
type sweepEnv struct {
	*env
	extra []Workload
}

// TestSweepReaches: connections the first sweep missed, each made before
// its cgroup (or its process) was a workload's, are closed with the
// workload they are decided as.
func TestSweepReaches(t *testing.T) {
	tests := []struct {
		name string
		// start makes the connection; late is the workload's cgroup.
		start      func(t *testing.T, e *sweepEnv, late redirecttest.Cgroup) (*redirecttest.Holder, redirecttest.Cgroup)
		egressDeny bool
		target     uint32
	}{
		{"half-closed (FIN_WAIT2)", func(t *testing.T, e *sweepEnv, late redirecttest.Cgroup) (*redirecttest.Holder, redirecttest.Cgroup) {
			quietServer(t, "127.0.0.2:7000")
			return redirecttest.StartHold(t, late, redirecttest.Hold{Address: "127.0.0.2:7000", HalfClose: true}), late
		}, false, testTarget4},
		{"old sibling of a nested workload", func(t *testing.T, e *sweepEnv, late redirecttest.Cgroup) (*redirecttest.Holder, redirecttest.Cgroup) {
			holdServer(t, "127.0.0.2:7000")
			old := redirecttest.MakeCgroup(t, e.top.Root, e.top.Path+"/late/old")
			inner := redirecttest.MakeCgroup(t, e.top.Root, e.top.Path+"/late/inner")
			// The gateway's pass: inner is a workload too, so late is
			// guarded, and old was there before the pass.
			e.extra = []Workload{{CgroupID: inner.ID, ID: testWorkload}}
			must(t, e.dp.SyncGuards([]Guard{{CgroupID: late.ID, Watermark: inner.ID}}))
			return redirecttest.StartHold(t, old, redirecttest.Hold{Address: "127.0.0.2:7000"}), old
		}, false, testTarget4},
		{"a port protected on every address", func(t *testing.T, e *sweepEnv, late redirecttest.Cgroup) (*redirecttest.Holder, redirecttest.Cgroup) {
			holdServer(t, "127.0.0.3:7300")
			must(t, e.dp.SetProtected([]netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:7300")}))
			return redirecttest.StartHold(t, late, redirecttest.Hold{Address: "127.0.0.3:7300"}), late
		}, false, 0},
		{"the listener's address in another network namespace", func(t *testing.T, e *sweepEnv, late redirecttest.Cgroup) (*redirecttest.Holder, redirecttest.Cgroup) {
			must(t, e.dp.SetProtected([]netip.AddrPort{netip.MustParseAddrPort(e.gw4.Addr().String())}))
			return redirecttest.StartHold(t, late, redirecttest.Hold{Address: e.gw4.Addr().String(), OwnNetns: true}), late
		}, true, 0},
		{"a process moved into the workload's cgroup", func(t *testing.T, e *sweepEnv, late redirecttest.Cgroup) (*redirecttest.Holder, redirecttest.Cgroup) {
			holdServer(t, "127.0.0.2:7000")
			h := redirecttest.StartHold(t, e.other, redirecttest.Hold{Address: "127.0.0.2:7000"})
			must(t, os.WriteFile(filepath.Join(late.Dir(), "cgroup.procs"), []byte(strconv.Itoa(h.PID())), 0))
			return h, late
		}, false, testTarget4},
		{"a process that left the connection's network namespace", func(t *testing.T, e *sweepEnv, late redirecttest.Cgroup) (*redirecttest.Holder, redirecttest.Cgroup) {
			return redirecttest.StartHold(t, late, redirecttest.Hold{Address: "127.0.0.2:7000", OwnNetns: true, LeaveNetns: true}), late
		}, false, testTarget4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &sweepEnv{env: setup(t)}
			late := redirecttest.MakeCgroup(t, e.top.Root, e.top.Path+"/late")
			h, cg := tt.start(t, e, late)
			must(t, e.dp.SyncWorkloads(append(e.extra, Workload{CgroupID: late.ID, ID: testLateWorkload, EgressDeny: tt.egressDeny})))
			got, err := e.dp.Sweep()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Err != nil || got[0].Local.String() != h.Local || got[0].WorkloadID != testLateWorkload ||
				got[0].TargetID != tt.target || got[0].CgroupID != cg.ID {
				t.Fatalf("sweep closed %+v, want the connection from %s (workload %d, target %d, cgroup %d)", got, h.Local, testLateWorkload, tt.target, cg.ID)
			}
			if end := h.Ended(5 * time.Second); end != "ECONNABORTED" {
				t.Errorf("connection ended with %q, want ECONNABORTED", end)
			}
		})
	}
}

// TestSweepWildcardListener: a gateway listening on every address gets
// redirected connections at the local address the kernel picked; they
// stay open when their sockets record is gone (the map is an LRU).
func TestSweepWildcardListener(t *testing.T) {
	e := setup(t)
	lc := ListenConfig()
	var gws []netip.AddrPort
	for _, a := range []string{"0.0.0.0:0", "[::]:0"} {
		ln, err := lc.Listen(context.Background(), dialNetwork(a), a)
		must(t, err)
		holdAccepted(t, ln)
		gws = append(gws, netip.MustParseAddrPort(ln.Addr().String()))
	}
	must(t, e.dp.SetListeners(gws[0], gws[1]))
	must(t, e.dp.SetProtected(gws))
	var hs []*redirecttest.Holder
	for _, a := range []string{"127.0.0.2:7000", "[::1]:7001", "[::ffff:127.0.0.2]:7000"} {
		hs = append(hs, redirecttest.StartHold(t, e.agent, redirecttest.Hold{Address: a}))
	}
	var cookie uint64
	var st redirectSocketState
	var cookies []uint64
	for it := e.dp.objs.Sockets.Iterate(); it.Next(&cookie, &st); {
		cookies = append(cookies, cookie)
	}
	if len(cookies) != len(hs) {
		t.Fatalf("%d sockets records, want %d", len(cookies), len(hs))
	}
	for _, c := range cookies {
		must(t, e.dp.objs.Sockets.Delete(c))
	}
	if got, err := e.dp.Sweep(); err != nil || len(got) != 0 {
		t.Errorf("sweep: %+v, %v; want the redirected connections left open", got, err)
	}
	for _, h := range hs {
		if !h.Open() {
			t.Errorf("redirected connection from %s was closed", h.Local)
		}
	}
}

// TestSweepCopiesOnlyTCP: a sweep takes a copy (pidfd_getfd) of a socket
// no dump listed only when it is TCP, and where the kernel refuses copies
// (Yama ptrace_scope 3) it says so once, not at every sweep.
func TestSweepCopiesOnlyTCP(t *testing.T) {
	e := setup(t)
	var files []*os.File
	for range 20 {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		must(t, err)
		files = append(files, os.NewFile(uintptr(fds[0]), "unix"), os.NewFile(uintptr(fds[1]), "unix"))
	}
	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	must(t, err)
	tcp, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0) // unconnected: in no dump
	must(t, err)
	files = append(files, os.NewFile(uintptr(udp), "udp"), os.NewFile(uintptr(tcp), "tcp"))
	cg, err := os.Open(e.agent.Dir())
	must(t, err)
	defer cg.Close()
	cmd := exec.Command("sleep", "60")
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for _, f := range files {
		f.Close()
	}

	copies := 0
	pidfdGetfd = func(pidfd, fd, flags int) (int, error) {
		copies++
		return -1, unix.EPERM
	}
	t.Cleanup(func() { pidfdGetfd = unix.PidfdGetfd })
	for i, want := range []bool{true, false} {
		copies = 0
		got, err := e.dp.Sweep()
		if len(got) != 0 || errors.Is(err, errSocketCopyRefused) != want {
			t.Errorf("sweep %d: %+v, %v; want nothing closed, the refusal reported %v", i, got, err, want)
		}
		if err != nil && strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("sweep %d: %d errors, want one: %v", i, strings.Count(err.Error(), "\n")+1, err)
		}
		if i == 0 && copies != 1 {
			t.Errorf("sweep %d copied %d sockets, want only the TCP one", i, copies)
		}
	}
}
