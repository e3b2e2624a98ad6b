//go:build !linux

package identity

import (
	"errors"
	"fmt"
)

// CgroupV2Root needs Linux cgroups; it is not supported on this system.
func CgroupV2Root() (string, error) {
	return "", fmt.Errorf("finding the cgroup v2 mount: %w", errors.ErrUnsupported)
}

// CgroupID needs Linux cgroups; it is not supported on this system.
func CgroupID(path string) (uint64, error) {
	return 0, fmt.Errorf("reading the cgroup id of %s: %w", path, errors.ErrUnsupported)
}

// ResolveSelector needs Linux cgroups; it is not supported on this system.
func ResolveSelector(root string, sel Selector, createMissing bool) (dir string, id uint64, err error) {
	if err := sel.validate(); err != nil {
		return "", 0, err
	}
	return "", 0, fmt.Errorf("resolving %s: %w", sel, errors.ErrUnsupported)
}

// CgroupPathByID needs Linux cgroups; it is not supported on this system.
// CgroupOwner needs Linux cgroups; it is not supported on this system.
func CgroupOwner(path string) (uint32, error) {
	return 0, fmt.Errorf("reading the owner of cgroup %s: %w", path, errors.ErrUnsupported)
}

func CgroupPathByID(root string, id uint64) (string, error) {
	return "", fmt.Errorf("finding cgroup id %d: %w", id, errors.ErrUnsupported)
}

// systemUnitSlice: there is no systemd on this system.
func systemUnitSlice(string) (string, error) { return "", nil }

// systemCgroupTree has no cgroups to read on this system.
func systemCgroupTree() cgroupTree {
	return cgroupTree{
		isDir: func(string) bool { return false },
		scan: func(dir string) (uint64, uint64, error) {
			return 0, 0, fmt.Errorf("reading the cgroups below %s: %w", dir, errors.ErrUnsupported)
		},
	}
}
