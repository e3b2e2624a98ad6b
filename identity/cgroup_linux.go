package identity

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// CgroupV2Root returns the mount point of the cgroup v2 hierarchy, read
// from /proc/self/mountinfo: /sys/fs/cgroup when that is cgroup2, otherwise
// any other cgroup2 mount (hybrid hosts mount it at /sys/fs/cgroup/unified),
// preferring one of the whole hierarchy. With none it returns an error
// wrapping ErrNoCgroup2.
func CgroupV2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("finding the cgroup v2 mount: %w", err)
	}
	defer f.Close()
	root, err := cgroup2Mount(f)
	if err != nil {
		return "", fmt.Errorf("finding the cgroup v2 mount in /proc/self/mountinfo: %w", err)
	}
	return root, nil
}

// CgroupID returns the kernel's id of the cgroup v2 directory path: the id
// bpf_get_current_cgroup_id and the ancestor-cgroup helper see. It is the
// directory's file handle (a 64-bit kernfs node id), falling back to the
// inode number, which is the same id on 64-bit kernels. A path outside a
// cgroup v2 hierarchy returns an error wrapping ErrNoCgroup2.
func CgroupID(path string) (uint64, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return 0, fmt.Errorf("reading the cgroup id: %w", &fs.PathError{Op: "statfs", Path: path, Err: err})
	}
	if sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, fmt.Errorf("reading the cgroup id of %s: not a cgroup v2 directory: %w", path, ErrNoCgroup2)
	}
	if h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW); err == nil && len(h.Bytes()) == 8 {
		// The kernel copies the u64 id into the handle as it is in memory.
		return binary.NativeEndian.Uint64(h.Bytes()), nil
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("reading the cgroup id: %w", &fs.PathError{Op: "stat", Path: path, Err: err})
	}
	return st.Ino, nil
}

// CgroupOwner returns the uid that owns the cgroup directory path: root
// for the cgroups systemd and root make, a user for the ones made in a
// subtree delegated to that user (where the user may make more at will).
func CgroupOwner(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("reading the owner of cgroup %s: %w", path, &fs.PathError{Op: "stat", Path: path, Err: err})
	}
	return st.Uid, nil
}

// fileidKernfs is the kernel's FILEID_KERNFS: a file handle whose 8 bytes
// are a kernfs node id, which for a cgroup is its cgroup id.
const fileidKernfs = 0xfe

// CgroupPathByID returns the path below root (the cgroup v2 mount point),
// like Binding.Path, of the live cgroup whose kernel id is id: the cgroup a
// connection came from when only its id is known. The kernel opens the
// cgroup from its id (open_by_handle_at, which needs CAP_DAC_READ_SEARCH);
// its path is the opened directory's. A cgroup that no longer exists, or an
// id that names no cgroup directory, returns an error wrapping
// ErrCgroupNotFound; a root that is not a cgroup v2 mount, ErrNoCgroup2.
func CgroupPathByID(root string, id uint64) (string, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(root, &sfs); err != nil {
		return "", fmt.Errorf("finding cgroup id %d: %w", id, &fs.PathError{Op: "statfs", Path: root, Err: err})
	}
	if sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		return "", fmt.Errorf("finding cgroup id %d: %s is not a cgroup v2 mount: %w", id, root, ErrNoCgroup2)
	}
	mnt, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("finding cgroup id %d: %w", id, &fs.PathError{Op: "open", Path: root, Err: err})
	}
	defer unix.Close(mnt)
	// The handle holds the u64 id as it is in memory, as CgroupID reads it.
	handle := unix.NewFileHandle(fileidKernfs, binary.NativeEndian.AppendUint64(nil, id))
	fd, err := unix.OpenByHandleAt(mnt, handle, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	switch {
	case errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		// ENOTDIR: the id is a kernfs node that is a file, not a cgroup.
		return "", fmt.Errorf("cgroup id %d: %w", id, ErrCgroupNotFound)
	case err != nil:
		return "", fmt.Errorf("opening cgroup id %d: %w", id, err)
	}
	defer unix.Close(fd)
	dir, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "", fmt.Errorf("reading the path of cgroup id %d: %w", id, err)
	}
	// A cgroup removed since it was opened reads "<path> (deleted)", and
	// its path may name a new cgroup by now: the path counts only while it
	// is still the directory that was opened.
	var opened, named unix.Stat_t
	if err := unix.Fstat(fd, &opened); err != nil {
		return "", fmt.Errorf("reading cgroup id %d: %w", id, err)
	}
	err = unix.Stat(dir, &named)
	switch {
	case errors.Is(err, unix.ENOENT) || err == nil && (named.Ino != opened.Ino || named.Dev != opened.Dev):
		return "", fmt.Errorf("cgroup id %d: removed while it was looked up: %w", id, ErrCgroupNotFound)
	case err != nil:
		return "", fmt.Errorf("reading cgroup id %d: %w", id, &fs.PathError{Op: "stat", Path: dir, Err: err})
	}
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	p, err := cgroupPath(root, dir)
	if err != nil {
		return "", fmt.Errorf("cgroup id %d: %w", id, err)
	}
	return p, nil
}

