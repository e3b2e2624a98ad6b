package redirect

// The eBPF objects are generated from ../bpf and committed, so building
// interlock needs no clang. `make generate` rebuilds them; it sets
// BPF_CFLAGS to the multiarch include folder that holds asm/types.h.
//
// redirect: the connect programs, attached at the cgroup root. cgroupwatch:
// the cgroup_mkdir tracing program, an object of its own because it is
// optional (it needs kernel BTF); it shares the cgroup maps by their pins.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror $BPF_CFLAGS" -target bpfel -type settings_value -type workload_value -type guard_value -type expected_key -type expected_value -type target_key -type target_value -type egress_key -type protected_key -type origin -type origin_key -type socket_state -type counter_key -type counter_value redirect ../bpf/redirect.c -- -I../bpf/include
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror $BPF_CFLAGS" -target bpfel cgroupwatch ../bpf/cgroupwatch.c -- -I../bpf/include
