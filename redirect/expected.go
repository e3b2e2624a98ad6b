package redirect

import (
	"bytes"
	"fmt"
	"path"
	"strings"
)

// cgroupPathMax is the size of the kernel's expected key
// (INTERLOCK_CGROUP_PATH_MAX): a path with its NUL must fit.
const cgroupPathMax = 256

// Flag bits of the expected map's values (bpf/include/interlock.h).
const (
	expectWorkload   = 1 // INTERLOCK_EXPECT_WORKLOAD
	expectEgressDeny = 2 // INTERLOCK_EXPECT_EGRESS_DENY
)

// expectedEntries lays out es as the kernel's expected map, adding every
// folder on the way to each path (below the root) as a folder entry.
//
// Those folders matter: a cgroup made under a guarded parent at a path
// nobody expects is settled, no longer unresolved, and a folder made again
// (a slice restarted) is the parent of the workload's new cgroup but not
// guarded itself. Were the folder settled, a workload cgroup below it that
// the kernel could not classify (its path too long for the key) would go
// out as no workload's until the gateway's next pass. As an expected
// folder it stays unresolved.
//
// Paths of cgroupPathMax bytes or more have no entry: the kernel never
// matches them, and the guards cover their cgroups as before. Where two
// entries name one path, a workload wins over a folder; two workloads at
// one path are an error.
func expectedEntries(es []Expected) (map[redirectExpectedKey]redirectExpectedValue, error) {
	byPath := make(map[string]Expected, 2*len(es))
	for _, e := range es {
		if !strings.HasPrefix(e.Path, "/") || path.Clean(e.Path) != e.Path {
			return nil, fmt.Errorf("expected cgroup %q: not a clean path below the cgroup root", e.Path)
		}
		if e.Path == "/" {
			continue // never made
		}
		if old, ok := byPath[e.Path]; ok && old.Workload && e.Workload && old != e {
			return nil, fmt.Errorf("expected cgroup %s: given for workloads %d and %d", e.Path, old.WorkloadID, e.WorkloadID)
		}
		if old, ok := byPath[e.Path]; !ok || !old.Workload {
			byPath[e.Path] = e
		}
		for dir := path.Dir(e.Path); dir != "/"; dir = path.Dir(dir) {
			if _, ok := byPath[dir]; !ok {
				byPath[dir] = Expected{Path: dir, WorkloadID: e.WorkloadID}
			}
		}
	}
	want := make(map[redirectExpectedKey]redirectExpectedValue, 2*len(byPath))
	for p, e := range byPath {
		if !e.Workload {
			continue
		}
		// Its name too: a cgroup so named at another path (a unit
		// moved to another slice) stays unresolved, not settled.
		if name := nameKey + path.Base(p); len(name) < cgroupPathMax {
			k := expectedKey(name)
			if _, ok := want[k]; !ok {
				want[k] = redirectExpectedValue{Workload: e.WorkloadID}
			}
		}
	}
	for p, e := range byPath {
		if len(p) >= cgroupPathMax {
			continue
		}
		k := expectedKey(p)
		v := redirectExpectedValue{Workload: e.WorkloadID}
		if e.Workload {
			v.Flags |= expectWorkload
			if e.EgressDeny {
				v.Flags |= expectEgressDeny
			}
		}
		want[k] = v
	}
	return want, nil
}

// nameKey starts an expected key that holds a workload's cgroup name, not
// a path (INTERLOCK_EXPECT_NAME_PREFIX; paths start with '/').
const nameKey = "\x01"

// expectedKey is s, NUL-padded, as the kernel's key.
func expectedKey(s string) redirectExpectedKey {
	var k redirectExpectedKey
	for i := range len(s) {
		k.Path[i] = int8(s[i])
	}
	return k
}

// isNameKey reports whether k holds a workload's name rather than a path.
func isNameKey(k redirectExpectedKey) bool { return k.Path[0] == int8(nameKey[0]) }

// exportExpected is the inverse of expectedEntries for one path entry.
func exportExpected(k redirectExpectedKey, v redirectExpectedValue) Expected {
	b := make([]byte, len(k.Path))
	for i, c := range k.Path {
		b[i] = byte(c)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return Expected{
		Path:       string(b),
		WorkloadID: v.Workload,
		Workload:   v.Flags&expectWorkload != 0,
		EgressDeny: v.Flags&expectEgressDeny != 0,
	}
}
