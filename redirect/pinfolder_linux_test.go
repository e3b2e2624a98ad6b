package redirect

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/redirect/redirecttest"
	"golang.org/x/sys/unix"
)

// nobodyUID is the uid a test hands a folder to, standing for another
// local user.
const nobodyUID = 65534

// bpffsFolder makes a folder on the real bpffs for one test and removes
// it, and what the test left in it, at the end.
func bpffsFolder(t *testing.T, mode os.FileMode) string {
	t.Helper()
	dir := fmt.Sprintf("/sys/fs/bpf/interlock-pintest-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	must(t, os.Chmod(dir, mode))
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	return dir
}

// TestPinFolderOwnership: the pin folder is adopted only when no other
// user can change it. Whoever can write to it can unpin the links, and
// then enforcement ends when the gateway stops.
func TestPinFolderOwnership(t *testing.T) {
	redirecttest.RequirePrivileged(t)
	tests := []struct {
		name       string
		parentMode os.FileMode
		prepare    func(t *testing.T, pin string) // nil: the folder does not exist yet
		wantErr    string                         // "" for success
	}{
		{"created", 0o755 | os.ModeSticky, nil, ""},
		{"created in a world-writable sticky folder (like /sys/fs/bpf)", 0o777 | os.ModeSticky, nil, ""},
		{"ours, adopted", 0o755, func(t *testing.T, pin string) { must(t, os.Mkdir(pin, 0o700)) }, ""},
		{"ours, group and others may read", 0o755, func(t *testing.T, pin string) { must(t, os.Mkdir(pin, 0o700)); must(t, os.Chmod(pin, 0o755)) }, ""},
		{"made by another user", 0o777 | os.ModeSticky, func(t *testing.T, pin string) {
			must(t, os.Mkdir(pin, 0o700))
			must(t, os.Chown(pin, nobodyUID, nobodyUID))
		}, "owned by uid 65534"},
		{"writable by others", 0o755, func(t *testing.T, pin string) { must(t, os.Mkdir(pin, 0o700)); must(t, os.Chmod(pin, 0o777)) }, "writable by group or others"},
		{"writable by group", 0o755, func(t *testing.T, pin string) { must(t, os.Mkdir(pin, 0o700)); must(t, os.Chmod(pin, 0o770)) }, "writable by group or others"},
		{"a symlink to our folder", 0o755, func(t *testing.T, pin string) {
			must(t, os.Mkdir(pin+"-real", 0o700))
			must(t, os.Symlink(pin+"-real", pin))
		}, "is a symlink"},
		{"in a world-writable folder without the sticky bit", 0o777, nil, "without the sticky bit"},
		{"in a folder another user owns", 0o755, nil, "owned by uid 65534, who could rename"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := bpffsFolder(t, tt.parentMode)
			pin := filepath.Join(parent, "interlock")
			if tt.prepare != nil {
				tt.prepare(t, pin)
			}
			if strings.Contains(tt.wantErr, "who could rename") {
				must(t, os.Chown(parent, nobodyUID, nobodyUID))
			}
			err := ensurePinFolder(pin)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ensurePinFolder: %v", err)
				}
				st, err := os.Lstat(pin)
				must(t, err)
				if !st.IsDir() || st.Mode().Perm()&0o022 != 0 {
					t.Errorf("pin folder mode %v, want a folder no one else can write", st.Mode())
				}
				return
			}
			if !errors.Is(err, ErrUnsafePinFolder) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ensurePinFolder: %v, want ErrUnsafePinFolder saying %q", err, tt.wantErr)
			}
		})
	}
}

// TestOpenRefusesForeignPinFolder: the audit's attack. Another user makes
// the pin folder on the world-writable /sys/fs/bpf before the gateway's
// first start; Open refuses it instead of pinning links that user could
// delete, and attaches nothing.
func TestOpenRefusesForeignPinFolder(t *testing.T) {
	redirecttest.RequirePrivileged(t)
	root, err := identity.CgroupV2Root()
	must(t, err)
	top := fmt.Sprintf("/interlock-test-%d-%s", os.Getpid(), t.Name())
	cg := redirecttest.MakeCgroup(t, root, top)
	pin := filepath.Join("/sys/fs/bpf", filepath.Base(top))
	must(t, os.Mkdir(pin, 0o700))
	t.Cleanup(func() { os.RemoveAll(pin) })
	must(t, os.Chown(pin, nobodyUID, nobodyUID))

	dp, err := Open(Options{PinPath: pin, CgroupRoot: cg.Dir()})
	if err == nil {
		dp.Close()
		Uninstall(pin)
		t.Fatal("Open adopted a pin folder another user made")
	}
	if !errors.Is(err, ErrUnsafePinFolder) || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("Open: %v, want ErrUnsafePinFolder naming the owner", err)
	}
	if entries, _ := os.ReadDir(pin); len(entries) != 0 {
		t.Errorf("Open pinned %d objects in the refused folder", len(entries))
	}
}

// TestPinFolderMountsPrivateBPFFS: where nothing is mounted, the gateway
// mounts bpffs itself, and only root can make folders in it.
func TestPinFolderMountsPrivateBPFFS(t *testing.T) {
	redirecttest.RequirePrivileged(t)
	parent := t.TempDir()
	t.Cleanup(func() {
		if err := unix.Unmount(parent, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("unmounting %s: %v", parent, err)
		}
	})
	must(t, ensurePinFolder(filepath.Join(parent, "interlock")))
	if !isBPFFS(parent) {
		t.Fatalf("%s is not a bpffs", parent)
	}
	st, err := os.Stat(parent)
	must(t, err)
	if st.Mode().Perm() != 0o700 {
		t.Errorf("the gateway's bpffs has mode %v, want 0700", st.Mode().Perm())
	}
}

// TestPinFolderInMissingBPFFSFolder: a pin folder whose parent does not
// exist yet but would be on a mounted bpffs is made there, with no bpffs
// of its own mounted over the parent (which nothing would unmount).
func TestPinFolderInMissingBPFFSFolder(t *testing.T) {
	redirecttest.RequirePrivileged(t)
	parent := fmt.Sprintf("/sys/fs/bpf/interlock-test-%d-%s", os.Getpid(), t.Name())
	t.Cleanup(func() {
		unix.Unmount(parent, 0) // only if the test failed
		os.RemoveAll(parent)
	})
	pin := filepath.Join(parent, "pins")
	must(t, ensurePinFolder(pin))
	mounts, err := os.ReadFile("/proc/self/mounts")
	must(t, err)
	if strings.Contains(string(mounts), " "+parent+" ") {
		t.Errorf("a bpffs was mounted on %s, inside the mounted one", parent)
	}
	if !isBPFFS(pin) {
		t.Errorf("%s is not on a bpffs", pin)
	}
}
