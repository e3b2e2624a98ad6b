package identity

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func isCgroup2(path string) bool {
	var s unix.Statfs_t
	return unix.Statfs(path, &s) == nil && s.Type == unix.CGROUP2_SUPER_MAGIC
}

// On this host's layout: /sys/fs/cgroup on a v2 host, /sys/fs/cgroup/unified
// on a hybrid one.
func TestCgroupV2RootHere(t *testing.T) {
	root := v2Root(t)
	if !isCgroup2(root) {
		t.Fatalf("CgroupV2Root() = %s, which is not a cgroup2 file system", root)
	}
	switch {
	case isCgroup2("/sys/fs/cgroup"):
		if root != "/sys/fs/cgroup" {
			t.Errorf("CgroupV2Root() = %s on a v2 host, want /sys/fs/cgroup", root)
		}
	case isCgroup2("/sys/fs/cgroup/unified"):
		if root != "/sys/fs/cgroup/unified" {
			t.Errorf("CgroupV2Root() = %s on a hybrid host, want /sys/fs/cgroup/unified", root)
		}
	}
}

func TestProcessSelf(t *testing.T) {
	self := uint32(os.Getpid())
	exe, err := ProcessExecutable(self)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if exe != want {
		t.Errorf("ProcessExecutable(self) = %q, want %q", exe, want)
	}

	path, err := ProcessCgroup(self)
	if err != nil {
		t.Fatal(err)
	}
	root := v2Root(t)
	if st, err := os.Stat(filepath.Join(root, path)); err != nil || !st.IsDir() {
		t.Errorf("ProcessCgroup(self) = %q, but %s is no cgroup directory: %v", path, filepath.Join(root, path), err)
	}

	r := NewRegistry([]Workload{{ID: 1, Name: "agent", Identity: Identity{Subject: "alice"}}})
	c, err := r.Caller(1, self, 1000, 77)
	if err != nil {
		t.Fatal(err)
	}
	wantCaller := Caller{Workload: "agent", WorkloadID: 1, Identity: Identity{Subject: "alice"}, PID: self, UID: 1000, Executable: want, CgroupID: 77}
	if fmt.Sprint(c) != fmt.Sprint(wantCaller) {
		t.Errorf("Caller = %+v, want %+v", c, wantCaller)
	}
}

func TestProcessGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("no true(1) to start: %v", err)
	}
	pid := uint32(cmd.Process.Pid)
	if _, err := ProcessExecutable(pid); !errors.Is(err, ErrNoProcess) {
		t.Errorf("ProcessExecutable of an exited process: error = %v, want ErrNoProcess", err)
	}
	if _, err := ProcessCgroup(pid); !errors.Is(err, ErrNoProcess) {
		t.Errorf("ProcessCgroup of an exited process: error = %v, want ErrNoProcess", err)
	}
	for _, p := range []uint32{0, pid} {
		if _, err := ProcessCgroup(p); !errors.Is(err, ErrNoProcess) {
			t.Errorf("ProcessCgroup(%d): error = %v, want ErrNoProcess", p, err)
		}
	}
	// The connection was attributed by the kernel: a caller that is gone by
	// now still gets its Caller, without an executable.
	r := NewRegistry([]Workload{{ID: 1, Name: "agent"}})
	c, err := r.Caller(1, pid, 0, 5)
	if err != nil || c.Executable != "" || c.PID != pid || c.Workload != "agent" {
		t.Errorf("Caller for an exited process = %+v, %v; want the workload, the pid, no executable, no error", c, err)
	}
}

func TestCgroupIDOutsideCgroupfs(t *testing.T) {
	if _, err := CgroupID(t.TempDir()); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("CgroupID of a plain directory: error = %v, want ErrNoCgroup2", err)
	}
	if _, err := CgroupID(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CgroupID of a missing path: error = %v, want fs.ErrNotExist", err)
	}
}

