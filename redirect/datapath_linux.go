package redirect

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Datapath is the loaded, attached and pinned eBPF data path.
type Datapath struct {
	objs    redirectObjects
	links   []link.Link
	watch   *cgroupWatch // nil: new cgroups are classified by the gateway's passes
	pinPath string
	// cgroupRoot is where the programs are attached: Sweep looks for
	// workloads' cgroups below it.
	cgroupRoot string
	logger     *slog.Logger

	mu sync.Mutex // serialises the Sync* reconciliations
}

// attachment names one program and where it hooks in; the pin name is
// stable across versions so a restarted gateway finds its links.
type attachment struct {
	pin    string
	attach ebpf.AttachType
	prog   func(*redirectObjects) *ebpf.Program
}

// sock_create is attached first: on a first install no workload can make
// an MPTCP socket once the connect programs are in place (see
// interlock_sock_create in bpf/redirect.c).
var attachments = []attachment{
	{"link_sock_create", ebpf.AttachCGroupInetSockCreate, func(o *redirectObjects) *ebpf.Program { return o.InterlockSockCreate }},
	{"link_connect4", ebpf.AttachCGroupInet4Connect, func(o *redirectObjects) *ebpf.Program { return o.InterlockConnect4 }},
	{"link_connect6", ebpf.AttachCGroupInet6Connect, func(o *redirectObjects) *ebpf.Program { return o.InterlockConnect6 }},
	{"link_getpeername4", ebpf.AttachCgroupInet4GetPeername, func(o *redirectObjects) *ebpf.Program { return o.InterlockGetpeername4 }},
	{"link_getpeername6", ebpf.AttachCgroupInet6GetPeername, func(o *redirectObjects) *ebpf.Program { return o.InterlockGetpeername6 }},
	{"link_sockops", ebpf.AttachCGroupSockOps, func(o *redirectObjects) *ebpf.Program { return o.InterlockSockops }},
}

// Open loads the programs, adopts or creates the pinned maps, and attaches
// (or, after a restart, atomically replaces) the programs at the cgroup
// root. On return enforcement is in place, by this version's programs even
// where an older version pinned the links: theirs would not know this
// version's maps (guards, for one).
func Open(o Options) (*Datapath, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PinPath == "" || !filepath.IsAbs(o.PinPath) {
		return nil, fmt.Errorf("bpffs folder %q must be an absolute path", o.PinPath)
	}
	if o.CgroupRoot == "" {
		return nil, errors.New("no cgroup v2 root given")
	}
	if err := ProbeFeatures(o.Logger); err != nil {
		return nil, err
	}
	if err := ensurePinFolder(o.PinPath); err != nil {
		return nil, err
	}

	spec, err := loadRedirect()
	if err != nil {
		return nil, fmt.Errorf("loading eBPF spec: %w", err)
	}
	d := &Datapath{pinPath: o.PinPath, cgroupRoot: o.CgroupRoot, logger: o.Logger}
	err = spec.LoadAndAssign(&d.objs, &ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: o.PinPath},
	})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return nil, fmt.Errorf("loading eBPF objects: a map pinned in %s was made by an incompatible version; run `interlock uninstall` first: %w", o.PinPath, err)
	}
	if err != nil {
		return nil, fmt.Errorf("loading eBPF objects: %w", err)
	}

	for _, a := range attachments {
		l, adopted, err := attachOrAdopt(o.CgroupRoot, filepath.Join(o.PinPath, a.pin), a.attach, a.prog(&d.objs))
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("attaching %s: %w", a.pin[len("link_"):], err)
		}
		d.links = append(d.links, l)
		o.Logger.Debug("eBPF program in place", "program", a.pin[len("link_"):], "adopted", adopted, "cgroup", o.CgroupRoot)
	}
	if err := d.openCgroupWatch(o); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// openCgroupWatch attaches the optional cgroup_mkdir program. Where the
