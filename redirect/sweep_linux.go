package redirect

import (
	"errors"
	"fmt"
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
// still carry data: its data path decision was made at connect(). A
// connection its owner has shut down or closed (FIN_WAIT1, FIN_WAIT2,
// LAST_ACK, CLOSING) still sends what it had queued, and until the peer
// closes too it still receives.
const connStates = 1<<tcpEstablished | 1<<tcpSynSent | 1<<tcpCloseWait |
	1<<tcpFinWait1 | 1<<tcpFinWait2 | 1<<tcpLastAck | 1<<tcpClosing

// Sweep closes the TCP connections that workloads' processes hold open to
// a destination the data path would not let them reach directly now: a
// target (whose connects go through the gateway), or an address their
// egress rules or the gateway's protected ports refuse. The data path
// decides at connect(), so without a sweep a connection made before the
// programs were attached, before its cgroup became a workload's, before
// its process moved into a workload's cgroup, or before its destination
// became a target (a new target, a name that now resolves to it) would go
// on, unseen by the gateway.
//
// It decides each socket with the kernel's own maps, as the connect
// programs would: a socket belongs to the deepest workload its cgroup is
// in, or, made elsewhere, to the workload of a process that holds it. It
// leaves alone connections the data path sent to the gateway, connections
// a workload accepted (their local port is one listened on), and sockets
// in a cgroup that may be another workload's the gateway has not resolved
// yet (newer than a guarded parent's watermark). It looks in the
// gateway's own network namespace, in each one a workload's process is
// in, and in the one of each socket a workload's process holds. The
// kernel aborts a socket as `ss -K` does: the peer gets a reset, the owner
// ECONNABORTED; that needs a kernel built with CONFIG_INET_DIAG_DESTROY
// (otherwise every Closed carries EOPNOTSUPP).
func (d *Datapath) Sweep() ([]Closed, error) { return d.sweep(true) }

// SweepReport finds what Sweep would close and leaves it open: each
// Closed it returns has Reported set. For a first roll-out, where an
// operator wants to see what enforcing would cut before it does.
func (d *Datapath) SweepReport() ([]Closed, error) { return d.sweep(false) }

func (d *Datapath) sweep(abort bool) ([]Closed, error) {
	sweepMu.Lock()
	defer sweepMu.Unlock()
	sc, err := d.sweepScope()
	if err != nil {
		return nil, err
	}
	defer sc.close()
	if len(sc.cgroups) == 0 {
		return []Closed{}, nil
	}
	var out []Closed
	var errs []error
	seen := map[uint64]bool{} // inodes of the sockets the dumps listed
	sweep := func(ns netnsHandle) {
		closed, err := d.sweepNetns(ns, sc, seen, abort)
		out = append(out, closed...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range sc.netns {
		sweep(ns)
	}
	// A socket lives in the namespace it was made in, which its process
	// may have left (unshare, setns) for one where none of its sockets is.
	strays, err := sc.strayNetns(seen)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range strays {
		sweep(ns)
	}
	return out, errors.Join(errs...)
}

// netnsHandle is a network namespace to sweep: f holds it open (nil for
// the gateway's own), so it is the namespace ino names even when the
// process it was found through has ended and its pid been reused.
type netnsHandle struct {
	ino uint64
	f   *os.File
}

// heldSocket is a socket a workload's process holds, and where: fd in
// process pid, whose cgroup is cgroupID.
type heldSocket struct {
	workload redirectWorkloadValue
	cgroupID uint64
	pid, fd  int
}

// scope is what a sweep looks at: every cgroup below the attach point
// that the programs decide as a workload's, the sockets those cgroups'
// processes hold (by inode), and the network namespaces to list.
type scope struct {
	cgroups map[uint64]redirectWorkloadValue
	held    map[uint64]heldSocket
	netns   []netnsHandle // the gateway's own first
	known   map[uint64]bool
}

func (sc *scope) close() {
	for _, ns := range sc.netns {
		if ns.f != nil {
			ns.f.Close()
		}
	}
}

// addNetns keeps f when it is a namespace not listed yet, and closes it
// otherwise.
func (sc *scope) addNetns(f *os.File) (netnsHandle, bool) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || sc.known[st.Ino] {
		f.Close()
		return netnsHandle{}, false
	}
	sc.known[st.Ino] = true
	ns := netnsHandle{ino: st.Ino, f: f}
	sc.netns = append(sc.netns, ns)
	return ns, true
}

func (d *Datapath) sweepScope() (*scope, error) {
	workloads := map[uint64]redirectWorkloadValue{}
	var id uint64
	var w redirectWorkloadValue
	it := d.objs.Workloads.Iterate()
	for it.Next(&id, &w) {
		workloads[id] = w
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading the workloads map: %w", err)
	}
	guards := map[uint64]redirectGuardValue{}
	var g redirectGuardValue
	it = d.objs.Guards.Iterate()
	for it.Next(&id, &g) {
		guards[id] = g
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading the guards map: %w", err)
	}

	self, err := netnsInode("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("reading the gateway's network namespace: %w", err)
	}
	sc := &scope{
		cgroups: map[uint64]redirectWorkloadValue{},
		held:    map[uint64]heldSocket{},
		netns:   []netnsHandle{{ino: self}},
		known:   map[uint64]bool{self: true},
	}
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
		} else if g, ok := guards[parent]; ok && in != nil && id > g.Watermark && !d.settled(id) {
			// As find_caller: a child of a guarded parent made since
			// the gateway's last pass may be a workload's the gateway
			// has yet to resolve; the programs send its connects to
			// the gateway, which decides; so does the next sweep.
			unsure = true
		}
		if in != nil && !unsure {
			sc.cgroups[id] = *in
			sc.addProcs(dir, id, *in)
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
	return sc, nil
}

func (d *Datapath) settled(id uint64) bool {
	var b uint8
	return d.objs.Settled.Lookup(id, &b) == nil
}

// addProcs records the network namespaces of the processes in a cgroup,
// and the sockets they hold.
func (sc *scope) addProcs(dir string, cgroupID uint64, w redirectWorkloadValue) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		proc := "/proc/" + f
		if ns, err := os.Open(proc + "/ns/net"); err == nil {
			sc.addNetns(ns)
		}
		sc.addHeld(proc+"/fd", heldSocket{workload: w, cgroupID: cgroupID, pid: pid})
	}
}

