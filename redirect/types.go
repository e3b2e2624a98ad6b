package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
)

// DefaultPinPath is the bpffs folder everything is pinned under unless the
// configuration names another.
const DefaultPinPath = "/sys/fs/bpf/interlock"

// ListenerMark is the SO_MARK the gateway's listeners carry. The kernel
// redirects a connect only when a socket with this mark listens on the
// redirect address, so while the gateway is down connects fail with EPERM
// and no other local process can bind the port to receive agents' traffic
// (setting a mark needs CAP_NET_ADMIN). Accepted connections inherit it.
const ListenerMark = 0x494c4b00

var (
	// ErrNoOrigin: the kernel holds no record for the connection.
	ErrNoOrigin = errors.New("no kernel record for this connection")
	// ErrUnsupported: the kernel cannot run the data path.
	ErrUnsupported = errors.New("kernel lacks a required eBPF feature")
	// ErrNotInstalled: nothing is pinned at the folder.
	ErrNotInstalled = errors.New("interlock data path is not installed")
	// ErrUnsafePinFolder: the bpffs pin folder, or the folder it is in,
	// could be changed by another user, who could then unpin the data
	// path; Open refuses to use it.
	ErrUnsafePinFolder = errors.New("pin folder is not safe")
)

// UnresolvedWorkload is the workload id an Origin or Counter carries for a
// connect from a cgroup created under a guarded parent since the gateway's
// last resolution pass (see Guard): it may be a workload's new cgroup or no
// workload's, and the gateway resolves it itself from Origin.CgroupID.
const UnresolvedWorkload uint32 = 0xffffffff

// Origin is what the kernel recorded about a redirected connection.
type Origin struct {
	Destination netip.AddrPort // what the client dialled (IPv4 unmapped)
	// WorkloadID is the caller's workload, or UnresolvedWorkload: then the
	// gateway finds the workload (if any) of CgroupID itself.
	WorkloadID uint32
	// TargetID is the target dialled. It is 0 only with
	// UnresolvedWorkload, for a destination that is not a target: such a
	// connect is redirected whatever it dials, so that the gateway can
	// apply the egress rules of the workload it turns out to be (or relay
	// it unchanged for a process that is no workload's).
	TargetID uint32
	PID      uint32
	UID      uint32
	CgroupID uint64
}

// Workload is one cgroup bound to a workload in the kernel map.
type Workload struct {
	CgroupID   uint64
	ID         uint32
	EgressDeny bool // destinations that are not targets are refused unless allowed
}

// Guard closes the gap between a unit's restart and the gateway's next
// resolution pass. systemd gives a restarted unit a new cgroup with a new
// id, and the kernel matches workloads by id; cgroup ids only grow. A guard
// on the parent folder of a workload's cgroup (CgroupID) with Watermark =
// the highest id among that parent's children at the start of the pass
// makes every child created since "unresolved": unless a workload in the
// map lies deeper, its connects, to targets and to anything else, go to the
// gateway with WorkloadID UnresolvedWorkload. While no gateway listens, a
// workload that holds the guarded parent decides as usual; without one,
// targets are refused and other destinations pass, or are refused when
// EgressDeny. A guard does nothing for the parent's own processes.
type Guard struct {
	CgroupID  uint64 // the guarded parent (the root may be guarded)
	Watermark uint64 // children with a higher id are unresolved
	// EgressDeny refuses an unresolved child's connects to destinations
	// that are not targets while no gateway listens: set it when a
	// workload under the parent denies egress by default.
	EgressDeny bool
}

// Expected is a cgroup path the gateway expects a workload's cgroup at (a
// unit's, made again when the unit restarts), or a folder on the way to
// one. Where the kernel can run the cgroup_mkdir program (see
// Datapath.TracksCgroups), it classifies every cgroup v2 folder the moment
// it is made, before any process can be in it: at a Workload path the new
// cgroup's id goes into the workloads map at once, so even its first
// connect is decided as the workload's; at a folder's path nothing is
// recorded (the folder stays unresolved under its guard, and its children
// are yet to come); any other cgroup made in a guarded parent is recorded
// as no workload's, and its connects go out directly instead of through
// the gateway.
type Expected struct {
	Path       string // below the cgroup v2 root, e.g. "/system.slice/agent.service"
	WorkloadID uint32
	Workload   bool // the path is the workload's cgroup, not a folder on the way
	EgressDeny bool // as Workload.EgressDeny, for the cgroup's workloads entry
}

// Target is one destination (address prefix and port) sent to the gateway.
type Target struct {
	ID     uint32
	Prefix netip.Prefix
	Port   uint16
}

// EgressAllow lets a deny-by-default workload reach Prefix (on Port, or any
// port when Port is 0).
type EgressAllow struct {
	WorkloadID uint32
	Prefix     netip.Prefix
	Port       uint16
}

// Counter holds the kernel's connect counts for one workload and target
// (TargetID 0: destinations that are not targets).
type Counter struct {
	WorkloadID uint32
	TargetID   uint32
	Redirected uint64
	Allowed    uint64
	Denied     uint64
}

