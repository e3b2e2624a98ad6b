package identity

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// Selector says which cgroup a workload is. Exactly one field is set.
type Selector struct {
	// Cgroup is a path below the cgroup v2 root, like "/agents/demo".
	Cgroup string
	// SystemdUnit is a unit name, like "agent.service"; its cgroup is the
	// one systemd made for it.
	SystemdUnit string
}

// String names the selector for logs and errors.
func (s Selector) String() string {
	switch {
	case s.Cgroup != "" && s.SystemdUnit != "":
		return fmt.Sprintf("cgroup %s and systemd unit %s", s.Cgroup, s.SystemdUnit)
	case s.Cgroup != "":
		return "cgroup " + s.Cgroup
	case s.SystemdUnit != "":
		return "systemd unit " + s.SystemdUnit
	}
	return "empty selector"
}

// validate checks that exactly one field is set and that it can name a
// cgroup.
func (s Selector) validate() error {
	switch {
	case s.Cgroup != "" && s.SystemdUnit != "":
		return fmt.Errorf("%s: set one of cgroup and systemd unit, not both: %w", s, ErrInvalidSelector)
	case s.Cgroup == "" && s.SystemdUnit == "":
		return fmt.Errorf("set a cgroup or a systemd unit: %w", ErrInvalidSelector)
	case s.Cgroup != "":
		if strings.ContainsRune(s.Cgroup, 0) {
			return fmt.Errorf("cgroup %q: %w", s.Cgroup, ErrInvalidSelector)
		}
	default:
		u := s.SystemdUnit
		if u == "." || u == ".." || strings.HasPrefix(u, "-") || strings.ContainsAny(u, "/\x00") {
			return fmt.Errorf("systemd unit %q: not a unit name: %w", u, ErrInvalidSelector)
		}
	}
	return nil
}

// cleanCgroupPath makes p an absolute, clean cgroup path; ".." cannot
// climb above the root.
func cleanCgroupPath(p string) string {
	return path.Clean("/" + p)
}

// cgroupPath is dir's cgroup path below root: "/agents/demo", or "/" for
// root itself.
func cgroupPath(root, dir string) (string, error) {
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%s is not below the cgroup root %s", dir, root)
	}
	return cleanCgroupPath(filepath.ToSlash(rel)), nil
}

// MatchCgroupPath returns the binding whose cgroup path is procCgroup or
// its deepest ancestor: a workload covers its whole subtree, and a nested
// workload wins over the one it sits in. With two bindings of the same path
// the first wins.
func MatchCgroupPath(procCgroup string, bindings []Binding) (Binding, bool) {
	// "/../x" is how /proc shows a cgroup outside our cgroup namespace: it
	// is not "/x", so it matches nothing.
	if !strings.HasPrefix(procCgroup, "/") || strings.Contains(procCgroup+"/", "/../") {
		return Binding{}, false
	}
	p := cleanCgroupPath(procCgroup)
	best, bestLen, found := Binding{}, -1, false
	for _, b := range bindings {
		if b.Path == "" {
			continue
		}
		bp := cleanCgroupPath(b.Path)
		if !isCgroupAncestor(bp, p) || len(bp) <= bestLen {
			continue
		}
		best, bestLen, found = b, len(bp), true
	}
	return best, found
}

// isCgroupAncestor reports whether clean path a is p or one of its
// ancestors.
func isCgroupAncestor(a, p string) bool {
	if a == "/" || a == p {
		return true
	}
	return strings.HasPrefix(p, a) && p[len(a)] == '/'
}

// slicePath is the cgroup path systemd gives the slice unit named slice:
// every dash ends the name of a parent slice, so "a-b.slice" is
// "/a.slice/a-b.slice", and "-.slice" is the root slice, "/".
func slicePath(slice string) (string, error) {
	prefix, ok := strings.CutSuffix(slice, ".slice")
	switch {
	case prefix == "-" && ok:
		return "/", nil
	case !ok || prefix == "" || strings.ContainsAny(slice, "/\x00") ||
		strings.HasPrefix(prefix, "-") || strings.HasSuffix(prefix, "-") || strings.Contains(prefix, "--"):
		return "", fmt.Errorf("%q is not a slice name", slice)
	}
	var b strings.Builder
	for i := range len(prefix) {
		if prefix[i] == '-' {
			b.WriteString("/" + prefix[:i] + ".slice")
		}
	}
	b.WriteString("/" + slice)
	return b.String(), nil
}