// kernel cannot run it, the data path works with the guards alone, and
// the one program an earlier gateway may have pinned is removed, so that
// TracksCgroups tells what the kernel does.
func (d *Datapath) openCgroupWatch(o Options) error {
	var err error
	switch {
	case o.withoutCgroupWatch:
		err = errors.New("left out")
	default:
		if err = mountedAtHierarchyRoot(o.CgroupRoot); err == nil {
			d.watch, err = openCgroupWatch(o.Logger, o.PinPath)
		}
	}
	if err == nil {
		return nil
	}
	o.Logger.Warn("new cgroups are not classified by the kernel when they are made; a new cgroup in a guarded folder is classified by the gateway's next pass, and its connects go through the gateway until then",
		"error", err)
	return removeCgroupWatch(o.PinPath)
}

// TracksCgroups says whether the kernel classifies new cgroups as they
// are made, by the paths SyncExpected wrote (the cgroup_mkdir program is
// attached). Without it only the guards and the gateway's passes do.
func (d *Datapath) TracksCgroups() bool {
	return d.watch != nil
}

// attachOrAdopt replaces the program of a link pinned at pin, whichever
// version pinned it, or attaches a new link and pins it. Replacing goes
// through bpf_link_update, so there is no moment without a program.
func attachOrAdopt(cgroup, pin string, at ebpf.AttachType, prog *ebpf.Program) (link.Link, bool, error) {
	l, err := link.LoadPinnedLink(pin, nil)
	if err == nil {
		if err := l.Update(prog); err != nil {
			l.Close()
			return nil, false, fmt.Errorf("replacing program of pinned link %s: %w", pin, err)
		}
		return l, true, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("loading pinned link %s: %w", pin, err)
	}
	l, err = link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: at, Program: prog})
	if err != nil {
		return nil, false, err
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return nil, false, fmt.Errorf("pinning link (the kernel needs bpf_link support for cgroups): %w", err)
	}
	return l, false, nil
}

// ensurePinFolder makes pinPath a folder on a bpffs mount that only this
// process's user can change, mounting bpffs at its parent when the parent
// is not one yet (as on hosts where nothing has mounted /sys/fs/bpf).
//
// The folder decides whether enforcement survives the gateway: whoever can
// write to it can unpin the links, and then stopping the gateway detaches
// the programs. /sys/fs/bpf is often world-writable (1777), so anyone could
// have made the folder before the gateway first ran; an existing folder is
// only adopted when it is ours (see checkPinFolder), on every Open.
func ensurePinFolder(pinPath string) error {
	parent := filepath.Dir(pinPath)
	if !isBPFFS(parent) {
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return fmt.Errorf("creating bpffs mount point %s: %w", parent, err)
		}
	}
	// Made inside a bpffs (/sys/fs/bpf/a/pins, a missing): on it already.
	if !isBPFFS(parent) {
		// mode=0700: nobody but root can make folders in a bpffs the
		// gateway mounted itself.
		if err := unix.Mount("bpf", parent, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("%s is not on a bpffs and mounting one there failed: %w", parent, err)
		}
	}
	if err := os.Mkdir(pinPath, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating pin folder: %w", err)
	}
	return checkPinFolder(pinPath, os.Geteuid())
}

// checkPinFolder refuses a pin folder that another user could change: it
// must be a real folder (not a symlink), owned by uid, with no group or
// other write bit; and its parent must not let others rename it away —
// owned by root or uid, and either not writable by group and others or
// sticky (like /sys/fs/bpf at 1777, where only an entry's owner may rename
// or remove it).
func checkPinFolder(pinPath string, uid int) error {
	var st unix.Stat_t
	if err := unix.Lstat(pinPath, &st); err != nil {
		return fmt.Errorf("checking pin folder %s: %w", pinPath, err)
	}
	mode := st.Mode
	switch {
	case mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("%w: %s is a symlink; remove it and start the gateway again", ErrUnsafePinFolder, pinPath)
	case mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("%w: %s is not a folder", ErrUnsafePinFolder, pinPath)
	case int(st.Uid) != uid:
		return fmt.Errorf("%w: %s is owned by uid %d, not by the gateway's uid %d (someone else may have made it to unpin the data path); remove it and start the gateway again",
			ErrUnsafePinFolder, pinPath, st.Uid, uid)
	case mode&0o022 != 0:
		return fmt.Errorf("%w: %s has mode %#o, writable by group or others; make it 0700 (chmod 0700 %s)", ErrUnsafePinFolder, pinPath, mode&0o7777, pinPath)
	}
	parent := filepath.Dir(pinPath)
	if err := unix.Stat(parent, &st); err != nil {
		return fmt.Errorf("checking %s: %w", parent, err)
	}
	if st.Uid != 0 && int(st.Uid) != uid {
		return fmt.Errorf("%w: %s, the folder around the pin folder, is owned by uid %d, who could rename the pin folder away", ErrUnsafePinFolder, parent, st.Uid)
	}
	if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
		return fmt.Errorf("%w: %s, the folder around the pin folder, has mode %#o: writable by group or others without the sticky bit, anyone could rename the pin folder away", ErrUnsafePinFolder, parent, st.Mode&0o7777)
	}
	return nil
}

