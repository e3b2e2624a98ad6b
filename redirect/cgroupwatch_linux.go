package redirect

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// cgroupMkdirPin is the pin of the cgroup_mkdir program's link: pinned, it
// keeps classifying new cgroups while no gateway runs.
const cgroupMkdirPin = "link_cgroup_mkdir"

// cgroupWatch is the cgroup_mkdir tracing program (bpf/cgroupwatch.c) and
// its link. It shares the cgroup maps with the connect programs by pin.
type cgroupWatch struct {
	objs cgroupwatchObjects
	link link.Link
}

var cgroupWatchFeatures = []feature{
	{"kernel BTF", func() error { _, err := btf.LoadKernelSpec(); return err }},
	{"BTF tracepoint cgroup_mkdir", haveCgroupMkdirProgram},
}

// haveCgroupMkdirProgram loads an empty program of the kind cgroupwatch.c
// is (tp_btf/cgroup_mkdir). features.HaveProgramType(ebpf.Tracing) would
// probe an fentry program, which kernels that allow BTF tracepoints may
// still refuse (without ftrace's direct calls).
func haveCgroupMkdirProgram() error {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceRawTp,
		AttachTo:     "cgroup_mkdir",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		return err
	}
	return p.Close()
}

var (
	watchProbeOnce sync.Once
	watchProbeErr  error
)

// probeCgroupWatch checks what the cgroup_mkdir program needs, and logs
// the results once per process. The program is optional: without it new
// cgroups are classified by the gateway's passes, through the guards.
func probeCgroupWatch(logger *slog.Logger) error {
	watchProbeOnce.Do(func() {
		attrs, missing := probeAll(cgroupWatchFeatures)
		logger.Info("kernel features for classifying new cgroups at mkdir probed", attrs...)
		if missing != nil {
			watchProbeErr = fmt.Errorf("%w: %w", ErrUnsupported, missing)
		}
	})
	return watchProbeErr
}

// openCgroupWatch loads the cgroup_mkdir program over the maps pinned in
// pinPath and attaches it, replacing the program of a link pinned by an
// earlier gateway. It returns an error wrapping ErrUnsupported when the
// kernel cannot run it.
func openCgroupWatch(logger *slog.Logger, pinPath string) (*cgroupWatch, error) {
	if err := probeCgroupWatch(logger); err != nil {
		return nil, err
	}
	spec, err := loadCgroupwatch()
	if err != nil {
		return nil, fmt.Errorf("loading eBPF spec: %w", err)
	}
	w := &cgroupWatch{}
	err = spec.LoadAndAssign(&w.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: pinPath}})
	if err != nil {
		return nil, fmt.Errorf("loading eBPF objects: %w", err)
	}
	l, adopted, err := replaceTracingLink(filepath.Join(pinPath, cgroupMkdirPin), w.objs.InterlockCgroupMkdir)
	if err != nil {
		w.objs.Close()
		return nil, fmt.Errorf("attaching cgroup_mkdir: %w", err)
	}
	w.link = l
	logger.Debug("eBPF program in place", "program", "cgroup_mkdir", "adopted", adopted)
	return w, nil
}

// replaceTracingLink attaches prog and pins its link at pin, in place of
// the link pinned there, if any. A tracing link's program cannot be
// replaced (the kernel has no bpf_link_update for it), so the new link is
// attached first and renamed over the old pin: the two run side by side
// for a moment (they write the same entries), and there is no moment
// without one. Dropping the old pin and then our handle detaches the old
// link. adopted says there was one.
func replaceTracingLink(pin string, prog *ebpf.Program) (l link.Link, adopted bool, err error) {
	old, err := link.LoadPinnedLink(pin, nil)
	switch {
	case err == nil:
		// Closed last, once its pin is gone: the last reference, so the
		// old link is detached before this returns.
		defer old.Close()
		adopted = true
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, false, fmt.Errorf("loading pinned link %s: %w", pin, err)
	}
	l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		return nil, false, err
	}
	next := pin + "_next" // bpffs refuses names with a dot
	// A gateway that stopped between the pin and the rename left this.
	if err := os.Remove(next); err != nil && !errors.Is(err, fs.ErrNotExist) {
		l.Close()
		return nil, false, fmt.Errorf("removing %s: %w", next, err)
	}
	if err := l.Pin(next); err != nil {
		l.Close()
		return nil, false, fmt.Errorf("pinning link: %w", err)
	}
	if err := os.Rename(next, pin); err != nil {
		l.Unpin()
		l.Close()
		return nil, false, fmt.Errorf("pinning link at %s: %w", pin, err)
	}
	// The link's handle still names the first pin: take one that knows
	// where it is pinned now.
	l.Close()
	l, err = link.LoadPinnedLink(pin, nil)
	if err != nil {
		return nil, false, fmt.Errorf("loading pinned link %s: %w", pin, err)
	}
	return l, adopted, nil
}

// mountedAtHierarchyRoot checks that the cgroup v2 mount holding dir shows
// the hierarchy from its root. The program matches the paths the kernel
// gives, from that root, against the gateway's, which are below the mount:
// a mount of one cgroup (a gateway in its own cgroup namespace, or a
// folder bind-mounted) would match none of them, and every cgroup made in
// a guarded parent, a workload's too, would be settled as no workload's.
// The root is the one cgroup without a cgroup.type file.
func mountedAtHierarchyRoot(dir string) error {
	mount, err := mountPoint(dir)
	if err != nil {
		return err
	}
	_, err = os.Lstat(filepath.Join(mount, "cgroup.type"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("%w: the cgroup v2 mount at %s shows one cgroup, not the hierarchy's root (a cgroup namespace, or a bind mount), and the kernel names new cgroups from the root", ErrUnsupported, mount)
}

// mountPoint is the top of the file system dir is on: the highest folder
// above it on the same device.
func mountPoint(dir string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return "", fmt.Errorf("reading %s: %w", dir, err)
	}
	dir = filepath.Clean(dir)
	for dir != "/" {
		parent := filepath.Dir(dir)
		var up unix.Stat_t
		if err := unix.Stat(parent, &up); err != nil {
			return "", fmt.Errorf("reading %s: %w", parent, err)
		}
		if up.Dev != st.Dev {
			break
		}
		dir = parent
	}
	return dir, nil
}

// removeCgroupWatch unpins and detaches the cgroup_mkdir link at pinPath,
// if any: a gateway that does not run the program must not leave an
// earlier one's classifying cgroups by paths it no longer writes.
//
// The link is unpinned while this process holds it, so that closing it
// drops the last reference and detaches it before returning; removing
// the pin alone would leave the kernel to free it a moment later.
func removeCgroupWatch(pinPath string) error {
	l, err := link.LoadPinnedLink(filepath.Join(pinPath, cgroupMkdirPin), nil)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading the pinned cgroup_mkdir link: %w", err)
	}
	defer l.Close()
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("unpinning the cgroup_mkdir link: %w", err)
	}
	return nil
}

func (w *cgroupWatch) Close() error {
	return errors.Join(w.link.Close(), w.objs.Close())
}