// The id CgroupID returns is the kernel's: its file handle opens the same
// directory, it is the inode number, and a process started in the cgroup
// reads the cgroup's path.
func TestCgroupID(t *testing.T) {
	requirePrivileged(t)
	root := v2Root(t)
	dir, path := testCgroup(t, root)

	id, err := CgroupID(dir)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if id != st.Ino {
		t.Errorf("CgroupID = %d, inode = %d", id, st.Ino)
	}

	// Open the directory from a handle made of the id alone: the kernel
	// agrees the id names this cgroup.
	mnt, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(mnt)
	raw := binary.NativeEndian.AppendUint64(nil, id)
	fd, err := unix.OpenByHandleAt(mnt, unix.NewFileHandle(fileidKernfs, raw), unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		t.Fatalf("open_by_handle_at(cgroup id %d): %v", id, err)
	}
	var byHandle unix.Stat_t
	err = unix.Fstat(fd, &byHandle)
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	if byHandle.Ino != st.Ino || byHandle.Dev != st.Dev {
		t.Errorf("the handle of id %d opens inode %d, want %d", id, byHandle.Ino, st.Ino)
	}

	// Start a process directly in the cgroup.
	cgfd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	child := exec.Command("sleep", "60")
	child.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	if err := child.Start(); err != nil {
		t.Fatalf("starting a process in %s: %v", dir, err)
	}
	defer func() {
		_ = child.Process.Kill()
		_ = child.Wait()
	}()
	got, err := ProcessCgroup(uint32(child.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if got != path {
		t.Errorf("ProcessCgroup(child) = %q, want %q", got, path)
	}
	if childID, err := CgroupID(filepath.Join(root, got)); err != nil || childID != id {
		t.Errorf("CgroupID of the child's cgroup = %d, %v; want %d", childID, err, id)
	}
}

// A live cgroup named "support (deleted)", which anyone who may make
// cgroups next to a workload's "support" can make, reads in /proc like
// "support" removed: its processes must not be taken for that workload's.
func TestProcessCgroupNamedDeleted(t *testing.T) {
	requirePrivileged(t)
	root := v2Root(t)
	dir, path := testCgroup(t, root)
	mkdirAll(t, filepath.Join(dir, "support"))
	lookalike := filepath.Join(dir, "support (deleted)")
	mkdirAll(t, lookalike)
	cgfd, err := os.Open(lookalike)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	child := exec.Command("sleep", "60")
	child.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	if err := child.Start(); err != nil {
		t.Fatalf("starting a process in %s: %v", lookalike, err)
	}
	defer func() {
		_ = child.Process.Kill()
		_ = child.Wait()
	}()
	got, err := ProcessCgroup(uint32(child.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if want := path + "/support (deleted)"; got != want {
		t.Errorf("ProcessCgroup(child) = %q, want %q", got, want)
	}
	support := Binding{WorkloadID: 1, Name: "support", Path: path + "/support"}
	if b, ok := MatchCgroupPath(got, []Binding{support}); ok {
		t.Errorf("a process in %q was taken for workload %s (%s)", got, b.Name, b.Path)
	}
}

// What needs no privilege: the cgroup is missing and must not be created.
func TestResolveSelectorMissing(t *testing.T) {
	root := v2Root(t)
	path := fmt.Sprintf("/interlock-test-%d/missing/demo", os.Getpid())
	_, _, err := ResolveSelector(root, Selector{Cgroup: path}, false)
	if !errors.Is(err, ErrCgroupNotFound) {
		t.Fatalf("ResolveSelector(missing cgroup) error = %v, want ErrCgroupNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(root, path)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the missing cgroup was created: %v", err)
	}
	if _, _, err := ResolveSelector(root, Selector{}, false); !errors.Is(err, ErrInvalidSelector) {
		t.Errorf("ResolveSelector(empty selector) error = %v, want ErrInvalidSelector", err)
	}
	// Creating is refused outside a cgroup v2 mount, and without a root.
	plain := t.TempDir()
	if _, _, err := ResolveSelector(plain, Selector{Cgroup: "/agents"}, true); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("ResolveSelector(create in a plain folder) error = %v, want ErrNoCgroup2", err)
	}
	if _, err := os.Stat(filepath.Join(plain, "agents")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a folder was created outside the cgroup tree: %v", err)
	}
	if _, _, err := ResolveSelector("", Selector{Cgroup: "/agents"}, true); err == nil {
		t.Error("ResolveSelector with an empty root: no error")
	}
}

func TestResolveSelectorCgroup(t *testing.T) {
	requirePrivileged(t)
	root := v2Root(t)
	dir, path := testCgroup(t, root)

	tests := []struct {
		name    string
		cgroup  string
		create  bool
		wantDir string
		wantErr error
	}{
		{"created with its parents", path + "/agents/demo", true, dir + "/agents/demo", nil},
		{"now there without creating", path + "/agents/demo", false, dir + "/agents/demo", nil},
		{"unclean path", path + "//agents/./demo/", false, dir + "/agents/demo", nil},
		{"cannot climb out of the root", "/../../" + path + "/agents", false, dir + "/agents", nil},
		{"missing", path + "/agents/other", false, "", ErrCgroupNotFound},
		{"a file is no cgroup", path + "/cgroup.procs", false, "", ErrCgroupNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotDir, id, err := ResolveSelector(root, Selector{Cgroup: tt.cgroup}, tt.create)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if gotDir != tt.wantDir {
				t.Errorf("dir = %q, want %q", gotDir, tt.wantDir)
			}
			if err != nil {
				return
			}
			if want, err := CgroupID(gotDir); err != nil || id != want {
				t.Errorf("id = %d, CgroupID = %d, %v", id, want, err)
			}
		})
	}
}

func TestResolveSelectorUnit(t *testing.T) {
	requirePrivileged(t)
	root := v2Root(t)
	dir, path := testCgroup(t, root)
	unit := fmt.Sprintf("itest-%d.service", os.Getpid())
	unitDir := filepath.Join(dir, "fake.slice", unit)
	mkdirAll(t, unitDir)
	deepUnit := fmt.Sprintf("itest-deep-%d.service", os.Getpid())
	mkdirAll(t, filepath.Join(dir, "a", "b", "c", "d", "e", deepUnit)) // 8 levels below root
	// A subtree systemd delegated to user 1000 (user@1000.service): the
	// user makes cgroups there at will, one named like a unit included.
	userUnit := fmt.Sprintf("itest-user-%d.service", os.Getpid())
	delegated := filepath.Join(dir, "user.slice", "user@1000.service")
	mkdirAll(t, filepath.Join(delegated, userUnit))
	chownTree(t, delegated, 1000)
	// A unit with Delegate=yes and User=: systemd hands its own cgroup to
	// that user, in a slice only root writes to.
	delegUnit := fmt.Sprintf("itest-deleg-%d.service", os.Getpid())
	delegUnitDir := filepath.Join(dir, "fake.slice", delegUnit)
	mkdirAll(t, delegUnitDir)
	chownTree(t, delegUnitDir, 1000)

	noSystemd := func() bool { return false }
	withSystemd := func() bool { return true }
	answer := func(cg string, err error) func(string) (string, error) {
		return func(string) (string, error) { return cg, err }
	}
	unused := func(string) (string, error) { panic("systemd asked though it does not run") }

	tests := []struct {
		name    string
		r       selectorResolver
		unit    string
		create  bool
		wantDir string
		wantErr error
	}{
		{"found by walking the tree", selectorResolver{systemdRunning: noSystemd, controlGroup: unused}, unit, false, unitDir, nil},
		{"never created", selectorResolver{systemdRunning: noSystemd, controlGroup: unused}, "itest-none.service", true, "", ErrCgroupNotFound},
		{"too deep for the walk", selectorResolver{systemdRunning: noSystemd, controlGroup: unused}, deepUnit, false, "", ErrCgroupNotFound},
		{"made by a user in its delegated subtree", selectorResolver{systemdRunning: noSystemd, controlGroup: unused}, userUnit, false, "", ErrCgroupNotFound},
		{"systemctl fails: a user's is not walked to", selectorResolver{systemdRunning: withSystemd, controlGroup: answer("", errors.New("exit status 1"))}, userUnit, false, "", ErrCgroupNotFound},
		{"a delegated unit's own cgroup", selectorResolver{systemdRunning: noSystemd, controlGroup: unused}, delegUnit, false, delegUnitDir, nil},
		{"systemd's answer", selectorResolver{systemdRunning: withSystemd, controlGroup: answer(path+"/fake.slice/"+unit, nil)}, "other-name.service", false, unitDir, nil},
		{"systemd says not running", selectorResolver{systemdRunning: withSystemd, controlGroup: answer("", nil)}, unit, false, "", ErrCgroupNotFound},
		{"systemctl fails: walk", selectorResolver{systemdRunning: withSystemd, controlGroup: answer("", errors.New("exit status 1"))}, unit, false, unitDir, nil},
		{"systemd's path not below this root: walk", selectorResolver{systemdRunning: withSystemd, controlGroup: answer("/elsewhere/"+unit, nil)}, unit, false, unitDir, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotDir, id, err := tt.r.resolve(root, Selector{SystemdUnit: tt.unit}, tt.create)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if gotDir != tt.wantDir {
				t.Errorf("dir = %q, want %q", gotDir, tt.wantDir)
			}
			if err == nil {
				if want, _ := CgroupID(tt.wantDir); id != want {
					t.Errorf("id = %d, want %d", id, want)
				}
			}
			if _, err := os.Stat(filepath.Join(root, tt.unit)); err == nil {
				t.Errorf("a cgroup was created for unit %s", tt.unit)
			}
		})
	}

	// Without systemd on this host, ResolveSelector itself walks.
	if !(systemResolver().systemdRunning()) {
		got, _, err := ResolveSelector(root, Selector{SystemdUnit: unit}, false)
		if err != nil || got != unitDir {
			t.Errorf("ResolveSelector(unit) = %q, %v; want %q", got, err, unitDir)
		}
	}
}

func TestFindDir(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"b/x.service", "a/deeper/x.service", "c/1/2/3/4/deep.service", "d/1/2/3/4/5/deeper.service"} {
		mkdirAll(t, filepath.Join(root, d))
	}
	if err := os.WriteFile(filepath.Join(root, "file.service"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		budget int
		want   string
		wantOK bool
	}{
		{"x.service", 1000, "b/x.service", true},               // shallowest wins
		{"deep.service", 1000, "c/1/2/3/4/deep.service", true}, // sixth level
		{"deeper.service", 1000, "", false},                    // seventh level
		{"file.service", 1000, "", false},                      // not a directory
		{"x.service", 1, "", false},                            // out of budget
	}
	for _, tt := range tests {
		got, ok := findDir(root, tt.name, unitSearchDepth, tt.budget)
		want := ""
		if tt.wantOK {
			want = filepath.Join(root, tt.want)
		}
		if ok != tt.wantOK || got != want {
			t.Errorf("findDir(%s, budget %d) = %q, %v; want %q, %v", tt.name, tt.budget, got, ok, want, tt.wantOK)
		}
	}
}

// A systemd unit's cgroup is removed when it stops and made again, with a
// new id, when it starts: the watcher hands the new id on.
func TestWatcherUnitRestart(t *testing.T) {
	requirePrivileged(t)
	root := v2Root(t)
	dir, path := testCgroup(t, root)
	unit := fmt.Sprintf("itest-%d.service", os.Getpid())
	unitDir := filepath.Join(dir, "fake.slice", unit)
	mkdirAll(t, unitDir)

	logs := &logRecorder{}
	got := make(chan []Binding, 16)
	w := &Watcher{
		Root: root,
		Workloads: []WatchedWorkload{
			{ID: 1, Name: "unit", Selector: Selector{SystemdUnit: unit}},
			{ID: 2, Name: "made", Selector: Selector{Cgroup: path + "/agents/demo"}},
		},
		Interval:      10 * time.Millisecond,
		CreateMissing: true,
		Logger:        slog.New(logs),
		OnChange:      func(bs []Binding) error { got <- bs; return nil },
		// The fake unit is unknown to a real systemd: find it the way a
		// host without systemd does.
		resolve:   selectorResolver{systemdRunning: func() bool { return false }}.resolve,
		unitSlice: selectorResolver{systemdRunning: func() bool { return false }}.unitSlice,
	}
	next := func(what string) []Binding {
		t.Helper()
		select {
		case bs := <-got:
			return bs
		case <-time.After(10 * time.Second):
			t.Fatalf("OnChange not called: %s", what)
			return nil
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	first := next("at start")
	made, _ := CgroupID(filepath.Join(dir, "agents", "demo"))
	id1, _ := CgroupID(unitDir)
	want := []Binding{
		{WorkloadID: 1, Name: "unit", CgroupID: id1, Path: path + "/fake.slice/" + unit},
		{WorkloadID: 2, Name: "made", CgroupID: made, Path: path + "/agents/demo"},
	}
	if !slices.Equal(first, want) {
		t.Fatalf("first OnChange = %+v, want %+v", first, want)
	}

	removeCgroupTree(t, unitDir) // the unit stops
	if bs := next("after the unit stopped"); !slices.Equal(bs, want[1:]) {
		t.Fatalf("OnChange after stop = %+v, want %+v", bs, want[1:])
	}
	if p := w.Pending(); !slices.Equal(p, []string{"unit"}) {
		t.Errorf("Pending = %v, want [unit]", p)
	}

	mkdirAll(t, unitDir) // and starts again
	restarted := next("after the unit started again")
	id2, _ := CgroupID(unitDir)
	if id2 == id1 {
		t.Fatalf("the recreated cgroup has the old id %d", id1)
	}
	if len(restarted) != 2 || restarted[0].CgroupID != id2 || restarted[0].Path != want[0].Path {
		t.Fatalf("OnChange after restart = %+v, want unit with cgroup id %d", restarted, id2)
	}
	if n := logs.take("workload unit: cgroup not found, not enforced until it appears"); n != 1 {
		t.Errorf("%d not-found warnings for the stopped unit, want 1", n)
	}
}
