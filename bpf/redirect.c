//go:build ignore

/* interlock's kernel data path: attached once at the cgroup v2 root, it sends
 * the TCP connects of workload cgroups to configured targets into the local
 * gateway, applies each workload's egress default to everything else, and
 * keeps the original destination and caller where the gateway can find them.
 * Workload cgroups may not make MPTCP sockets, whose extra subflows the kernel
 * would connect outside their cgroup.
 */

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "interlock.h"
#include "cgroup_maps.h"

#define SOCK_STREAM 1

/* connect, getpeername and sock_create verdicts */
#define VERDICT_REJECT 0
#define VERDICT_PASS 1

#define READ_CTX(field) (*(volatile typeof(field) *)&(field))

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, INTERLOCK_MAX_GATEWAYS);
	__type(key, __u64);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} gateways SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, INTERLOCK_MAX_TARGETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct target_key);
	__type(value, struct target_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, INTERLOCK_MAX_EGRESS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct egress_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, INTERLOCK_MAX_PROTECTED);
	__type(key, struct protected_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} protected SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, INTERLOCK_MAX_SOCKETS);
	__type(key, __u64);
	__type(value, struct socket_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, INTERLOCK_MAX_SOCKETS);
	__type(key, struct origin_key);
	__type(value, struct origin);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} origins SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, INTERLOCK_MAX_COUNTERS);
	__type(key, struct counter_key);
	__type(value, struct counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

enum counter_field { COUNT_REDIRECTED, COUNT_ALLOWED, COUNT_DENIED };

static __always_inline void count(__u32 workload, __u32 target, enum counter_field field)
{
	struct counter_key key = { .workload = workload, .target = target };
	struct counter_value *v = bpf_map_lookup_elem(&counters, &key);

	if (!v) {
		struct counter_value zero = {};

		bpf_map_update_elem(&counters, &key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&counters, &key);
		if (!v)
			return;
	}
	/* per-CPU values: no atomics needed */
	switch (field) {
	case COUNT_REDIRECTED:
		v->redirected++;
		break;
	case COUNT_ALLOWED:
		v->allowed++;
		break;
	case COUNT_DENIED:
		v->denied++;
		break;
	}
}

/* Who is calling, as the walk over the calling cgroup's ancestors found it. */
struct caller {
	struct workload_value *workload; /* the deepest workload, or NULL */
	/* Some guarded parent's child on the way is newer than the guard's
	 * watermark and deeper than workload: the cgroup may be a workload's
	 * the gateway has not resolved yet (see guards in interlock.h). */
	__u32 unresolved;
	__u32 guard_flags; /* the flags of those guards, ORed */
};

/* Walks the ancestors of the calling cgroup once, root first, and tells
 * whether the connect is the data path's business: the caller is in a
 * workload, or unresolved. Level 0, the root, is never a workload but may
 * be guarded: a workload right below the root has it as its parent. */
static __always_inline int find_caller(struct caller *c)
{
	__u64 parent = 0;

	c->workload = NULL;
	c->unresolved = 0;
	c->guard_flags = 0;
	for (int level = 0; level < INTERLOCK_MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
		struct guard_value *g;
		struct workload_value *w;

		if (!id)
			break;
		if (level > 0) {
			g = bpf_map_lookup_elem(&guards, &parent);
			/* settled: made at a path no workload expects (seen
			 * by cgroupwatch.c at mkdir). Looked up only here,
			 * on the rare path of a cgroup newer than its guard. */
			if (g && id > g->watermark && !bpf_map_lookup_elem(&settled, &id)) {
				c->unresolved = 1;
				c->guard_flags |= g->flags;
			}
			/* A workload at this level or deeper is known to the
			 * gateway: the guards above it no longer matter. */
			w = bpf_map_lookup_elem(&workloads, &id);
			if (w) {
				c->workload = w;
				c->unresolved = 0;
				c->guard_flags = 0;
			}
		}
		parent = id;
	}
	if (c->unresolved) {
		/* The gateway's own cgroup (exactly: a gateway in the root
		 * cgroup must not exempt everything below it). */
		__u64 self = bpf_get_current_cgroup_id();

		if (bpf_map_lookup_elem(&gateways, &self)) {
			c->unresolved = 0;
			c->guard_flags = 0;
		}
	}
	return c->workload || c->unresolved;
}

static __always_inline int is_v4mapped(const __u32 addr[4])
{
	return addr[0] == 0 && addr[1] == 0 && addr[2] == bpf_htonl(0x0000ffff);
}

/* 0.0.0.0 (v4-mapped, as connect4 passes it) or :: */
static __always_inline int is_unspecified(const __u32 addr[4])
{
	return addr[0] == 0 && addr[1] == 0 && addr[3] == 0 &&
	       (addr[2] == 0 || addr[2] == bpf_htonl(0x0000ffff));
}

/* A connect to the unspecified address goes to a local address the kernel
 * picks: for IPv4 (and a v4-mapped ::ffff:0.0.0.0) the socket's bound
 * source address, or 127.0.0.1 when it is unbound (ip_route_output_key's
 * "!daddr" case); for :: the loopback ::1, or ::ffff:127.0.0.1 when the
 * socket is bound to a v4-mapped address (tcp_v6_connect). Left as it is,
 * such a connect would be decided as "0.0.0.0", matching no target and no
 * egress rule, and then reach a target on a local address directly.
 *
 * resolve_unspecified picks the same address and writes it into the
 * connect, so the kernel connects exactly where the decision was made:
 * whatever an exotic bind (broadcast, a non-local address) would have made
 * the kernel pick, the destination decided on is the destination used.
 * Called before the target and egress lookups; a no-op for any other
 * address. */
static __always_inline void resolve_unspecified(struct bpf_sock_addr *ctx, __u32 addr[4], __u16 family)
{
	struct bpf_sock *sk;

	if (!is_unspecified(addr))
		return;
	sk = ctx->sk;
	if (!sk)
		return; /* cannot happen for connect; the caller then refuses */
	if (family == INTERLOCK_AF_INET || addr[2] == bpf_htonl(0x0000ffff)) {
		__u32 src = sk->src_ip4;

		addr[3] = src ? src : bpf_htonl(0x7f000001);
	} else {
		__u32 s0 = sk->src_ip6[0], s1 = sk->src_ip6[1], s2 = sk->src_ip6[2];

		if (s0 == 0 && s1 == 0 && s2 == bpf_htonl(0x0000ffff)) {
			addr[2] = bpf_htonl(0x0000ffff);
			addr[3] = bpf_htonl(0x7f000001);
		} else {
			addr[3] = bpf_htonl(1);
		}
	}
	if (family == INTERLOCK_AF_INET) {
		ctx->user_ip4 = addr[3];
	} else {
		ctx->user_ip6[0] = addr[0];
		ctx->user_ip6[1] = addr[1];
		ctx->user_ip6[2] = addr[2];
		ctx->user_ip6[3] = addr[3];
	}
}

/* Is the destination one of the gateway's own listeners? */
static __always_inline int is_protected(const __u32 addr[4], __u16 port)
{
	struct protected_key key = { .port = port };

	/* The kernel picks the local address the connect lands on: refuse it
	 * when anything on the port is protected (see interlock.h). */
	if (is_unspecified(addr)) {
		key.addr[2] = bpf_htonl(0x0000ffff);
		return bpf_map_lookup_elem(&protected, &key) != NULL;
	}
	key.addr[0] = addr[0];
	key.addr[1] = addr[1];
	key.addr[2] = addr[2];
	key.addr[3] = addr[3];
	if (bpf_map_lookup_elem(&protected, &key))
		return 1;
	key.addr[0] = 0;
	key.addr[1] = 0;
	key.addr[2] = 0;
	key.addr[3] = 0;
	return bpf_map_lookup_elem(&protected, &key) != NULL;
}

static __always_inline int egress_allowed(__u32 workload, const __u32 addr[4], __u16 port)
{
	struct egress_key key = {
		.prefixlen = 32 + 32 + 128,
		.workload = workload,
		.port = port,
	};

	key.addr[0] = addr[0];
	key.addr[1] = addr[1];
	key.addr[2] = addr[2];
	key.addr[3] = addr[3];
	if (bpf_map_lookup_elem(&egress, &key))
		return 1;
	key.port = 0;
	return bpf_map_lookup_elem(&egress, &key) != NULL;
}

/* Is the gateway's own listener (marked with listen_mark) there to take
 * the redirected connection? */
static __always_inline int gateway_listening(struct bpf_sock_addr *ctx, struct settings_value *s, int v6)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *sk;
	int ok;

	if (v6) {
		tuple.ipv6.daddr[0] = s->listen6_addr[0];
		tuple.ipv6.daddr[1] = s->listen6_addr[1];
		tuple.ipv6.daddr[2] = s->listen6_addr[2];
		tuple.ipv6.daddr[3] = s->listen6_addr[3];
		tuple.ipv6.dport = s->listen6_port;
		sk = bpf_sk_lookup_tcp(ctx, &tuple, sizeof(tuple.ipv6), BPF_F_CURRENT_NETNS, 0);
	} else {
		tuple.ipv4.daddr = s->listen4_addr;
		tuple.ipv4.dport = s->listen4_port;
		sk = bpf_sk_lookup_tcp(ctx, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	}
	if (!sk)
		return 0;
	ok = sk->mark == s->listen_mark && sk->state == BPF_TCP_LISTEN;
	bpf_sk_release(sk);
	return ok;
}

enum gateway_result {
	GATEWAY_TOOK,   /* the connect now goes to the gateway's listener */
	GATEWAY_ABSENT, /* the gateway cannot take it; nothing was changed */
	GATEWAY_FAILED, /* no record could be written: refuse the connect */
};

/* Send the connect to the gateway's listener and record whom it was for
 * and who made it. addr/port are the resolved destination in network order
 * (IPv4 v4-mapped). Every check comes before the first change, so that on
 * GATEWAY_ABSENT the caller may still let the connect go where it was
 * going. */
static __always_inline enum gateway_result to_gateway(struct bpf_sock_addr *ctx, const __u32 addr[4], __u16 port,
						       __u16 family, __u32 workload, __u32 target)
{
	struct settings_value *s;
	__u32 zero = 0;

	/* A stream socket that is not TCP (SCTP) cannot be proxied. An
	 * MPTCP socket's connect arrives here as its first subflow's, a TCP
	 * socket; workloads cannot make MPTCP sockets (interlock_sock_create). */
	if (ctx->protocol != IPPROTO_TCP)
		return GATEWAY_ABSENT;
	s = bpf_map_lookup_elem(&settings, &zero);
	if (!s || !s->enabled)
		return GATEWAY_ABSENT;

	/* Real IPv6 destinations go to the IPv6 listener; IPv4 and v4-mapped
	 * ones to the IPv4 listener. */
	int v6 = family == INTERLOCK_AF_INET6 && !is_v4mapped(addr);

	if (v6 && !s->listen6_port)
		return GATEWAY_ABSENT;
	if (!gateway_listening(ctx, s, v6))
		return GATEWAY_ABSENT;

	struct socket_state st = {};
	__u64 cookie = bpf_get_socket_cookie(ctx);

	st.origin.addr[0] = addr[0];
	st.origin.addr[1] = addr[1];
	st.origin.addr[2] = addr[2];
	st.origin.addr[3] = addr[3];
	st.origin.port = port;
	st.origin.family = family;
	st.origin.workload = workload;
	st.origin.target = target;
	st.origin.pid = bpf_get_current_pid_tgid() >> 32;
	st.origin.uid = (__u32)bpf_get_current_uid_gid();
	st.origin.cgroup_id = bpf_get_current_cgroup_id();
	st.netns = bpf_get_netns_cookie(ctx);

	/* Without a record the gateway could not attribute the connection:
	 * refuse it rather than let it arrive anonymous. */
	if (bpf_map_update_elem(&sockets, &cookie, &st, BPF_ANY))
		return GATEWAY_FAILED;

	if (family == INTERLOCK_AF_INET) {
		ctx->user_ip4 = s->listen4_addr;
		ctx->user_port = s->listen4_port;
	} else if (!v6) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = s->listen4_addr;
		ctx->user_port = s->listen4_port;
	} else {
		ctx->user_ip6[0] = s->listen6_addr[0];
		ctx->user_ip6[1] = s->listen6_addr[1];
		ctx->user_ip6[2] = s->listen6_addr[2];
		ctx->user_ip6[3] = s->listen6_addr[3];
		ctx->user_port = s->listen6_port;
	}
	count(workload, target, COUNT_REDIRECTED);
	return GATEWAY_TOOK;
}

