package identity

import (
	"errors"
	"log/slog"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Guard is a cgroup directory in which a workload's cgroup is, or will be,
// made, or one of that directory's ancestors but the root (see guardDirs).
// systemd gives a restarted unit a new cgroup with a new id, which the
// workloads map does not hold until the next pass; cgroup ids only grow, so
// a child of the guard's directory with an id above Watermark was made
// since the pass that read it, and the kernel sends its connects to the
// gateway, which resolves that cgroup itself, instead of letting them go
// out as if from no workload.
type Guard struct {
	Path     string // below the cgroup root, e.g. "/system.slice"
	CgroupID uint64 // the directory's own cgroup id
	// Watermark is the highest id among the directory's children when
	// the pass began (its own id when it had none): every cgroup at or
	// below it existed before the workloads were resolved.
	Watermark uint64
	Workloads []uint32 // the workloads expected below it, in Workloads order
}

func (g Guard) equal(o Guard) bool {
	return g.Path == o.Path && g.CgroupID == o.CgroupID && g.Watermark == o.Watermark && slices.Equal(g.Workloads, o.Workloads)
}

func cloneGuards(gs []Guard) []Guard {
	out := make([]Guard, len(gs))
	for i, g := range gs {
		g.Workloads = slices.Clone(g.Workloads)
		out[i] = g
	}
	return out
}

// cgroupTree is how a pass looks at the directories it guards; tests stand
// in for the cgroup file system.
type cgroupTree struct {
	isDir func(dir string) bool
	// scan returns dir's own cgroup id and the highest cgroup id among its
	// immediate subdirectories, 0 when it has none.
	scan func(dir string) (self, highestChild uint64, err error)
}

// guardReads reads each guard directory once a pass. The pass reads the
// directories it expects to guard before it resolves the workloads; one it
// finds only afterwards (a unit seen for the first time, or in a new
// slice) may by then hold a cgroup made during the pass, so its watermark
// is capped at the highest id read before resolving. Ids are allocated in
// increasing order across the whole hierarchy: anything made during the
// pass is above that cap.
type guardReads struct {
	root  string
	tree  cgroupTree
	reads map[string]guardRead
	late  bool   // resolving has begun
	bound uint64 // the highest id read before it
}

type guardRead struct {
	id, watermark uint64
	err           error
}

func newGuardReads(root string, tree cgroupTree) *guardReads {
	return &guardReads{root: root, tree: tree, reads: map[string]guardRead{}}
}

// read returns the guard directory p's id and watermark. Failures are not
// kept, so a directory that could not be read before resolving is tried
// again if it turns out to be a guard.
func (r *guardReads) read(p string) guardRead {
	if rd, ok := r.reads[p]; ok {
		return rd
	}
	self, highest, err := r.tree.scan(filepath.Join(r.root, filepath.FromSlash(p)))
	if err != nil {
		return guardRead{err: err}
	}
	rd := guardRead{id: self, watermark: highest}
	if highest == 0 {
		rd.watermark = self
	}
	if r.late {
		rd.watermark = min(rd.watermark, r.bound)
	} else {
		r.bound = max(r.bound, rd.watermark)
	}
	r.reads[p] = rd
	return rd
}

// unitSlices asks systemd, at most once a pass for each unit, which slice
// it starts the unit in, as a cgroup path; "" when it does not say.
type unitSlices struct {
	ask   func(unit string) (string, error)
	log   *slog.Logger
	paths map[string]string
}

func (s *unitSlices) path(unit string) string {
	if p, ok := s.paths[unit]; ok {
		return p
	}
	p := ""
	name, err := s.ask(unit)
	if err == nil && name != "" {
		p, err = slicePath(name)
	}
	if err != nil {
		s.log.Debug("asking systemd for the slice of unit "+unit, "unit", unit, "error", err)
	}
	s.paths[unit] = p
	return p
}

// expectedPath is where the cgroup sel names is, or will be made: a Cgroup
// selector's path; a unit's resolved path when it resolved (resolved is ""
// when not), else its slice's path and its name when systemd says which
// slice, else the path this watcher last saw it at (last), else where
// systemd puts services by default.
func expectedPath(sel Selector, resolved, last string, units *unitSlices) string {
	switch {
	case sel.Cgroup != "":
		return cleanCgroupPath(sel.Cgroup)
	case resolved != "":
		return resolved
	}
	if s := units.path(sel.SystemdUnit); s != "" {
		return path.Join(s, sel.SystemdUnit)
	}
	if last != "" {
		return last
	}
	return "/system.slice/" + sel.SystemdUnit
}

// guardDirs are the directories guarded for the cgroup path p: the deepest
// existing directory strictly above p (where p's cgroup, or the first of
// its missing parents, will be made), and each of its ancestors below the
// root. A guard holds only while its directory does: a slice stopped and
// started again is a new cgroup with a new id, made, with the unit's new
// cgroup in it, below the slice's parent, whose guard then covers it. The
// root is guarded only when it is the deepest existing directory: guarding
// it for every workload would send the first connects of every new
// top-level cgroup on the host through the gateway, and refuse them while
// it is down.
func (w *Watcher) guardDirs(tree cgroupTree, p string) []string {
	var dirs []string
	for p != "/" {
		p = path.Dir(p)
		switch {
		case len(dirs) > 0 && p == "/":
			return dirs
		case len(dirs) > 0 || p == "/" || tree.isDir(filepath.Join(w.Root, filepath.FromSlash(p))):
			dirs = append(dirs, p)
		}
	}
	return dirs
}

// resolution is what a pass found for one workload: the path it resolved
// to, or why it did not.
type resolution struct {
	wl   WatchedWorkload
	path string
	err  error
}

// guardCandidates are the directories a pass reads before it resolves: the
// last pass's guards, and the guard directory of each workload's expected
// path as the last pass left it.
func (w *Watcher) guardCandidates(tree cgroupTree, units *unitSlices) []string {
	var dirs []string
	for _, g := range w.guards {
		dirs = append(dirs, g.Path)
	}
	for _, wl := range w.Workloads {
		if wl.Selector.validate() != nil {
			continue
		}
		st := w.state[wl.Name]
		resolved := ""
		if st.problem == "" {
			resolved = st.binding.Path
		}
		dirs = append(dirs, w.guardDirs(tree, expectedPath(wl.Selector, resolved, st.lastPath, units))...)
	}
	return dirs
}

// guardSet builds the pass's guards, sorted by path, from its resolutions
// and the workloads' state after it. A guard directory that cannot be read
// is left out, logged once until it can be read again.
func (w *Watcher) guardSet(log *slog.Logger, tree cgroupTree, reads *guardReads, units *unitSlices, rs []resolution) []Guard {
	byDir := map[string]*Guard{}
	unsure := map[string]bool{} // a workload below failed for a reason other than its absence
	for _, r := range rs {
		if errors.Is(r.err, ErrInvalidSelector) {
			continue
		}
		for _, dir := range w.guardDirs(tree, expectedPath(r.wl.Selector, r.path, w.state[r.wl.Name].lastPath, units)) {
			g := byDir[dir]
			if g == nil {
				g = &Guard{Path: dir}
				byDir[dir] = g
			}
			g.Workloads = append(g.Workloads, r.wl.ID)
			if r.err != nil && !errors.Is(r.err, ErrCgroupNotFound) {
				unsure[dir] = true
			}
		}
	}

	dirs := make([]string, 0, len(byDir))
	for dir := range byDir {
		dirs = append(dirs, dir)
	}
	slices.Sort(dirs)
	problems := map[string]string{}
	guards := make([]Guard, 0, len(dirs))
	for _, dir := range dirs {
		g := byDir[dir]
		rd := reads.read(dir)
		if rd.err != nil {
			problems[dir] = rd.err.Error()
			if w.guardProblems[dir] != problems[dir] {
				log.Warn("cgroup guard "+dir+": cannot read it, cgroups made there go out unguarded until the next pass resolves them",
					"guard", dir, "error", rd.err)
			}
			continue
		}
		if _, was := w.guardProblems[dir]; was {
			log.Info("cgroup guard "+dir+": read again, guarded", "guard", dir)
		}
		g.CgroupID, g.Watermark = rd.id, rd.watermark
		if unsure[dir] {
			// The cgroup that did not resolve may be the workload's, made
			// since the last pass: keep it above the watermark. With no
			// watermark before, every child counts as new.
			g.Watermark = g.CgroupID
			if i := slices.IndexFunc(w.guards, func(p Guard) bool { return p.Path == dir }); i >= 0 {
				g.Watermark = w.guards[i].Watermark
			}
		}
		guards = append(guards, *g)
	}
	w.guardProblems = problems
	return guards
}

// sameGuardDirs reports whether a and b guard the same directories, so the
// watches on them stay as they are.
func sameGuardDirs(a, b []Guard) bool {
	return slices.EqualFunc(a, b, func(x, y Guard) bool { return x.Path == y.Path && x.CgroupID == y.CgroupID })
}

// ExpectedCgroup is a path a workload's cgroup is, or will be, made at: the
// kernel, told of it, recognises the cgroup the moment it is made (a
// restarted unit's new one), before any pass. The folders on the way are
// the kernel map's business (redirect.SyncExpected adds them).
type ExpectedCgroup struct {
	Path       string // below the cgroup root
	WorkloadID uint32
}

// expectedSet is the pass's expected cgroups, sorted by path: each
// workload's expected path; where two workloads expect one path (a cgroup
// selector naming a unit's cgroup), the first, as MatchCgroupPath picks it.
func (w *Watcher) expectedSet(units *unitSlices, rs []resolution) []ExpectedCgroup {
	out := make([]ExpectedCgroup, 0, len(rs))
	for _, r := range rs {
		if errors.Is(r.err, ErrInvalidSelector) {
			continue
		}
		p := expectedPath(r.wl.Selector, r.path, w.state[r.wl.Name].lastPath, units)
		if p == "/" || slices.ContainsFunc(out, func(e ExpectedCgroup) bool { return e.Path == p }) {
			continue
		}
		out = append(out, ExpectedCgroup{Path: p, WorkloadID: r.wl.ID})
	}
	slices.SortFunc(out, func(a, b ExpectedCgroup) int { return strings.Compare(a.Path, b.Path) })
	return out
}
