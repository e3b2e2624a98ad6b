package redirect

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// sweepMu serialises sweeps: the gateway starts one after each change of
// workloads or targets, and two at once would only find the same sockets.
var sweepMu sync.Mutex

// connStates are the states of a connection a workload made that can
// still carry data: its data path decision was made at connect().
const connStates = 1<<tcpEstablished | 1<<tcpSynSent | 1<<tcpCloseWait

// Sweep closes the TCP connections that workloads' processes hold open to
// a destination the data path would not let them reach directly now: a
// target (whose connects go through the gateway), or an address their
// egress rules refuse. The data path decides at connect(), so without a
// sweep a connection made before the programs were attached, before its
// cgroup became a workload's, or before its destination became a target
// (a new target, a name that now resolves to it) would go on, unseen by
// the gateway.
//
// It decides each socket with the kernel's own maps, as the connect
// programs would: a socket belongs to the deepest workload its cgroup is
// in. It leaves alone connections to the gateway (redirected ones, and any
// to its protected addresses), connections a workload accepted (their
// local port is one it listens on), and sockets in a cgroup that may be
// another workload's the gateway has not resolved yet (below a guarded
// parent). It looks in the gateway's own network namespace and in each
// one a workload's process is in. The kernel aborts a socket as `ss -K`
// does: the peer gets a reset, the owner ECONNABORTED; that needs a
// kernel built with CONFIG_INET_DIAG_DESTROY (otherwise every Closed
// carries EOPNOTSUPP).
func (d *Datapath) Sweep() ([]Closed, error) {
	sweepMu.Lock()
	defer sweepMu.Unlock()
	cgroups, netns, err := d.workloadCgroups()
	if err != nil {
		return nil, err
	}
	if len(cgroups) == 0 {
		return nil, nil
	}
	var out []Closed
	var errs []error
	for _, paths := range netns {
		closed, err := d.sweepNetns(paths, cgroups)
		out = append(out, closed...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// workloadCgroups maps every cgroup below the attach point that the
// programs decide as a workload's to that workload, and lists the network
// namespaces those cgroups' processes are in (by inode, with the paths to
// reach each: the gateway's own first, then /proc/PID/ns/net of their
// processes, "" meaning the gateway's own).
func (d *Datapath) workloadCgroups() (map[uint64]redirectWorkloadValue, map[uint64][]string, error) {
	workloads := map[uint64]redirectWorkloadValue{}
	var id uint64
	var w redirectWorkloadValue
	it := d.objs.Workloads.Iterate()
	for it.Next(&id, &w) {
		workloads[id] = w
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading the workloads map: %w", err)
	}
	guarded := map[uint64]bool{}
	var g redirectGuardValue
	it = d.objs.Guards.Iterate()
	for it.Next(&id, &g) {
		guarded[id] = true
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading the guards map: %w", err)
	}

	self, err := netnsInode("/proc/thread-self/ns/net")
	if err != nil {
		return nil, nil, fmt.Errorf("reading the gateway's network namespace: %w", err)
	}
	netns := map[uint64][]string{self: {""}}
	out := map[uint64]redirectWorkloadValue{}
	var walk func(dir string, parent uint64, in *redirectWorkloadValue, unsure bool)
	walk = func(dir string, parent uint64, in *redirectWorkloadValue, unsure bool) {
		id, err := cgroupDirID(dir)
		if err != nil {
			return // removed while we looked
		}
		// The root (id 1) is never a workload (find_caller starts
		// below it).
		if v, ok := workloads[id]; ok && id != 1 {
			in, unsure = &v, false
		} else if in != nil && guarded[parent] {
			// A child of a guarded parent that the map does not
			// hold may be a workload's the gateway has yet to
			// resolve: the programs send its connects to the
			// gateway, which decides; so does the next sweep.
			unsure = true
		}
		if in != nil && !unsure {
			out[id] = *in
			addNetns(netns, dir)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.IsDir() {
				walk(filepath.Join(dir, e.Name()), id, in, unsure)
			}
		}
	}
	walk(d.cgroupRoot, 0, nil, false)
	return out, netns, nil
}

// addNetns records the network namespaces of the processes in a cgroup.
func addNetns(netns map[uint64][]string, dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if _, err := strconv.ParseUint(f, 10, 32); err != nil {
			continue
		}
		path := "/proc/" + f + "/ns/net"
		ino, err := netnsInode(path)
		if err != nil {
			continue // the process ended
		}
		if ps := netns[ino]; len(ps) < 4 {
			// A few ways in, in case the first process ends
			// before the sweep gets there.
			netns[ino] = append(ps, path)
		}
	}
}

func netnsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// cgroupDirID is a cgroup v2 folder's id, as bpf_get_current_cgroup_id
// gives it: the kernfs node id the file handle carries, which is also the
// folder's inode number on 64-bit kernels.
func cgroupDirID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// sweepNetns sweeps one network namespace, reached through the first of
// paths that still opens ("" is the gateway's own).
func (d *Datapath) sweepNetns(paths []string, cgroups map[uint64]redirectWorkloadValue) ([]Closed, error) {
	var out []Closed
	run := func() error {
		s, err := openSockDiag()
		if err != nil {
			return err
		}
		defer s.Close()
		out, err = d.sweepSockets(s, cgroups)
		return err
	}
	var err error
	for _, p := range paths {
		if p == "" {
			return out, run()
		}
		if err = inNetns(p, run); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return out, err
		}
	}
	return out, err
}

// listener is a listening socket's address (unmapped); an unspecified
// address stands for every address of its port.
type listener struct {
	addr netip.Addr
	port uint16
}

func (d *Datapath) sweepSockets(s *sockDiag, cgroups map[uint64]redirectWorkloadValue) ([]Closed, error) {
	listening := map[listener]bool{}
	var conns []diagSocket
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		ls, err := s.dump(family, 1<<tcpListen)
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			listening[listener{l.local.Addr().Unmap(), l.local.Port()}] = true
		}
		cs, err := s.dump(family, connStates)
		if err != nil {
			return nil, err
		}
		conns = append(conns, cs...)
	}
	var settings redirectSettingsValue
	if err := d.objs.Settings.Lookup(uint32(0), &settings); err != nil {
		return nil, fmt.Errorf("reading the settings map: %w", err)
	}
	var out []Closed
	for i := range conns {
		c := &conns[i]
		if !c.hasCG {
			return out, errors.New("the kernel does not tell sockets' cgroups (INET_DIAG_CGROUP_ID)")
		}
		w, ok := cgroups[c.cgroupID]
		if !ok {
			continue
		}
		local := c.local.Addr().Unmap()
		if listening[listener{local, c.local.Port()}] || listening[listener{netip.IPv4Unspecified(), c.local.Port()}] ||
			listening[listener{netip.IPv6Unspecified(), c.local.Port()}] {
			continue // accepted: egress and targets decide connects
		}
		target, refuse, err := d.judge(c, w, &settings)
		if err != nil {
			return out, err
		}
		if !refuse {
			continue
		}
		cl := Closed{WorkloadID: w.Id, TargetID: target, CgroupID: c.cgroupID, UID: c.uid,
			Local: unmapPort(c.local), Remote: unmapPort(c.remote)}
		if cl.Err = s.destroy(c); cl.Err != nil {
			cl.Err = fmt.Errorf("closing the connection: %w", cl.Err)
		}
		out = append(out, cl)
	}
	return out, nil
}

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// judge decides a workload's open connection as the connect programs
// would decide its connect now: refuse is true for a target (which only
// the gateway may reach) and for an address the workload's egress
// refuses; connections to the gateway itself are left.
func (d *Datapath) judge(c *diagSocket, w redirectWorkloadValue, s *redirectSettingsValue) (target uint32, refuse bool, err error) {
	remote := unmapPort(c.remote)
	words := addrWords(remote.Addr())
	port := netPort(remote.Port())

	// The gateway's listeners: redirected connections end there.
	if s.Enabled != 0 {
		if port == s.Listen4Port && remote.Addr().Is4() && words[3] == s.Listen4Addr {
			return 0, false, nil
		}
		if s.Listen6Port != 0 && port == s.Listen6Port && words == s.Listen6Addr {
			return 0, false, nil
		}
	}
	var st redirectSocketState
	if err := d.objs.Sockets.Lookup(c.cookie, &st); err == nil {
		return 0, false, nil // the data path sent it to the gateway
	}
	var b uint8
	for _, k := range []redirectProtectedKey{{Addr: words, Port: port}, {Port: port}} {
		if err := d.objs.Protected.Lookup(&k, &b); err == nil {
			return 0, false, nil
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, false, fmt.Errorf("reading the protected map: %w", err)
		}
	}

	var tv redirectTargetValue
	tk := redirectTargetKey{Prefixlen: 32 + 128, Port: port, Addr: words}
	if err := d.objs.Targets.Lookup(&tk, &tv); err == nil {
		return tv.Id, true, nil
	} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, false, fmt.Errorf("reading the targets map: %w", err)
	}
	if w.Flags&workloadEgressDeny == 0 {
		return 0, false, nil
	}
	var allowed uint32
	for _, p := range []uint16{port, 0} {
		ek := redirectEgressKey{Prefixlen: 64 + 128, Workload: w.Id, Port: p, Addr: words}
		if err := d.objs.Egress.Lookup(&ek, &allowed); err == nil {
			return 0, false, nil
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, false, fmt.Errorf("reading the egress map: %w", err)
		}
	}
	return 0, true, nil
}