/* Decide a connect as workload w. addr/port are the resolved destination,
 * t its target or NULL. */
static __always_inline int decide(struct bpf_sock_addr *ctx, struct workload_value *w, struct target_value *t,
				  const __u32 addr[4], __u16 port, __u16 family)
{
	if (!t) {
		if (!(w->flags & INTERLOCK_WORKLOAD_EGRESS_DENY) || egress_allowed(w->id, addr, port)) {
			count(w->id, 0, COUNT_ALLOWED);
			return VERDICT_PASS;
		}
		count(w->id, 0, COUNT_DENIED);
		return VERDICT_REJECT;
	}
	/* A target is reached through the gateway or not at all: while it
	 * cannot take the connect, it fails closed. */
	if (to_gateway(ctx, addr, port, family, w->id, t->id) == GATEWAY_TOOK)
		return VERDICT_PASS;
	count(w->id, t->id, COUNT_DENIED);
	return VERDICT_REJECT;
}

/* Decide a connect from a cgroup the gateway has not resolved yet: it may
 * be a workload's new cgroup (a restarted unit's) or no workload's at all,
 * and only the gateway can tell. So every destination goes to the gateway,
 * which resolves the cgroup and applies that workload's rules, or relays
 * unchanged. Without the gateway the kernel must decide alone: as the
 * shallower workload the cgroup is in, if any; else it refuses targets (a
 * workload's process would reach them unrecorded) and applies the guards'
 * egress default to the rest. */