func isBPFFS(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return uint32(st.Type) == uint32(unix.BPF_FS_MAGIC)
}

// ListenConfig makes listeners the data path will redirect to: they carry
// ListenerMark, which only a process with CAP_NET_ADMIN can set.
func ListenConfig() net.ListenConfig {
	return net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, ListenerMark)
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("marking listener (SO_MARK needs CAP_NET_ADMIN): %w", err)
		}
		return nil
	}}
}

// SetListeners tells the kernel where redirected connections go. Both
// listeners must come from ListenConfig: a connect is redirected only while
// a marked socket listens there. A zero v6
// makes redirects of real IPv6 destinations fail closed; v4-mapped ones use
// the IPv4 listener.
func (d *Datapath) SetListeners(v4, v6 netip.AddrPort) error {
	if !v4.Addr().Is4() {
		return fmt.Errorf("listener %s is not IPv4", v4)
	}
	s := redirectSettingsValue{
		Listen4Addr: addrWords(v4.Addr())[3],
		Listen4Port: netPort(v4.Port()),
		Enabled:     1,
		ListenMark:  ListenerMark,
	}
	if v6.IsValid() {
		if !v6.Addr().Is6() || v6.Addr().Is4In6() {
			return fmt.Errorf("listener %s is not IPv6", v6)
		}
		s.Listen6Addr = addrWords(v6.Addr())
		s.Listen6Port = netPort(v6.Port())
	}
	if err := d.objs.Settings.Put(uint32(0), &s); err != nil {
		return fmt.Errorf("writing settings: %w", err)
	}
	return nil
}

// SyncWorkloads makes the workloads map hold exactly ws.
func (d *Datapath) SyncWorkloads(ws []Workload) error {
	want := make(map[uint64]redirectWorkloadValue, len(ws))
	for _, w := range ws {
		v := redirectWorkloadValue{Id: w.ID}
		if w.EgressDeny {
			v.Flags |= workloadEgressDeny
		}
		want[w.CgroupID] = v
	}
	return reconcile(d, d.objs.Workloads, want)
}

// Flag bits of the kernel's maps (bpf/include/interlock.h).
const (
	workloadEgressDeny = 1 // INTERLOCK_WORKLOAD_EGRESS_DENY
	guardEgressDeny    = 1 // INTERLOCK_GUARD_EGRESS_DENY
)

// SyncGuards makes the guards map hold exactly gs. Several guards of one
// parent are merged into the stricter: the lowest watermark, and egress
// denied when any denies it. In a resolution pass, call it after
// SyncWorkloads: a raised watermark stops treating a new cgroup as
// unresolved, which must not happen before the workloads map holds it.
func (d *Datapath) SyncGuards(gs []Guard) error {
	want := make(map[uint64]redirectGuardValue, len(gs))
	for _, g := range gs {
		if g.CgroupID == 0 {
			return errors.New("guard with no cgroup id")
		}
		v, seen := want[g.CgroupID]
		if !seen || g.Watermark < v.Watermark {
			v.Watermark = g.Watermark
		}
		if g.EgressDeny {
			v.Flags |= guardEgressDeny
		}
		want[g.CgroupID] = v
	}
	if limit := d.objs.Guards.MaxEntries(); uint32(len(want)) > limit {
		return fmt.Errorf("guarding %d cgroups: the kernel map holds %d entries", len(want), limit)
	}
	return reconcile(d, d.objs.Guards, want)
}