// systemCgroupTree reads guard directories on this host's cgroup tree.
func systemCgroupTree() cgroupTree { return cgroupTree{isDir: isDir, scan: scanGuardDir} }

// scanGuardDir returns dir's own cgroup id and the highest id among its
// immediate subdirectories, 0 when it has none. A cgroup's id is its
// directory's inode number (see CgroupID), so each child costs one stat.
func scanGuardDir(dir string) (self, highestChild uint64, err error) {
	if self, err = CgroupID(dir); err != nil {
		return 0, 0, err
	}
	f, err := os.Open(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the cgroups below %s: %w", dir, err)
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the cgroups below %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing
		}
		if err != nil {
			return 0, 0, fmt.Errorf("reading the cgroups below %s: %w", dir, err)
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return 0, 0, fmt.Errorf("reading the cgroups below %s: no inode for %s", dir, e.Name())
		}
		highestChild = max(highestChild, st.Ino)
	}
	return self, highestChild, nil
}

// ResolveSelector finds the cgroup directory sel names below root (the
// cgroup v2 mount point) and its kernel id.
//
// A Cgroup selector is root+Cgroup. With createMissing a missing directory
// is created, parents included, so enforcement is in place before the first
// process joins; without it a missing directory is ErrCgroupNotFound.
//
// A SystemdUnit selector asks systemd for the unit's ControlGroup when
// systemd runs; an empty answer means the unit is not running
// (ErrCgroupNotFound). Without systemd, or when asking fails, it looks for a
// directory named exactly like the unit: root/system.slice/UNIT first, then
// anywhere up to six levels below root, but never in a subtree delegated to
// a user (see findDir). A unit's cgroup is never created: systemd owns it.
func ResolveSelector(root string, sel Selector, createMissing bool) (dir string, id uint64, err error) {
	return systemResolver().resolve(root, sel, createMissing)
}

// selectorResolver is ResolveSelector with its ways of asking systemd as
// fields, so tests can stand in for systemd.
type selectorResolver struct {
	systemdRunning func() bool
	// controlGroup returns the unit's ControlGroup property, "" when the
	// unit has no cgroup (it is not running).
	controlGroup func(unit string) (string, error)
	// slice returns the unit's Slice property, the slice unit systemd
	// puts it in ("system.slice"), "" when systemd does not say.
	slice func(unit string) (string, error)
}

// systemdTimeout bounds one systemctl call; the watcher asks every tick.
const systemdTimeout = 5 * time.Second

func systemResolver() selectorResolver {
	return selectorResolver{
		systemdRunning: func() bool {
			// sd_booted(3): systemd is PID 1 exactly when this exists.
			st, err := os.Stat("/run/systemd/system")
			return err == nil && st.IsDir()
		},
		controlGroup: func(unit string) (string, error) { return unitProperty(unit, "ControlGroup") },
		slice:        func(unit string) (string, error) { return unitProperty(unit, "Slice") },
	}
}