static __always_inline int decide_unresolved(struct bpf_sock_addr *ctx, const struct caller *c,
					     struct target_value *t, const __u32 addr[4], __u16 port,
					     __u16 family)
{
	__u32 target = t ? t->id : 0;

	switch (to_gateway(ctx, addr, port, family, INTERLOCK_WORKLOAD_UNRESOLVED, target)) {
	case GATEWAY_TOOK:
		return VERDICT_PASS;
	case GATEWAY_ABSENT:
		if (c->workload)
			return decide(ctx, c->workload, t, addr, port, family);
		if (!t && !(c->guard_flags & INTERLOCK_GUARD_EGRESS_DENY)) {
			count(INTERLOCK_WORKLOAD_UNRESOLVED, 0, COUNT_ALLOWED);
			return VERDICT_PASS;
		}
		break;
	case GATEWAY_FAILED:
		break;
	}
	count(INTERLOCK_WORKLOAD_UNRESOLVED, target, COUNT_DENIED);
	return VERDICT_REJECT;
}

/* Decide one TCP connect by caller c, which find_caller found to be a
 * workload or unresolved. addr/port are the destination in network order
 * (IPv4 v4-mapped); the destination is rewritten when the connect goes to
 * the gateway, or when it was the unspecified address. */
static __always_inline int decide_connect(struct bpf_sock_addr *ctx, const struct caller *c, __u32 addr[4],
					  __u16 port, __u16 family)
{
	struct target_key tkey = { .prefixlen = 32 + 128, .port = port };
	__u32 who = c->unresolved ? INTERLOCK_WORKLOAD_UNRESOLVED : c->workload->id;
	struct target_value *t;

	/* Before targets and egress: no allow rule or egress default opens
	 * the gateway's own ports. This tests the destination the process
	 * asked for; a rewrite to the (protected) listener happens after,
	 * and the kernel does not run the hook again. */
	if (is_protected(addr, port)) {
		count(who, 0, COUNT_DENIED);
		return VERDICT_REJECT;
	}

	/* From here on the destination is a real address: targets and
	 * egress are looked up as the kernel will connect. */
	resolve_unspecified(ctx, addr, family);
	if (is_unspecified(addr)) {
		count(who, 0, COUNT_DENIED);
		return VERDICT_REJECT;
	}

	tkey.addr[0] = addr[0];
	tkey.addr[1] = addr[1];
	tkey.addr[2] = addr[2];
	tkey.addr[3] = addr[3];
	t = bpf_map_lookup_elem(&targets, &tkey);
	if (c->unresolved)
		return decide_unresolved(ctx, c, t, addr, port, family);
	return decide(ctx, c->workload, t, addr, port, family);
}

