package identity

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

// procPath is /proc/PID/name.
func procPath(pid uint32, name string) string {
	return "/proc/" + strconv.FormatUint(uint64(pid), 10) + "/" + name
}

// ProcessExecutable returns the target of /proc/PID/exe. A process that is
// gone (or has no executable, like a kernel thread or a zombie) returns an
// error wrapping ErrNoProcess.
func ProcessExecutable(pid uint32) (string, error) {
	if pid == 0 {
		return "", fmt.Errorf("reading the executable of pid 0: %w", ErrNoProcess)
	}
	p := procPath(pid, "exe")
	exe, err := os.Readlink(p)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", p, procErr(err))
	}
	return exe, nil
}

// ProcessCgroup returns the process's cgroup v2 path, e.g. "/agents/demo",
// relative to the root of the caller's cgroup namespace (which is the root
// of the hierarchy outside containers). A process whose cgroup has been
// removed (a zombie) reads "<path> (deleted)", which matches no workload's
// path. A process that is gone returns an error wrapping ErrNoProcess; one
// without a cgroup v2 line wraps ErrNoCgroup2.
func ProcessCgroup(pid uint32) (string, error) {
	if pid == 0 {
		return "", fmt.Errorf("reading the cgroup of pid 0: %w", ErrNoProcess)
	}
	p := procPath(pid, "cgroup")
	data, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", p, procErr(err))
	}
	path, err := parseProcCgroup(data)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	return path, nil
}

// procErr maps the errors of a vanished process to ErrNoProcess, keeping
// the original for the message.
func procErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%w: %w", ErrNoProcess, err)
	}
	return err
}