// SyncExpected makes the expected map hold exactly es, and the folders on
// the way to each (see Expected). A path of 256 bytes or more is left
// out: the kernel never matches it, and the guards cover its cgroup as
// they do on a kernel that cannot classify cgroups at all. The map is
// written whether or not TracksCgroups; it is read only by the
// cgroup_mkdir program.
//
// es must name every path a workload is expected at: from the first call
// on, a cgroup made in a guarded parent at any other path is taken for no
// workload's and goes out directly. Until then (a gateway that never
// calls it) every such cgroup stays unresolved under its guard.
//
// In a resolution pass call it before SyncGuards: a cgroup made at a path
// that is not expected (yet) under a guarded parent is taken for no
// workload's.
//
// A set that cannot be written whole takes the marker out (see
// writeExpected): until a later call succeeds, cgroups made in guarded
// parents stay unresolved, as with the guards alone.
func (d *Datapath) SyncExpected(es []Expected) error {
	err := d.writeExpected(es)
	if err == nil {
		return nil
	}
	if derr := d.objs.Expected.Delete(expectedMarker); derr != nil && !errors.Is(derr, ebpf.ErrKeyNotExist) {
		return errors.Join(err, fmt.Errorf("deleting the expected map's marker: %w", derr))
	}
	return err
}

// expectedMarker is the empty path's entry: the paths the map holds are
// all the paths there are, so a cgroup made in a guarded parent elsewhere
// is no workload's.
var expectedMarker = redirectExpectedKey{}

// writeExpected makes the expected map hold es and the marker. Without the
// marker in place (the first call, or after a failed one) the paths go in
// first: a marker written before them would settle a workload's cgroup
// made in between.
func (d *Datapath) writeExpected(es []Expected) error {
	want, err := expectedEntries(es)
	if err != nil {
		return err
	}
	if limit := d.objs.Expected.MaxEntries(); uint32(len(want)) >= limit {
		return fmt.Errorf("expecting %d cgroup paths: the kernel map holds %d entries", len(want), limit-1)
	}
	var v redirectExpectedValue
	if err := d.objs.Expected.Lookup(expectedMarker, &v); errors.Is(err, ebpf.ErrKeyNotExist) {
		if err := reconcile(d, d.objs.Expected, want); err != nil {
			return err
		}
	}
	want[expectedMarker] = redirectExpectedValue{}
	return reconcile(d, d.objs.Expected, want)
}

// SetGatewayCgroup names the gateway's own cgroup (its id): the kernel
// never takes the gateway's connects for an unresolved cgroup's, however
// new its cgroup is next to a guard's watermark (a gateway unit restarted
// in the slice of a workload's unit). It replaces the previous gateway's.
// Call it right after Open, before the gateway dials anything.
func (d *Datapath) SetGatewayCgroup(id uint64) error {
	if id == 0 {
		return errors.New("gateway cgroup id 0")
	}
	return reconcile(d, d.objs.Gateways, map[uint64]uint8{id: 1})
}

// SyncTargets makes the targets map hold exactly ts.
func (d *Datapath) SyncTargets(ts []Target) error {
	want := make(map[redirectTargetKey]redirectTargetValue, len(ts))
	for _, t := range ts {
		if !t.Prefix.IsValid() || t.Port == 0 {
			return fmt.Errorf("target %d: invalid destination %s port %d", t.ID, t.Prefix, t.Port)
		}
		want[targetKey(t)] = redirectTargetValue{Id: t.ID}
	}
	return reconcile(d, d.objs.Targets, want)
}