SEC("cgroup/connect4")
int interlock_connect4(struct bpf_sock_addr *ctx)
{
	struct caller c;
	__u32 addr[4];

	if (ctx->type != SOCK_STREAM || !find_caller(&c))
		return VERDICT_PASS;
	addr[0] = 0;
	addr[1] = 0;
	addr[2] = bpf_htonl(0x0000ffff);
	addr[3] = ctx->user_ip4;
	return decide_connect(ctx, &c, addr, (__u16)ctx->user_port, INTERLOCK_AF_INET);
}

SEC("cgroup/connect6")
int interlock_connect6(struct bpf_sock_addr *ctx)
{
	struct caller c;
	__u32 addr[4];

	if (ctx->type != SOCK_STREAM || !find_caller(&c))
		return VERDICT_PASS;
	addr[0] = ctx->user_ip6[0];
	addr[1] = ctx->user_ip6[1];
	addr[2] = ctx->user_ip6[2];
	addr[3] = ctx->user_ip6[3];
	return decide_connect(ctx, &c, addr, (__u16)ctx->user_port, INTERLOCK_AF_INET6);
}

/* Workloads, and cgroups that may be one (unresolved), cannot make MPTCP
 * sockets: socket() fails with EPERM. connect4/6 see an MPTCP socket's
 * first subflow, a TCP socket, and decide it like any other; but the
 * kernel's path manager opens further subflows itself (to addresses the
 * server announces, from other local addresses) in a worker thread, whose
 * cgroup is no workload's, so their connects would pass find_caller and
 * escape the workload's egress rules. Subflows are kernel sockets, which
 * this hook does not see; plain TCP and UDP sockets pass untouched. */