// addrWords lays out an address as the C side's __u32 addr[4]: the 16
// network-order bytes, IPv4 v4-mapped.
func addrWords(a netip.Addr) [4]uint32 {
	b := a.As16()
	var w [4]uint32
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w
}

func wordsAddr(w [4]uint32) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[4*i:], w[i])
	}
	return netip.AddrFrom16(b).Unmap()
}

// netPort converts a port to the in-memory value of a network-order __u16.
func netPort(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

func hostPort(p uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], p)
	return binary.BigEndian.Uint16(b[:])
}

// mappedBits is a prefix's length over the 128-bit (v4-mapped) address.
func mappedBits(p netip.Prefix) uint32 {
	if p.Addr().Is4() {
		return uint32(96 + p.Bits())
	}
	return uint32(p.Bits())
}

func targetKey(t Target) redirectTargetKey {
	return redirectTargetKey{
		Prefixlen: 32 + mappedBits(t.Prefix),
		Port:      netPort(t.Port),
		Addr:      addrWords(t.Prefix.Masked().Addr()),
	}
}

func egressKey(e EgressAllow) redirectEgressKey {
	return redirectEgressKey{
		Prefixlen: 64 + mappedBits(e.Prefix),
		Workload:  e.WorkloadID,
		Port:      netPort(e.Port),
		Addr:      addrWords(e.Prefix.Masked().Addr()),
	}
}

// Values of the protected map: the programs only test presence, the
// values let Inspect tell configured listeners from derived entries.
const (
	protectedListener    uint8 = 1
	protectedUnspecified uint8 = 2
)

// protectedKeys lays out a protected set as the C side looks it up (see
// bpf/include/interlock.h): an unspecified address becomes the all-zero
// "any address" key, IPv4 is v4-mapped, and every port gets the
// ::ffff:0.0.0.0 entry that catches dials of the unspecified address.
func protectedKeys(addrs []netip.AddrPort) (map[redirectProtectedKey]uint8, error) {
	want := make(map[redirectProtectedKey]uint8, 2*len(addrs))
	for _, ap := range addrs {
		if !ap.IsValid() || ap.Port() == 0 {
			return nil, fmt.Errorf("protected address %s: need an address and a port", ap)
		}
		k := redirectProtectedKey{Port: netPort(ap.Port())}
		if a := ap.Addr().Unmap(); !a.IsUnspecified() {
			k.Addr = addrWords(a)
		}
		want[k] = protectedListener
		want[redirectProtectedKey{Addr: unspecifiedDial, Port: k.Port}] = protectedUnspecified
	}
	return want, nil
}

// unspecifiedDial is the key address of a dial of 0.0.0.0 or :: (the C
// side looks both up as ::ffff:0.0.0.0).
var unspecifiedDial = addrWords(netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff}))

func originKey(netns uint64, client netip.AddrPort) redirectOriginKey {
	return redirectOriginKey{
		Netns: netns,
		Addr:  addrWords(client.Addr()),
		Port:  netPort(client.Port()),
	}
}

func (o redirectOrigin) export() Origin {
	return Origin{
		Destination: netip.AddrPortFrom(wordsAddr(o.Addr), hostPort(o.Port)),
		WorkloadID:  o.Workload,
		TargetID:    o.Target,
		PID:         o.Pid,
		UID:         o.Uid,
		CgroupID:    o.CgroupId,
	}
}

// Options configure Open.
type Options struct {
	// PinPath is the bpffs folder that holds the pinned links and maps.
	PinPath string
	// CgroupRoot is the cgroup v2 folder the programs attach to: the
	// hierarchy's root in production, a test's own cgroup in tests.
	CgroupRoot string
	Logger     *slog.Logger

	// withoutCgroupWatch leaves the cgroup_mkdir program out, as a kernel
	// without BTF does (a test seam).
	withoutCgroupWatch bool
}

// State is what is pinned under a folder, read without loading anything:
// it answers "is enforcement in place?" whether or not a gateway runs.
type State struct {
	PinPath   string
	Links     []LinkState
	Listen4   netip.AddrPort
	Listen6   netip.AddrPort
	Enabled   bool
	Workloads []Workload
	Guards    []Guard
	// Expected is the set SyncExpected wrote, with the folders on the
	// way it added, sorted by path.
	Expected []Expected
	Targets  []Target
	Egress   []EgressAllow
	// Protected is the set SetProtected wrote; an unspecified address
	// (shown as [::]) means any address on the port.
	Protected []netip.AddrPort
	Counters  []Counter
}

// LinkState is one pinned program attachment.
type LinkState struct {
	Name      string
	LinkID    uint32
	ProgramID uint32
	CgroupID  uint64
}

// Closed is a connection Sweep closed, or tried to.
type Closed struct {
	WorkloadID uint32
	// TargetID is the target the connection reached without the
	// gateway; 0 for a destination the workload's egress rules refuse.
	TargetID      uint32
	CgroupID      uint64
	UID           uint32
	Local, Remote netip.AddrPort
	Err           error // nil: the kernel aborted it (or Reported)
	// Reported: found by SweepReport, which leaves connections open.
	Reported bool
}
