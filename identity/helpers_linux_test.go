package identity

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// requirePrivileged is the project's one gate for root-only tests.
func requirePrivileged(t *testing.T) { t.Helper(); redirecttest.RequirePrivileged(t) }

// v2Root returns the cgroup v2 mount point, skipping the test on a host
// without one.
func v2Root(t *testing.T) string {
	t.Helper()
	root, err := CgroupV2Root()
	if errors.Is(err, ErrNoCgroup2) && os.Getenv(redirecttest.RequiredEnv) != "1" {
		t.Skip("no cgroup v2 hierarchy on this host")
	}
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// testCgroup creates the test's own cgroup, <root>/interlock-test-<pid>/<test>,
// and returns its directory and its path below root. At the end of the test
// it, everything the test made below it, and the shared
// interlock-test-<pid> folder when it is empty are removed, deepest first.
// Processes the test moved in must have exited by then.
func testCgroup(t *testing.T, root string) (dir, path string) {
	t.Helper()
	top := filepath.Join(root, fmt.Sprintf("interlock-test-%d", os.Getpid()))
	dir = filepath.Join(top, strings.ReplaceAll(t.Name(), "/", "-"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("creating test cgroup: %v", err)
	}
	t.Cleanup(func() {
		removeCgroupTree(t, dir)
		if err := os.Remove(top); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EBUSY) {
			t.Errorf("removing %s: %v", top, err)
		}
	})
	return dir, "/" + filepath.Base(top) + "/" + filepath.Base(dir)
}

// removeCgroupTree removes dir and the cgroups below it, children first.
// cgroupfs removes a directory with its interface files in it, but not one
// with children or processes; a process that just exited keeps its cgroup
// busy for a moment, hence the retries.
func removeCgroupTree(t *testing.T, dir string) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(t, filepath.Join(dir, e.Name()))
		}
	}
	for range 100 {
		if err = os.Remove(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("removing cgroup %s: %v", dir, err)
}

func mkdirAll(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// chownTree gives dir and everything below it to uid, as systemd does with
// a subtree it delegates to a user.
func chownTree(t *testing.T, dir string, uid int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
	if err != nil {
		t.Fatalf("handing %s to uid %d: %v", dir, uid, err)
	}
}