SEC("cgroup/sock_create")
int interlock_sock_create(struct bpf_sock *ctx)
{
	struct caller c;

	if (ctx->protocol != IPPROTO_MPTCP || !find_caller(&c))
		return VERDICT_PASS;
	count(c.unresolved ? INTERLOCK_WORKLOAD_UNRESOLVED : c.workload->id, 0, COUNT_DENIED);
	return VERDICT_REJECT;
}

/* The client sees the address it dialled, not the gateway's listener. */
SEC("cgroup/getpeername4")
int interlock_getpeername4(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct socket_state *st = bpf_map_lookup_elem(&sockets, &cookie);

	if (st) {
		ctx->user_ip4 = st->origin.addr[3];
		ctx->user_port = st->origin.port;
	}
	return VERDICT_PASS;
}

SEC("cgroup/getpeername6")
int interlock_getpeername6(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct socket_state *st = bpf_map_lookup_elem(&sockets, &cookie);

	if (st) {
		ctx->user_ip6[0] = st->origin.addr[0];
		ctx->user_ip6[1] = st->origin.addr[1];
		ctx->user_ip6[2] = st->origin.addr[2];
		ctx->user_ip6[3] = st->origin.addr[3];
		ctx->user_port = st->origin.port;
	}
	return VERDICT_PASS;
}

/* Once the client's port is known (TCP_CONNECT_CB runs after the port is
 * bound and before the SYN leaves), publish the origin under the key the
 * gateway can compute from the accepted connection; drop both records when
 * the client socket closes. */
SEC("sockops")
int interlock_sockops(struct bpf_sock_ops *skops)
{
	__u64 cookie;
	struct socket_state *st;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB: {
		/* Read the context fields up front, each with a plain load: the
		 * verifier rejects loads through a ctx pointer the compiler has
		 * offset. */
		__u32 ip4 = READ_CTX(skops->local_ip4);
		__u32 ip6_0 = READ_CTX(skops->local_ip6[0]);
		__u32 ip6_1 = READ_CTX(skops->local_ip6[1]);
		__u32 ip6_2 = READ_CTX(skops->local_ip6[2]);
		__u32 ip6_3 = READ_CTX(skops->local_ip6[3]);
		__u32 lport = READ_CTX(skops->local_port);
		__u32 flags = READ_CTX(skops->bpf_sock_ops_cb_flags);

		cookie = bpf_get_socket_cookie(skops);
		st = bpf_map_lookup_elem(&sockets, &cookie);
		if (!st)
			return 1;
		st->key.netns = st->netns;
		if (st->origin.family == INTERLOCK_AF_INET || is_v4mapped(st->origin.addr)) {
			st->key.addr[0] = 0;
			st->key.addr[1] = 0;
			st->key.addr[2] = bpf_htonl(0x0000ffff);
			st->key.addr[3] = ip4;
		} else {
			st->key.addr[0] = ip6_0;
			st->key.addr[1] = ip6_1;
			st->key.addr[2] = ip6_2;
			st->key.addr[3] = ip6_3;
		}
		st->key.port = bpf_htons((__u16)lport);
		st->keyed = 1;
		bpf_map_update_elem(&origins, &st->key, &st->origin, BPF_ANY);
		bpf_sock_ops_cb_flags_set(skops, flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		return 1;
	}
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] != BPF_TCP_CLOSE)
			return 1;
		cookie = bpf_get_socket_cookie(skops);
		st = bpf_map_lookup_elem(&sockets, &cookie);
		if (!st)
			return 1;
		if (st->keyed)
			bpf_map_delete_elem(&origins, &st->key);
		bpf_map_delete_elem(&sockets, &cookie);
		return 1;
	}
	return 1;
}