// unitProperty asks systemd for one property of unit.
func unitProperty(unit, property string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemctl", "show", "--property="+property, "--value", "--", unit).Output()
	if err != nil {
		return "", fmt.Errorf("systemctl show --property=%s %s: %w", property, unit, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// unitSlice is the Slice property of unit when systemd runs; "" without
// systemd.
func (r selectorResolver) unitSlice(unit string) (string, error) {
	if !r.systemdRunning() {
		return "", nil
	}
	return r.slice(unit)
}

// systemUnitSlice asks this host's systemd, if it runs, for unit's slice.
func systemUnitSlice(unit string) (string, error) { return systemResolver().unitSlice(unit) }

func (r selectorResolver) resolve(root string, sel Selector, createMissing bool) (string, uint64, error) {
	if err := sel.validate(); err != nil {
		return "", 0, err
	}
	if !filepath.IsAbs(root) {
		return "", 0, fmt.Errorf("resolving %s: cgroup root %q is not an absolute path", sel, root)
	}
	var dir string
	var err error
	if sel.Cgroup != "" {
		dir, err = cgroupDir(root, sel.Cgroup, createMissing)
	} else {
		dir, err = r.unitDir(root, sel.SystemdUnit)
	}
	if err != nil {
		return "", 0, err
	}
	id, err := CgroupID(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// Removed between finding and reading it.
		return "", 0, fmt.Errorf("%s: %s: %w", sel, dir, ErrCgroupNotFound)
	}
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", sel, err)
	}
	return dir, id, nil
}

func cgroupDir(root, cgroup string, createMissing bool) (string, error) {
	dir := filepath.Join(root, filepath.FromSlash(cleanCgroupPath(cgroup)))
	if createMissing {
		// Never make folders on a file system that is not the cgroup tree.
		var sfs unix.Statfs_t
		if err := unix.Statfs(root, &sfs); err != nil {
			return "", fmt.Errorf("creating cgroup %s: %w", dir, &fs.PathError{Op: "statfs", Path: root, Err: err})
		}
		if sfs.Type != unix.CGROUP2_SUPER_MAGIC {
			return "", fmt.Errorf("creating cgroup %s: %s is not a cgroup v2 mount: %w", dir, root, ErrNoCgroup2)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("creating cgroup %s: %w", dir, err)
		}
		return dir, nil
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("cgroup %s: %s: %w", cgroup, dir, ErrCgroupNotFound)
	case err != nil:
		return "", fmt.Errorf("looking for cgroup %s: %w", cgroup, err)
	case !st.IsDir():
		return "", fmt.Errorf("cgroup %s: %s is not a directory: %w", cgroup, dir, ErrCgroupNotFound)
	}
	return dir, nil
}

// unitDir finds a systemd unit's cgroup directory below root.
func (r selectorResolver) unitDir(root, unit string) (string, error) {
	if r.systemdRunning() {
		cg, err := r.controlGroup(unit)
		switch {
		case err == nil && cg == "":
			return "", fmt.Errorf("systemd unit %s: not running: %w", unit, ErrCgroupNotFound)
		case err == nil:
			dir := filepath.Join(root, filepath.FromSlash(cleanCgroupPath(cg)))
			if isDir(dir) {
				return dir, nil
			}
			// systemd's path is not below this root (another cgroup
			// namespace): look for the unit's directory instead.
		}
	}
	if slice := filepath.Join(root, "system.slice"); privilegedDir(slice) && isDir(filepath.Join(slice, unit)) {
		return filepath.Join(slice, unit), nil
	}
	if dir, ok := findDir(root, unit, unitSearchDepth, unitSearchBudget); ok {
		return dir, nil
	}
	return "", fmt.Errorf("systemd unit %s: no cgroup named %s below %s: %w", unit, unit, root, ErrCgroupNotFound)
}

// The walk for a unit's directory goes this many levels below the root and
// reads at most this many directories, so a host with a huge cgroup tree
// cannot make one watcher tick slow.
const (
	unitSearchDepth  = 6
	unitSearchBudget = 100_000
)

// findDir walks root breadth first, shallowest and then alphabetically
// first match winning, for a directory called name at most depth levels
// down, reading at most budget directories. It does not descend into a
// directory that someone other than root (or the gateway's user) could
// make directories in: in a subtree delegated to a user (systemd's
// user@UID.service, a container's), that user could make one named like
// the unit and have its processes taken for the workload.
func findDir(root, name string, depth, budget int) (string, bool) {
	level := []string{root}
	for d := 1; d <= depth && len(level) > 0; d++ {
		var next []string
		for _, dir := range level {
			if budget--; budget < 0 {
				return "", false
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				continue // removed meanwhile, or unreadable: not ours to find
			}
			for _, e := range entries {
				if !e.IsDir() {
					continue
				}
				p := filepath.Join(dir, e.Name())
				if e.Name() == name {
					// Its parent is the gateway's, so its own owner does
					// not matter: systemd chowns a Delegate=yes unit's
					// cgroup to the unit's user.
					return p, true
				}
				if privilegedDir(p) {
					next = append(next, p)
				}
			}
		}
		level = next
	}
	return "", false
}

// privilegedDir reports whether only root (or the gateway's own user) can
// make cgroups in the directory p: it belongs to one of them, and neither
// group nor others may write to it.
func privilegedDir(p string) bool {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false
	}
	return (st.Uid == 0 || int(st.Uid) == os.Geteuid()) && st.Mode&0o022 == 0
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