// addHeld records the sockets in a process's fd folder. Links are read
// relative to the open folder, unsorted: a sweep reads every descriptor
// of every workload process, and /proc path walks are most of its cost.
func (sc *scope) addHeld(dir string, h heldSocket) {
	d, err := os.Open(dir)
	if err != nil {
		return // the process ended
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	buf := make([]byte, 64)
	for _, name := range names {
		n, err := unix.Readlinkat(int(d.Fd()), name, buf)
		if err != nil {
			continue
		}
		s, ok := strings.CutPrefix(string(buf[:n]), "socket:[")
		if !ok {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
		if err != nil {
			continue
		}
		if _, dup := sc.held[ino]; dup {
			continue
		}
		if h.fd, err = strconv.Atoi(name); err == nil {
			sc.held[ino] = h
		}
	}
}

// strayNetns finds the network namespaces of the TCP sockets workloads'
// processes hold that no dump listed (seen), by taking a copy of each
// (pidfd_getfd) and asking its namespace (SIOCGSKNS). Sockets that are
// not TCP (Unix, UDP: most of a process's) are told by name, with no
// copy, and a TCP socket whose namespace an earlier sweep learnt needs
// none while that namespace is listed anyway: every sweep would otherwise
// copy each of them, and fail on each where ptrace access is refused.
func (sc *scope) strayNetns(seen map[uint64]bool) ([]netnsHandle, error) {
	var out []netnsHandle
	var errs []error
	pidfds := map[int]int{}
	defer func() {
		for _, fd := range pidfds {
			unix.Close(fd)
		}
	}()
	for ino := range socketNetnsCache {
		if _, ok := sc.held[ino]; !ok {
			delete(socketNetnsCache, ino) // closed: its inode may be reused
		}
	}
	var denied []uint64
	deniedPids := map[int]bool{}
	for ino, h := range sc.held {
		if seen[ino] {
			continue
		}
		if ns, ok := socketNetnsCache[ino]; ok && (ns == notTCP || ns == deniedNetns || sc.known[ns]) {
			continue // a refusal is reported once, the first time
		}
		if !mayBeTCP(h.pid, h.fd) {
			socketNetnsCache[ino] = notTCP
			continue
		}
		pidfd, ok := pidfds[h.pid]
		if !ok {
			var err error
			if pidfd, err = unix.PidfdOpen(h.pid, 0); err != nil {
				pidfd = -1
				if !errors.Is(err, unix.ESRCH) {
					errs = append(errs, fmt.Errorf("opening process %d: %w", h.pid, err))
				}
			}
			pidfds[h.pid] = pidfd
		}
		if pidfd < 0 {
			continue
		}
		f, err := socketNetns(pidfd, h.fd, ino)
		if errors.Is(err, errNotTCP) {
			socketNetnsCache[ino] = notTCP
			continue
		}
		if errors.Is(err, errNotHeldTCP) {
			continue
		}
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			socketNetnsCache[ino] = deniedNetns
			denied = append(denied, ino)
			deniedPids[h.pid] = true
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("finding the network namespace of socket %d of process %d: %w", ino, h.pid, err))
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) == nil {
			socketNetnsCache[ino] = st.Ino
		}
		if ns, ok := sc.addNetns(f); ok {
			out = append(out, ns)
		}
	}
	if len(denied) > 0 {
		errs = append(errs, fmt.Errorf("%w: %d TCP sockets of %d workload processes (the first: socket %d); connections they hold in a network namespace no workload process is in are not swept",
			errSocketCopyRefused, len(denied), len(deniedPids), denied[0]))
	}
	return out, errors.Join(errs...)
}

