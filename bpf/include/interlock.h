/* Map layouts shared by the interlock eBPF programs and their Go loader
 * (redirect/). Every struct here is mirrored by a bpf2go-generated Go type;
 * redirect/layout_test.go pins both sides, so a change here that the Go side
 * does not follow fails the tests instead of silently disabling enforcement.
 *
 * Addresses are always 16 bytes: IPv4 is stored v4-mapped (::ffff:a.b.c.d) so
 * that an AF_INET6 socket dialling ::ffff:a.b.c.d hits the same entry as an
 * AF_INET socket dialling a.b.c.d. Addresses and ports are in network order.
 */
#ifndef INTERLOCK_H
#define INTERLOCK_H

#include <linux/types.h>

#define INTERLOCK_AF_INET 2
#define INTERLOCK_AF_INET6 10

/* Deepest cgroup level searched for a workload. */
#define INTERLOCK_MAX_CGROUP_DEPTH 32

#define INTERLOCK_MAX_WORKLOADS 4096
#define INTERLOCK_MAX_TARGETS 4096
#define INTERLOCK_MAX_EGRESS 16384
#define INTERLOCK_MAX_SOCKETS 65536
#define INTERLOCK_MAX_COUNTERS 16384
#define INTERLOCK_MAX_PROTECTED 1024

/* settings[0]: where redirected connections go. enabled == 0 makes every
 * connect to a target fail with EPERM (fail closed before the gateway has
 * programmed the listener). A connect is only redirected when a socket
 * carrying listen_mark (SO_MARK, which needs CAP_NET_ADMIN) listens on the
 * redirect address: while the gateway is down the connect fails with EPERM,
 * and no other process can take over its port to receive agents' traffic. */
struct settings_value {
	__u32 listen4_addr;
	__u16 listen4_port;
	__u16 listen6_port;  /* 0: no IPv6 listener; real-IPv6 redirects fail closed */
	__u32 listen6_addr[4];
	__u32 enabled;
	__u32 listen_mark;
};

/* workloads: cgroup id -> workload. A workload is the cgroup subtree: the
 * deepest ancestor of the calling cgroup found in this map decides. */
#define INTERLOCK_WORKLOAD_EGRESS_DENY 1
struct workload_value {
	__u32 id;
	__u32 flags;
};

/* The workload id a connect carries (in its origin and counters) when its
 * cgroup is newer than the gateway's last resolution pass: see guards. */
#define INTERLOCK_WORKLOAD_UNRESOLVED 0xffffffff

/* guards: cgroup id of a workload cgroup's parent -> guard_value.
 *
 * systemd gives a restarted unit a new cgroup with a new id. Until the
 * gateway's next resolution pass puts that id in workloads, the unit's
 * processes would be in no workload and reach targets directly. Cgroup ids
 * are allocated in increasing order, so the gateway guards the parent of
 * every workload cgroup with watermark = the highest id among the parent's
 * children at the start of its last pass: a child with a higher id was
 * created since, and may be a workload's new cgroup the gateway has not
 * seen yet. A child in settled (see expected below) is known to be no
 * workload's and is not unresolved.
 *
 * A connect from below such a child ("unresolved"), unless a workload in
 * the map lies deeper than that child, is sent to the gateway whatever the
 * destination (origin workload INTERLOCK_WORKLOAD_UNRESOLVED, target 0 for
 * a destination that is not a target); the gateway resolves the cgroup
 * itself and relays unchanged for a process that is no workload's. When
 * the gateway cannot take it, a shallower workload decides as usual, or
 * else targets are refused and other destinations pass unless a guard on
 * the way has INTERLOCK_GUARD_EGRESS_DENY (some workload under it denies
 * egress by default). The root may be guarded (a workload right below it);
 * a guard does nothing for the guarded cgroup's own processes. */

/* gateways: cgroup id -> 1 for the gateway's own cgroup (matched exactly,
 * not as a subtree). A gateway that
 * restarts gets a new cgroup too, newer than the watermark of a guard
 * above it (interlock.service next to agent.service in /system.slice):
 * its own dials must not be taken for an unresolved workload's and sent
 * back to it, or refused while it is not listening yet. The gateway writes
 * its cgroup before anything else it does. */
#define INTERLOCK_MAX_GUARDS 4096
#define INTERLOCK_MAX_GATEWAYS 16
#define INTERLOCK_GUARD_EGRESS_DENY 1
struct guard_value {
	__u64 watermark;
	__u32 flags;
	__u32 _pad;
};