// SyncEgress makes the egress allow-list hold exactly es.
func (d *Datapath) SyncEgress(es []EgressAllow) error {
	want := make(map[redirectEgressKey]uint32, len(es))
	for _, e := range es {
		if !e.Prefix.IsValid() {
			return fmt.Errorf("egress allow for workload %d: invalid prefix", e.WorkloadID)
		}
		want[egressKey(e)] = 1
	}
	return reconcile(d, d.objs.Egress, want)
}

// SetProtected makes addrs the gateway's protected listeners, replacing
// the previous set: workloads' connects to them fail with EPERM whatever
// their egress allows, while processes outside workloads are unaffected.
// An unspecified address (0.0.0.0, ::) protects every address on its port;
// IPv4 addresses cover their v4-mapped form too. A connect to a target is
// still redirected to a protected listener: the kernel checks the address
// the process dialled, before rewriting it.
func (d *Datapath) SetProtected(addrs []netip.AddrPort) error {
	want, err := protectedKeys(addrs)
	if err != nil {
		return err
	}
	if limit := d.objs.Protected.MaxEntries(); uint32(len(want)) > limit {
		return fmt.Errorf("protecting %d addresses: the kernel map holds %d entries", len(addrs), limit)
	}
	return reconcile(d, d.objs.Protected, want)
}

// reconcile writes every wanted entry, then deletes the ones not wanted, so
// that at no point an entry that stays is missing.
func reconcile[K comparable, V any](d *Datapath, m *ebpf.Map, want map[K]V) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, v := range want {
		if err := m.Put(k, v); err != nil {
			return fmt.Errorf("updating %s map: %w", m.String(), err)
		}
	}
	var stale []K
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading %s map: %w", m.String(), err)
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("deleting from %s map: %w", m.String(), err)
		}
	}
	return nil
}

// OriginalDestination returns and consumes the kernel's record of an
// accepted connection: whom the client dialled and who the client is.
func (d *Datapath) OriginalDestination(conn net.Conn) (Origin, error) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return Origin{}, fmt.Errorf("%w: not a TCP connection", ErrNoOrigin)
	}
	client, err := netip.ParseAddrPort(tc.RemoteAddr().String())
	if err != nil {
		return Origin{}, fmt.Errorf("reading client address: %w", err)
	}
	netns, err := netnsCookie(tc)
	if err != nil {
		return Origin{}, err
	}
	key := originKey(netns, client)
	var o redirectOrigin
	if err := d.objs.Origins.Lookup(&key, &o); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Origin{}, fmt.Errorf("%w (client %s)", ErrNoOrigin, client)
		}
		return Origin{}, fmt.Errorf("looking up origin: %w", err)
	}
	// The record is consumed: a later connection reusing the port gets
	// its own. The sockets entry stays for getpeername until close.
	_ = d.objs.Origins.Delete(&key)
	return o.export(), nil
}

// netnsCookie is the network namespace cookie of the socket, the same
// value bpf_get_netns_cookie gives the programs.
func netnsCookie(c *net.TCPConn) (uint64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("reading socket: %w", err)
	}
	var cookie uint64
	var serr error
	err = rc.Control(func(fd uintptr) {
		cookie, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("reading network namespace cookie (SO_NETNS_COOKIE, Linux 5.14): %w", err)
	}
	return cookie, nil
}

// Counters sums the per-CPU connect counters.
func (d *Datapath) Counters() ([]Counter, error) {
	return readCounters(d.objs.Counters)
}

func readCounters(m *ebpf.Map) ([]Counter, error) {
	var out []Counter
	var k redirectCounterKey
	var vs []redirectCounterValue
	it := m.Iterate()
	for it.Next(&k, &vs) {
		c := Counter{WorkloadID: k.Workload, TargetID: k.Target}
		for _, v := range vs {
			c.Redirected += v.Redirected
			c.Allowed += v.Allowed
			c.Denied += v.Denied
		}
		out = append(out, c)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading counters: %w", err)
	}
	return out, nil
}

// Close releases this process's handles. Pinned links and maps stay:
// enforcement continues without the process.
func (d *Datapath) Close() error {
	var errs []error
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	d.links = nil
	if d.watch != nil {
		errs = append(errs, d.watch.Close())
		d.watch = nil
	}
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}