// errSocketCopyRefused: the kernel refused the gateway a copy of a
// workload's socket (pidfd_getfd needs ptrace access: Yama's
// ptrace_scope 3, or an LSM, refuses it even to root).
var errSocketCopyRefused = errors.New("taking a copy of a socket to find its network namespace is refused (pidfd_getfd: Yama ptrace_scope, or an LSM)")

// socketNetnsCache is what sweeps learnt of the sockets workloads'
// processes hold that no dump listed (socket inode → the inode of its
// network namespace, or notTCP, or deniedNetns when a copy was refused),
// kept while a workload's process holds the socket: a socket never
// changes protocol or namespace. Guarded by sweepMu.
var socketNetnsCache = map[uint64]uint64{}

// Values of socketNetnsCache that no namespace's inode is (nsfs numbers
// its inodes from 0xF0000000).
const (
	deniedNetns = 1
	notTCP      = 2
)

// pidfdGetfd is unix.PidfdGetfd; a test replaces it to see a refusal.
var pidfdGetfd = unix.PidfdGetfd

// mayBeTCP tells from the name sockfs gives a socket ("TCP", "TCPv6",
// "UNIX-STREAM", "UDP"...) whether fd of process pid may be a TCP socket,
// without a copy of it. When it cannot tell, it says yes.
func mayBeTCP(pid, fd int) bool {
	buf := make([]byte, 32)
	n, err := unix.Getxattr("/proc/"+strconv.Itoa(pid)+"/fd/"+strconv.Itoa(fd), "system.sockprotoname", buf)
	if errors.Is(err, unix.ENOENT) {
		return false // the process ended, or closed the descriptor
	}
	if err != nil {
		return true
	}
	name := strings.TrimRight(string(buf[:n]), "\x00")
	return name == "TCP" || name == "TCPv6"
}

// errNotHeldTCP: the descriptor no longer holds the socket (closed, or
// the process ended), or the socket is not TCP.
var errNotHeldTCP = errors.New("not a TCP socket the process holds")

// errNotTCP: the socket ino is not TCP (MPTCP, SCTP).
var errNotTCP = fmt.Errorf("%w: not TCP", errNotHeldTCP)

// socketNetns opens the network namespace of the TCP socket ino, which
// fd of the process pidfd names.
func socketNetns(pidfd, fd int, ino uint64) (*os.File, error) {
	sfd, err := pidfdGetfd(pidfd, fd, 0)
	if err != nil {
		if errors.Is(err, unix.EBADF) || errors.Is(err, unix.ESRCH) {
			return nil, errNotHeldTCP
		}
		return nil, err
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return nil, err
	}
	if st.Ino != ino {
		return nil, errNotHeldTCP // the descriptor was reused
	}
	if p, err := unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || p != unix.IPPROTO_TCP {
		return nil, errNotTCP
	}
	nsfd, err := unix.IoctlRetInt(sfd, unix.SIOCGSKNS)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(nsfd), fmt.Sprintf("network namespace of socket %d", ino)), nil
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

