//go:build ignore

/* interlock's cgroup watcher: runs inside mkdir of every cgroup v2 folder,
 * before any process can be in it, and classifies the new cgroup by its
 * path against what the gateway expects (see expected in interlock.h):
 *
 *   - a workload's cgroup (a restarted unit's new one): its id goes into
 *     workloads at once, so its first connect is decided as the workload's;
 *   - a folder on the way to a workload's cgroup: left alone, it stays
 *     unresolved under its guard until the gateway's pass;
 *   - anything else under a guarded parent: settled, no workload's, so its
 *     connects are not sent to the gateway as unresolved (once the gateway
 *     has written its expected paths at all).
 *
 * A path it cannot read whole is left to the guards, as before. Loaded as
 * an object of its own, optionally: a kernel without BTF or tracing
 * programs runs the connect programs with the guards alone.
 */

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "interlock.h"
#include "cgroup_maps.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* The kernel's types, only the fields read here; CO-RE finds their offsets
 * in the running kernel's BTF. The parent is reached through the css, not
 * kernfs_node's parent field, which Linux 6.15 renamed. */
struct kernfs_node {
	__u64 id;
	const char *name;
} __attribute__((preserve_access_index));

struct cgroup;

struct cgroup_subsys_state {
	struct cgroup *cgroup;
	struct cgroup_subsys_state *parent;
} __attribute__((preserve_access_index));

struct cgroup_root {
	int hierarchy_id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct cgroup_subsys_state self;
	struct kernfs_node *kn;
	struct cgroup_root *root;
} __attribute__((preserve_access_index));

/* Cgroup ids are kernfs node ids, the same bpf_get_current_ancestor_cgroup_id
 * gives the connect programs. */
static __always_inline __u64 cgroup_id(struct cgroup *cgrp)
{
	return cgrp->kn->id;
}

/* Reads the new cgroup's path into key; its length when it is there
 * whole, else -1. */
static __always_inline long read_path(struct expected_key *key, const char *path)
{
	long n = bpf_probe_read_kernel_str(key->path, sizeof(key->path), path);
	char next;

	if (n <= 0)
		return -1;
	if (n < (long)sizeof(key->path))
		return n - 1;
	/* The read filled the key: the path has exactly its size less the
	 * NUL, or it is longer and was cut. The byte after the last one read
	 * tells which. */
	if (bpf_probe_read_kernel(&next, 1, path + sizeof(key->path) - 1) || next)
		return -1;
	return n - 1;
}

/* Does the path of length len name a systemd slice? A unit's cgroup is made
 * in its slice, and a unit whose Slice= changed is made in one the gateway
 * does not expect yet: a new slice is never settled, so what is made in it
 * stays unresolved under the guard above until the gateway's pass. */
static __always_inline int is_slice(const struct expected_key *key, long len)
{
	const char suffix[] = ".slice";
	const long n = sizeof(suffix) - 1;

	if (len < n || len >= INTERLOCK_CGROUP_PATH_MAX)
		return 0;
	for (long i = 0; i < n; i++) {
		long j = len - n + i;

		if (j < 0 || j >= INTERLOCK_CGROUP_PATH_MAX || key->path[j] != suffix[i])
			return 0;
	}
	return 1;
}

/* Is the new cgroup's name (its path's last part) a workload's, expected
 * at another path? Then it may be that workload's unit, moved to another
 * slice: not settled. An unreadable name counts as a workload's. */
static __always_inline int workload_name(struct expected_key *key, struct cgroup *cgrp)
{
	const char *name = cgrp->kn->name;

	__builtin_memset(key, 0, sizeof(*key));
	key->path[0] = INTERLOCK_EXPECT_NAME_PREFIX;
	if (bpf_probe_read_kernel_str(&key->path[1], sizeof(key->path) - 1, name) <= 0)
		return 1;
	return bpf_map_lookup_elem(&expected, key) != NULL;
}

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(interlock_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	struct expected_key key = {};
	struct expected_value *e;
	struct cgroup_subsys_state *parent_css;
	__u64 id, parent;
	__u8 one = 1;
	long len;

	/* Cgroup v1 hierarchies (a hybrid host's) make cgroups too, with
	 * their own ids and paths: only the v2 hierarchy's (id 0) are
	 * interlock's. */
	if (cgrp->root->hierarchy_id != 0)
		return 0;
	len = read_path(&key, path);
	if (len < 0)
		return 0;
	id = cgroup_id(cgrp);

	e = bpf_map_lookup_elem(&expected, &key);
	if (e) {
		if (e->flags & INTERLOCK_EXPECT_WORKLOAD) {
			struct workload_value w = { .id = e->workload };

			if (e->flags & INTERLOCK_EXPECT_EGRESS_DENY)
				w.flags |= INTERLOCK_WORKLOAD_EGRESS_DENY;
			bpf_map_update_elem(&workloads, &id, &w, BPF_ANY);
		}
		return 0;
	}

	parent_css = cgrp->self.parent;
	if (!parent_css)
		return 0;
	parent = cgroup_id(parent_css->cgroup);
	if (!bpf_map_lookup_elem(&guards, &parent))
		return 0;
	if (is_slice(&key, len) || workload_name(&key, cgrp))
		return 0;
	/* Settled only when the gateway has said its paths are all there
	 * are: the empty path's entry (see interlock.h). */
	__builtin_memset(&key, 0, sizeof(key));
	if (bpf_map_lookup_elem(&expected, &key))
		bpf_map_update_elem(&settled, &id, &one, BPF_ANY);
	return 0;
}
