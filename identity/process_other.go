//go:build !linux

package identity

import (
	"errors"
	"fmt"
)

// ProcessExecutable needs /proc; it is not supported on this system.
func ProcessExecutable(pid uint32) (string, error) {
	return "", fmt.Errorf("reading the executable of pid %d: %w", pid, errors.ErrUnsupported)
}

// ProcessCgroup needs /proc and cgroups; it is not supported on this system.
func ProcessCgroup(pid uint32) (string, error) {
	return "", fmt.Errorf("reading the cgroup of pid %d: %w", pid, errors.ErrUnsupported)
}