// sweepNetns sweeps one network namespace, noting in seen the inodes of
// the sockets it lists.
func (d *Datapath) sweepNetns(ns netnsHandle, sc *scope, seen map[uint64]bool, abort bool) ([]Closed, error) {
	var out []Closed
	run := func() error {
		s, err := openSockDiag()
		if err != nil {
			return err
		}
		defer s.Close()
		out, err = d.sweepSockets(s, sc, seen, ns.f == nil, abort)
		return err
	}
	if ns.f == nil {
		return out, run()
	}
	return out, inNetns(ns.f, run)
}

// listener is a listening socket's address (unmapped); an unspecified
// address stands for every address of its port.
type listener struct {
	addr netip.Addr
	port uint16
}

// sweepSockets sweeps the namespace s lists; own says it is the
// gateway's.
func (d *Datapath) sweepSockets(s *sockDiag, sc *scope, seen map[uint64]bool, own, abort bool) ([]Closed, error) {
	listening := map[listener]bool{}
	var conns []diagSocket
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		ls, err := s.dump(family, 1<<tcpListen)
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			listening[listener{l.local.Addr().Unmap(), l.local.Port()}] = true
			seen[uint64(l.inode)] = true
		}
		cs, err := s.dump(family, connStates)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			seen[uint64(c.inode)] = true
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
			if c.inode == 0 {
				continue // a FIN_WAIT2 timewait socket: closed, no owner
			}
			return out, errors.New("the kernel does not tell sockets' cgroups (INET_DIAG_CGROUP_ID)")
		}
		cgroupID := c.cgroupID
		w, ok := sc.cgroups[cgroupID]
		if !ok {
			// Made outside, held by a workload's process (one moved
			// into the workload's cgroup): the workload's now.
			h, held := sc.held[uint64(c.inode)]
			if !held {
				continue
			}
			w, cgroupID = h.workload, h.cgroupID
		}
		local := c.local.Addr().Unmap()
		if listening[listener{local, c.local.Port()}] || listening[listener{netip.IPv4Unspecified(), c.local.Port()}] ||
			listening[listener{netip.IPv6Unspecified(), c.local.Port()}] {
			continue // accepted: egress and targets decide connects
		}
		target, refuse, err := d.judge(c, w, &settings, own)
		if err != nil {
			return out, err
		}
		if !refuse {
			continue
		}
		cl := Closed{WorkloadID: w.Id, TargetID: target, CgroupID: cgroupID, UID: c.uid,
			Local: unmapPort(c.local), Remote: unmapPort(c.remote)}
		if !abort {
			cl.Reported = true
		} else if cl.Err = s.destroy(c); cl.Err != nil {
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
// the gateway may reach), for the gateway's protected ports, and for an
// address the workload's egress refuses; connections the data path sent
// to the gateway are left. own says the socket is in the gateway's
// network namespace: elsewhere the listeners' addresses are another
// server's.
func (d *Datapath) judge(c *diagSocket, w redirectWorkloadValue, s *redirectSettingsValue, own bool) (target uint32, refuse bool, err error) {
	remote := unmapPort(c.remote)
	words := addrWords(remote.Addr())
	port := netPort(remote.Port())

	// The gateway's listeners: redirected connections end there. A
	// listener on every address (0.0.0.0, ::) gets them at the address
	// the kernel picks for the unspecified one it was sent to: the
	// connection's own local address (resolve_unspecified's rules). The
	// sockets record does not cover this: the LRU map may have let it go.
	if own && s.Enabled != 0 {
		atSelf := remote.Addr() == c.local.Addr().Unmap()
		if port == s.Listen4Port && remote.Addr().Is4() && (words[3] == s.Listen4Addr || s.Listen4Addr == 0 && atSelf) {
			return 0, false, nil
		}
		if s.Listen6Port != 0 && port == s.Listen6Port && remote.Addr().Is6() &&
			(words == s.Listen6Addr || s.Listen6Addr == [4]uint32{} && atSelf) {
			return 0, false, nil
		}
	}
	var st redirectSocketState
	if err := d.objs.Sockets.Lookup(c.cookie, &st); err == nil {
		return 0, false, nil // the data path sent it to the gateway
	}
	// Before targets and egress, as is_protected: no egress rule opens
	// the gateway's own ports, nor a port it protects on every address.
	var b uint8
	for _, k := range []redirectProtectedKey{{Addr: words, Port: port}, {Port: port}} {
		if err := d.objs.Protected.Lookup(&k, &b); err == nil {
			return 0, true, nil
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