/* expected: cgroup path -> expected_value, written by the gateway from its
 * workloads' paths; read by the cgroup_mkdir tracing program (cgroupwatch.c)
 * to classify a cgroup when it is made, before any process can be in it.
 *
 * The path is the cgroup's below the cgroup v2 root ("/system.slice/a.service"),
 * NUL-padded to the key's size; a longer path has no entry and is left to
 * the guards. INTERLOCK_EXPECT_WORKLOAD: the path is a workload's cgroup,
 * whose new id goes into workloads at once. Without it the path is a folder
 * on the way to one (a slice not made yet): its cgroup stays unresolved
 * under a guard, as its children are yet to come.
 *
 * settled: id of a cgroup made under a guarded parent at a path nobody
 * expects -> 1. It is no workload's, so it is not unresolved however new.
 * LRU: entries of cgroups long below a raised watermark age out.
 *
 * Cgroups are settled only once the gateway has written the entry with
 * the empty path (all zero, which no cgroup has) with its paths: it says
 * they are every path a workload is expected at. A gateway that writes
 * no paths (an older one) leaves every new cgroup under a guard
 * unresolved, as before. */
#define INTERLOCK_CGROUP_PATH_MAX 256
#define INTERLOCK_MAX_EXPECTED 4096
#define INTERLOCK_MAX_SETTLED 65536
#define INTERLOCK_EXPECT_WORKLOAD 1
#define INTERLOCK_EXPECT_EGRESS_DENY 2
/* An entry whose key is this byte and then a cgroup's name (no path: paths
 * start with '/') is the last part of a workload's expected path, a unit's
 * name. A cgroup of that name made at another path (a unit moved to
 * another slice) is not settled: it stays unresolved, and the gateway
 * resolves it. */
#define INTERLOCK_EXPECT_NAME_PREFIX 1
struct expected_key {
	char path[INTERLOCK_CGROUP_PATH_MAX];
};

struct expected_value {
	__u32 workload;
	__u32 flags;
};

/* targets: LPM trie. prefixlen counts the 32 bits of port+zero, then the
 * address bits, so an entry matches one port and an address prefix. */
struct target_key {
	__u32 prefixlen;
	__u16 port;
	__u16 zero;
	__u32 addr[4];
};

struct target_value {
	__u32 id;
	__u32 flags;
};

/* egress: LPM trie of allowed destinations per workload. prefixlen counts
 * 32 bits of workload, 32 of port+zero, then address bits. Port 0 means any
 * port and is looked up second. */
struct egress_key {
	__u32 prefixlen;
	__u32 workload;
	__u16 port;
	__u16 zero;
	__u32 addr[4];
};

/* protected: the gateway's own listeners (redirect listeners, admin API,
 * explicit-mode listeners). No workload may dial them, whatever its egress
 * allows: the admin API is the gateway's control surface, and a listener
 * is meant to be reached only through the redirect, which records who is
 * calling.
 *
 * An all-zero addr means any address on the port (a listener bound to
 * 0.0.0.0 or ::) and is looked up second. A connect to the unspecified
 * address (0.0.0.0, ::) is sent by the kernel to a local address of its
 * choosing (loopback, or the socket's bound source), so it is looked up
 * once, as ::ffff:0.0.0.0 — an entry the loader writes for every protected
 * port and that no configured address can produce.
 *
 * The u8 value is the loader's bookkeeping (1: a listener as configured,
 * 2: the derived unspecified-address entry); the programs test presence. */
struct protected_key {
	__u32 addr[4];
	__u16 port;
	__u16 zero;
};

/* What the gateway learns about a redirected connection. */
struct origin {
	__u32 addr[4];    /* original destination */
	__u16 port;       /* original destination port */
	__u16 family;     /* the socket's family */
	__u32 workload;
	__u32 target;
	__u32 pid;
	__u32 uid;
	__u32 _pad;
	__u64 cgroup_id;
};

/* origins: (network namespace, client address, client port) -> origin.
 * Written by sockops when the client's port is known, read and deleted by
 * the gateway when it accepts the connection. */
struct origin_key {
	__u64 netns;
	__u32 addr[4];
	__u16 port;
	__u16 _pad1;
	__u32 _pad2;
};

/* sockets: socket cookie -> state, for the client socket's lifetime
 * (getpeername and clean-up on close). */
struct socket_state {
	struct origin origin;
	struct origin_key key;
	__u64 netns;
	__u32 keyed;
	__u32 _pad;
};

struct counter_key {
	__u32 workload;
	__u32 target; /* 0 for destinations that are not targets */
};

struct counter_value {
	__u64 redirected;
	__u64 allowed;
	__u64 denied;
};

#endif
