package identity

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// dirWatch tells Run, through inotify, when a cgroup is made or removed in
// a guard directory or in its parent. cgroupfs sends no IN_DELETE_SELF for
// a removed directory: the parent's watch sees a guard directory go, and
// come back (a slice stopped and started), so that its new id is guarded
// promptly too.
type dirWatch struct {
	log     *slog.Logger
	fd      int      // the inotify descriptor, for adding and removing watches
	file    *os.File // fd, read through the poller so that Close ends a read; nil without inotify
	events  chan struct{}
	stopped chan struct{} // closed when the reader has returned
	wds     map[watchKey]int
	failed  map[string]string // directory → why it cannot be watched, as logged
}

// watchKey is a watched directory: one removed and made again at the same
// path is a new inode, to watch again.
type watchKey struct {
	dir string
	ino uint64
}

// watchMask: directories made or removed in the watched directory.
// IN_ONLYDIR refuses to watch anything but a directory.
const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_ONLYDIR

func newDirWatch(log *slog.Logger) *dirWatch {
	d := &dirWatch{log: log, events: make(chan struct{}, 1), wds: map[watchKey]int{}, failed: map[string]string{}}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		log.Warn("cannot watch cgroup guard directories: new cgroups are resolved at the next interval", "error", err)
		return d
	}
	// A non-blocking descriptor goes to the runtime's poller: a read
	// waits there, and Close wakes it.
	d.fd, d.file, d.stopped = fd, os.NewFile(uintptr(fd), "inotify"), make(chan struct{})
	go d.read()
	return d
}

func (d *dirWatch) read() {
	defer close(d.stopped)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := d.file.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				d.log.Warn("reading cgroup guard events stopped: new cgroups are resolved at the next interval", "error", err)
			}
			return
		}
		if guardEvent(buf[:n]) {
			select {
			case d.events <- struct{}{}:
			default:
			}
		}
	}
}

// guardEvent reports whether buf, what one read of an inotify descriptor
// returned, holds an event that calls for a pass: a directory made or
// removed, or events lost to a full queue.
func guardEvent(buf []byte) bool {
	for len(buf) >= unix.SizeofInotifyEvent {
		mask := binary.NativeEndian.Uint32(buf[4:8])
		if mask&unix.IN_Q_OVERFLOW != 0 || mask&unix.IN_ISDIR != 0 && mask&(unix.IN_CREATE|unix.IN_DELETE) != 0 {
			return true
		}
		next := uint64(unix.SizeofInotifyEvent) + uint64(binary.NativeEndian.Uint32(buf[12:16]))
		if next > uint64(len(buf)) {
			return false
		}
		buf = buf[next:]
	}
	return false
}

// created receives when a pass is called for; nil without inotify.
func (d *dirWatch) created() <-chan struct{} {
	if d.file == nil {
		return nil
	}
	return d.events
}

// set makes the watches those of guards' directories below root and of
// their parents. A directory that cannot be watched is logged once and
// tried again next time.
func (d *dirWatch) set(root string, guards []Guard) {
	if d.file == nil {
		return
	}
	var dirs []string
	for _, g := range guards {
		dirs = append(dirs, g.Path)
		if g.Path != "/" {
			dirs = append(dirs, path.Dir(g.Path))
		}
	}
	slices.Sort(dirs)
	next := make(map[watchKey]int, len(dirs))
	failed := map[string]string{}
	for _, dir := range slices.Compact(dirs) {
		full := filepath.Join(root, filepath.FromSlash(dir))
		var st unix.Stat_t
		err := unix.Stat(full, &st)
		k := watchKey{dir, st.Ino}
		if wd, ok := d.wds[k]; ok && err == nil {
			next[k] = wd
			continue
		}
		wd := -1
		if err == nil {
			wd, err = unix.InotifyAddWatch(d.fd, full, watchMask)
		}
		if err != nil {
			failed[dir] = err.Error()
			if d.failed[dir] != err.Error() {
				d.log.Warn("cgroup guard directory "+dir+": cannot watch it, cgroups made there are resolved at the next interval", "directory", dir, "error", err)
			}
			continue
		}
		next[k] = wd
	}
	// The kernel gives one inode one watch: a key that went may share its
	// descriptor with one that stays.
	kept := make(map[int]bool, len(next))
	for _, wd := range next {
		kept[wd] = true
	}
	for k, wd := range d.wds {
		if _, ok := next[k]; !ok && !kept[wd] {
			// Fails harmlessly when the directory, and so the watch, is gone.
			_, _ = unix.InotifyRmWatch(d.fd, uint32(wd))
		}
	}
	d.wds, d.failed = next, failed
}

// close stops reading and closes the inotify descriptor.
func (d *dirWatch) close() {
	if d.file == nil {
		return
	}
	_ = d.file.Close()
	<-d.stopped
}
