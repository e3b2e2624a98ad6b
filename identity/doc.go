// Package identity owns "who is calling": which workload a connection comes
// from, the identity that workload carries, and the process details the
// kernel or /proc can tell about the caller.
//
// It owns:
//   - the workload registry (workload id → name and static identity) and the
//     Caller record that rides on every session, decision and metric;
//   - finding the cgroup v2 hierarchy (CgroupV2Root), resolving a workload
//     selector (cgroup path or systemd unit) to a cgroup directory and its
//     kernel cgroup id (ResolveSelector, CgroupID), and keeping those ids
//     current while units restart (Watcher), with a Guard on the directory
//     each workload's cgroup is made in (and on its ancestors but the root,
//     should that directory be made again), so that a cgroup made since the
//     last pass can be told from one the gateway knows; a cgroup id back
//     to its path (CgroupPathByID), and a pass on demand for a connection
//     from such a new cgroup (Watcher.SyncAfter);
//   - process details from /proc: executable, cgroup, and — for explicit
//     mode, where no eBPF program recorded the caller — the process that owns
//     the client side of a loopback TCP connection (LocalPeer,
//     MatchCgroupPath).
//
// Its sub-packages hold the gateway's own side of identity: oidc verifies
// tokens, adminauth authenticates the admin API, and keyfile reads and
// writes the secrets that prove the gateway (its CAs' keys, host keys,
// admin tokens) so that proxy/ and identity/ share one careful reader.
//
// Everything read from /proc and mountinfo is parsed by small, separately
// fuzzed functions that reject what they do not understand instead of
// guessing.
//
// Error contract: callers branch on the sentinel errors with errors.Is.
//   - ErrUnknownWorkload: a workload id the registry does not hold.
//   - ErrNoProcess: the process is gone, or no process owns the socket.
//   - ErrNoCgroup2: no cgroup v2 hierarchy is mounted, a process has no
//     cgroup v2 line, or a path is not in a cgroup v2 hierarchy.
//   - ErrCgroupNotFound: a selector's cgroup does not exist (yet), or a
//     cgroup id names no live cgroup; the error names the path, unit or id.
//   - ErrInvalidSelector: a selector sets neither or both of its fields, or
//     names something that cannot be a cgroup.
//
// Other errors are wrapped with what was being done ("reading
// /proc/42/cgroup: ..."). On systems other than Linux the functions that need
// /proc or cgroups return an error wrapping errors.ErrUnsupported.
package identity
