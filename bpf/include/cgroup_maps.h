/* The maps that tell who a cgroup is, shared by the connect programs
 * (redirect.c) and the cgroup_mkdir program (cgroupwatch.c). Both objects
 * pin them by name in the same folder, so they must be declared alike:
 * they are declared here once. Layouts: interlock.h. */
#ifndef INTERLOCK_CGROUP_MAPS_H
#define INTERLOCK_CGROUP_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "interlock.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, INTERLOCK_MAX_WORKLOADS);
	__type(key, __u64);
	__type(value, struct workload_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} workloads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, INTERLOCK_MAX_GUARDS);
	__type(key, __u64);
	__type(value, struct guard_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guards SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, INTERLOCK_MAX_EXPECTED);
	__type(key, struct expected_key);
	__type(value, struct expected_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} expected SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, INTERLOCK_MAX_SETTLED);
	__type(key, __u64);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} settled SEC(".maps");

#endif
