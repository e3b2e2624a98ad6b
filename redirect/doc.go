// Package redirect owns interlock's kernel data path: loading the eBPF
// programs from bpf/, attaching them once at the cgroup v2 root, pinning
// links and maps under one bpffs folder, and the maps themselves — which
// cgroups are workloads, which destinations are targets, what each
// workload's egress default allows, which of the gateway's own listeners no
// workload may dial (checked before targets and egress, so no allow rule
// opens them), the per-connection origins the gateway reads back, and the
// per-workload counters.
//
// Workloads, and cgroups that may be one (unresolved, below), cannot make
// MPTCP sockets: a sock_create program attached with the others makes
// socket() fail with EPERM and counts a denial. The connect programs see
// only an MPTCP socket's first subflow; the kernel connects its further
// subflows from a worker thread, in no workload's cgroup, where egress
// would not apply.
//
// Guards cover the time between a workload cgroup's replacement and the
// gateway's next resolution pass: systemd gives a restarted unit a new
// cgroup with a new id, which the workloads map does not hold yet. Cgroup
// ids only grow, so a guard on the parent of a workload's cgroup with the
// highest child id the gateway has seen (SyncGuards) marks every newer
// child as unresolved; the kernel sends its connects, to targets and to
// anything else, to the gateway as UnresolvedWorkload, and the gateway
// resolves the cgroup itself. Without a listening gateway they are decided
// by the workload that holds the guarded parent, if any; otherwise targets
// are refused and the guard's egress default applies to the rest.
//
// Where the kernel has BTF and tracing programs, a second, optional
// object (bpf/cgroupwatch.c) runs inside the mkdir of every cgroup v2
// folder and classifies the new cgroup by its path before any process can
// be in it: a path the gateway expects a workload's cgroup at
// (SyncExpected) puts the new id into the workloads map at once; any other
// cgroup made in a guarded parent is recorded as settled, no workload's,
// and not treated as unresolved. A path it cannot read whole (256 bytes or
// more) is left to the guards. Its link is pinned with the others, so it
// keeps classifying while no gateway runs. On a kernel that cannot run it
// Open logs so once and goes on with the guards alone; TracksCgroups tells
// which.
//
// Open attaches this version's programs: links pinned by an earlier
// version are kept and updated in place to the new programs (never
// detached), and maps that version did not have are created beside the
// pinned ones. A link that version did not pin (sock_create, for one) is
// attached and pinned. The cgroup_mkdir link cannot be updated in place; a
// new one is attached and pinned over it before the old one goes.
//
// Enforcement outlives the process: Open adopts what an earlier gateway
// pinned (so a restart or crash never leaves a gap), Close releases only this
// process's handles, and Uninstall is the one way to remove it. While no
// gateway listens, redirected connects are refused: the data path fails
// closed.
//
// Error contract: Open fails — never degrades silently — when the kernel
// lacks a feature; the error wraps ErrUnsupported and names the feature.
// OriginalDestination returns an error wrapping ErrNoOrigin for a
// connection the kernel did not redirect (for example a direct dial of the
// listener). Open fails with an error wrapping ErrUnsafePinFolder when the
// pin folder already exists but is not this user's alone (owned by another
// uid, writable by others, a symlink, or in a folder that lets others
// rename it): whoever can write there can unpin the links and make the data
// path fail open when the gateway stops. Everything else is wrapped with what was being done, e.g.
// "attaching connect4: ...".
package redirect
