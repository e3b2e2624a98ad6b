package identity

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inotifyEvent encodes one event as the kernel does, its name padded.
func inotifyEvent(mask uint32, name string, pad int) []byte {
	b := binary.NativeEndian.AppendUint32(nil, 1) // wd
	b = binary.NativeEndian.AppendUint32(b, mask)
	b = binary.NativeEndian.AppendUint32(b, 0) // cookie
	b = binary.NativeEndian.AppendUint32(b, uint32(len(name)+pad))
	b = append(b, name...)
	return append(b, make([]byte, pad)...)
}

func TestGuardEvent(t *testing.T) {
	dirMade := inotifyEvent(unix.IN_CREATE|unix.IN_ISDIR, "a.service", 7)
	fileMade := inotifyEvent(unix.IN_CREATE, "cgroup.procs", 4)
	tests := []struct {
		name string
		buf  []byte
		want bool
	}{
		{"a directory made", dirMade, true},
		{"a file made", fileMade, false},
		{"a directory made after a file", append(slices.Clone(fileMade), dirMade...), true},
		{"a directory removed", inotifyEvent(unix.IN_DELETE|unix.IN_ISDIR, "a.service", 7), true},
		{"a file removed", inotifyEvent(unix.IN_DELETE, "x", 3), false},
		{"events lost", inotifyEvent(unix.IN_Q_OVERFLOW, "", 0), true},
		{"a watch dropped", inotifyEvent(unix.IN_IGNORED, "", 0), false},
		{"nothing", nil, false},
		{"a cut header", dirMade[:10], false},
		{"a length past the end", append(inotifyEvent(unix.IN_CREATE, "", 0)[:12], 0xff, 0xff, 0xff, 0xff), false},
	}
	for _, tt := range tests {
		if got := guardEvent(tt.buf); got != tt.want {
			t.Errorf("%s: guardEvent = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func FuzzGuardEvent(f *testing.F) {
	f.Add(inotifyEvent(unix.IN_CREATE|unix.IN_ISDIR, "a", 3))
	f.Add(append(inotifyEvent(unix.IN_CREATE, "b", 0), inotifyEvent(unix.IN_DELETE|unix.IN_ISDIR, "c", 3)...))
	f.Fuzz(func(t *testing.T, buf []byte) { guardEvent(buf) })
}

// The systemd stand-in is asked for a unit's slice only when systemd runs.
func TestResolverUnitSlice(t *testing.T) {
	asked := ""
	r := selectorResolver{
		systemdRunning: func() bool { return false },
		slice:          func(u string) (string, error) { asked = u; return "agents.slice", nil },
	}
	if s, err := r.unitSlice("a.service"); s != "" || err != nil || asked != "" {
		t.Errorf("without systemd: unitSlice = %q, %v (asked %q); want nothing asked", s, err, asked)
	}
	r.systemdRunning = func() bool { return true }
	if s, err := r.unitSlice("a.service"); s != "agents.slice" || err != nil || asked != "a.service" {
		t.Errorf("with systemd: unitSlice = %q, %v (asked %q); want agents.slice for a.service", s, err, asked)
	}
}

func cgroupID(t *testing.T, dir string) uint64 {
	t.Helper()
	id, err := CgroupID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// On real cgroups: the watermark is the guard directory's highest child,
// read before the workloads resolve, so cgroups made during and after the
// pass are above it.
func TestGuardWatermarkCgroups(t *testing.T) {
	requirePrivileged(t)
	root := v2Root(t)
	dir, path := testCgroup(t, root)
	for _, c := range []string{"a", "b", "c", "empty"} {
		mkdirAll(t, filepath.Join(dir, c))
	}
	rec := &guardRecorder{}
	during := filepath.Join(dir, "during")
	w := &Watcher{
		Root: root,
		Workloads: []WatchedWorkload{
			{ID: 1, Name: "b", Selector: Selector{Cgroup: path + "/b"}},
			{ID: 2, Name: "x", Selector: Selector{Cgroup: path + "/empty/x"}},
		},
		OnGuards: rec.onGuards,
		resolve: func(root string, sel Selector, create bool) (string, uint64, error) {
			if _, err := os.Stat(during); err != nil {
				mkdirAll(t, during)
			}
			return ResolveSelector(root, sel, create)
		},
	}
	gs := below(t, syncGuards(t, w, rec), path, []uint32{1, 2})
	highest := max(cgroupID(t, filepath.Join(dir, "a")), cgroupID(t, filepath.Join(dir, "b")),
		cgroupID(t, filepath.Join(dir, "c")), cgroupID(t, filepath.Join(dir, "empty")))
	emptyID := cgroupID(t, filepath.Join(dir, "empty"))
	want := []Guard{
		{Path: path, CgroupID: cgroupID(t, dir), Watermark: highest, Workloads: []uint32{1, 2}},
		{Path: path + "/empty", CgroupID: emptyID, Watermark: emptyID, Workloads: []uint32{2}}, // no children: its own id
	}
	if !slices.EqualFunc(gs, want, Guard.equal) {
		t.Fatalf("guards = %+v, want %+v", gs, want)
	}
	if id := cgroupID(t, during); id <= gs[0].Watermark {
		t.Errorf("the cgroup made while resolving has id %d, not above the watermark %d", id, gs[0].Watermark)
	}

	after := filepath.Join(dir, "after")
	mkdirAll(t, after)
	afterID := cgroupID(t, after)
	if afterID <= gs[0].Watermark {
		t.Errorf("a cgroup made after the pass has id %d, not above the watermark %d", afterID, gs[0].Watermark)
	}
	if gs = below(t, syncGuards(t, w, rec), path, []uint32{1, 2}); len(gs) != 2 || gs[0].Watermark != afterID {
		t.Errorf("next pass: guards = %+v, want %s's watermark at %d", gs, path, afterID)
	}
}

// below checks that the guards above the test's cgroup p are those of its
// ancestors (but the root), each for workloads, and returns the rest.
func below(t *testing.T, gs []Guard, p string, workloads []uint32) []Guard {
	t.Helper()
	above := guardChain(filepath.Dir(p))
	if len(gs) < len(above) || !slices.EqualFunc(gs[:len(above)], above, func(g Guard, want string) bool {
		return g.Path == want && slices.Equal(g.Workloads, workloads)
	}) {
		t.Fatalf("guards = %+v, want first the ancestors %v of %s for workloads %v", gs, above, p, workloads)
	}
	return gs[len(above):]
}

// inotifyWatches returns how many inotify descriptors this process holds
// and the inodes they watch, from /proc/self/fdinfo.
func inotifyWatches(t *testing.T) (fds int, inodes map[uint64]bool) {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	inodes = map[uint64]bool{}
	for _, e := range entries {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || l != "anon_inode:inotify" {
			continue
		}
		fds++
		f, err := os.Open("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			for field := range strings.FieldsSeq(sc.Text()) {
				if v, ok := strings.CutPrefix(field, "ino:"); ok && strings.HasPrefix(sc.Text(), "inotify ") {
					if ino, err := strconv.ParseUint(v, 16, 64); err == nil {
						inodes[ino] = true
					}
				}
			}
		}
		f.Close()
	}
	return fds, inodes
}

// waitWatched waits until an inotify watch is on dir, so that what the
// test makes next is seen.
func waitWatched(t *testing.T, dir string) {
	t.Helper()
	id := cgroupID(t, dir) // the inode number
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, inodes := inotifyWatches(t); inodes[id] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no inotify watch on %s", dir)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Run resolves when a cgroup is made in a guard directory, without waiting
// for its interval (an hour here), follows a guard directory that is
// removed and made again, and closes its inotify descriptor when it ends.
func TestWatcherRunGuardEvents(t *testing.T) {
	requirePrivileged(t)
	root := v2Root(t)
	dir, path := testCgroup(t, root)
	slice := filepath.Join(dir, "g.slice")
	mkdirAll(t, slice)
	fdsBefore, _ := inotifyWatches(t)

	changes := make(chan []Binding, 64)
	guards := make(chan []Guard, 64)
	w := &Watcher{
		Root:      root,
		Workloads: []WatchedWorkload{{ID: 1, Name: "w", Selector: Selector{Cgroup: path + "/g.slice/w"}}},
		Interval:  time.Hour,
		OnChange:  func(bs []Binding) error { changes <- bs; return nil },
		OnGuards:  func(gs []Guard) error { guards <- gs; return nil },
	}
	nextGuards := func(what string, ok func([]Guard) bool) []Guard {
		t.Helper()
		return await(t, guards, "guards "+what, ok)
	}
	// guarding: p is the deepest guard, below the guards of its
	// ancestors (each but the root).
	guarding := func(p string) func([]Guard) bool {
		return func(gs []Guard) bool {
			return len(gs) > 0 && gs[len(gs)-1].Path == p && slices.EqualFunc(gs[:len(gs)-1], guardChain(filepath.Dir(p)),
				func(g Guard, want string) bool { return g.Path == want })
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v, want context.Canceled", err)
			}
		}
	}
	defer stop()

	gs := nextGuards("at start", guarding(path+"/g.slice"))
	if id := cgroupID(t, slice); gs[len(gs)-1].Watermark != id {
		t.Errorf("watermark of the empty guard directory = %d, want its own id %d", gs[len(gs)-1].Watermark, id)
	}
	waitWatched(t, slice)
	waitWatched(t, dir) // its parent

	// The workload's cgroup appears, as a unit's does when it starts.
	wdir := filepath.Join(slice, "w")
	mkdirAll(t, wdir)
	wid := cgroupID(t, wdir)
	nextGuards("after the cgroup was made", func(gs []Guard) bool { return guarding(path+"/g.slice")(gs) && gs[len(gs)-1].Watermark == wid })
	await(t, changes, "OnChange with the new cgroup", func(bs []Binding) bool { return len(bs) == 1 && bs[0].CgroupID == wid })

	// The guard directory goes: the guard moves up to the test's cgroup.
	removeCgroupTree(t, slice)
	nextGuards("after the guard directory was removed", guarding(path))
	// and comes back.
	mkdirAll(t, slice)
	nextGuards("after the guard directory was made again", guarding(path+"/g.slice"))

	stop()
	if fds, _ := inotifyWatches(t); fds != fdsBefore {
		t.Errorf("%d inotify descriptors open after Run ended, %d before it started", fds, fdsBefore)
	}
}

// await returns the first value from c that ok accepts, failing the test
// when none comes within a generous timeout.
func await[T any](t *testing.T, c <-chan T, what string, ok func(T) bool) T {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case v := <-c:
			if ok(v) {
				return v
			}
		case <-timeout:
			t.Fatalf("no %s", what)
		}
	}
}

func TestCgroupPathByID(t *testing.T) {
	requirePrivileged(t)
	root := v2Root(t)
	dir, path := testCgroup(t, root)
	child := filepath.Join(dir, "x")
	mkdirAll(t, child)
	id := cgroupID(t, child)

	if got, err := CgroupPathByID(root, id); err != nil || got != path+"/x" {
		t.Errorf("CgroupPathByID(%d) = %q, %v; want %q", id, got, err, path+"/x")
	}
	if got, err := CgroupPathByID(root, cgroupID(t, root)); err != nil || got != "/" {
		t.Errorf("CgroupPathByID(the root's id) = %q, %v; want /", got, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(child, "cgroup.procs"), &st); err != nil {
		t.Fatal(err)
	}
	if got, err := CgroupPathByID(root, st.Ino); !errors.Is(err, ErrCgroupNotFound) {
		t.Errorf("CgroupPathByID(a file's id) = %q, %v; want ErrCgroupNotFound", got, err)
	}
	if got, err := CgroupPathByID(t.TempDir(), id); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("CgroupPathByID with a plain folder as root = %q, %v; want ErrNoCgroup2", got, err)
	}

	removeCgroupTree(t, child)
	if got, err := CgroupPathByID(root, id); !errors.Is(err, ErrCgroupNotFound) {
		t.Errorf("CgroupPathByID(%d) after rmdir = %q, %v; want ErrCgroupNotFound", id, got, err)
	}
}
