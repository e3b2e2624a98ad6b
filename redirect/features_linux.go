package redirect

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// feature is one kernel capability the data path depends on.
type feature struct {
	name  string
	probe func() error
}

var requiredFeatures = []feature{
	{"program type cgroup_sock_addr", func() error { return features.HaveProgramType(ebpf.CGroupSockAddr) }},
	{"program type sock_ops", func() error { return features.HaveProgramType(ebpf.SockOps) }},
	{"program type cgroup_sock", func() error { return features.HaveProgramType(ebpf.CGroupSock) }},
	{"map type lpm_trie", func() error { return features.HaveMapType(ebpf.LPMTrie) }},
	{"map type lru_hash", func() error { return features.HaveMapType(ebpf.LRUHash) }},
	{"map type percpu_hash", func() error { return features.HaveMapType(ebpf.PerCPUHash) }},
	{"bounded loops", features.HaveBoundedLoops},
	{"helper get_current_ancestor_cgroup_id", sockAddrHelper(asm.FnGetCurrentAncestorCgroupId)},
	{"helper get_current_cgroup_id", sockAddrHelper(asm.FnGetCurrentCgroupId)},
	{"helper get_current_pid_tgid", sockAddrHelper(asm.FnGetCurrentPidTgid)},
	{"helper get_current_uid_gid", sockAddrHelper(asm.FnGetCurrentUidGid)},
	{"helper get_current_ancestor_cgroup_id in cgroup_sock", sockHelper(asm.FnGetCurrentAncestorCgroupId)},
	{"helper get_current_cgroup_id in cgroup_sock", sockHelper(asm.FnGetCurrentCgroupId)},
	{"helper get_socket_cookie", sockAddrHelper(asm.FnGetSocketCookie)},
	{"helper get_netns_cookie", sockAddrHelper(asm.FnGetNetnsCookie)},
	{"helper sock_ops_cb_flags_set", func() error { return features.HaveProgramHelper(ebpf.SockOps, asm.FnSockOpsCbFlagsSet) }},
	{"socket option SO_NETNS_COOKIE", haveNetnsCookieOption},
}

func sockAddrHelper(fn asm.BuiltinFunc) func() error {
	return func() error { return features.HaveProgramHelper(ebpf.CGroupSockAddr, fn) }
}

// sockHelper probes a helper in cgroup_sock programs (sock_create),
// which run find_caller too.
func sockHelper(fn asm.BuiltinFunc) func() error {
	return func() error { return features.HaveProgramHelper(ebpf.CGroupSock, fn) }
}

func haveNetnsCookieOption() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	return err
}

var (
	probeOnce sync.Once
	probeErr  error
)

// ProbeFeatures checks every kernel feature the data path needs, logs the
// results once per process, and returns an error wrapping ErrUnsupported
// that names each missing one.
func ProbeFeatures(logger *slog.Logger) error {
	probeOnce.Do(func() {
		attrs, missing := probeAll(requiredFeatures)
		logger.Info("kernel features probed", attrs...)
		if missing != nil {
			probeErr = fmt.Errorf("%w (interlock needs Linux >= 5.14 with cgroup v2 and BPF enabled, run as root or with CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN): %w",
				ErrUnsupported, missing)
		}
	})
	return probeErr
}

// probeAll runs every probe of fs: the results as log attributes, and the
// missing features joined (nil when none is).
func probeAll(fs []feature) (attrs []any, missing error) {
	var errs []error
	attrs = make([]any, 0, len(fs))
	for _, f := range fs {
		err := f.probe()
		attrs = append(attrs, slog.Bool(f.name, err == nil))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		}
	}
	return attrs, errors.Join(errs...)
}
