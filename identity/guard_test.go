package identity

import (
	"errors"
	"log/slog"
	"path"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestSlicePath(t *testing.T) {
	tests := []struct {
		slice   string
		want    string
		wantErr bool
	}{
		{"system.slice", "/system.slice", false},
		{"-.slice", "/", false},
		{"user-1000.slice", "/user.slice/user-1000.slice", false},
		{"a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice", false},
		{`system-serial\x2dgetty.slice`, `/system.slice/system-serial\x2dgetty.slice`, false},
		{"", "", true},
		{".slice", "", true},
		{"system.service", "", true},
		{"-a.slice", "", true},
		{"a-.slice", "", true},
		{"a--b.slice", "", true},
		{"a/b.slice", "", true},
	}
	for _, tt := range tests {
		got, err := slicePath(tt.slice)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("slicePath(%q) = %q, %v; want %q, error %v", tt.slice, got, err, tt.want, tt.wantErr)
		}
	}
}

// guardRecorder is an OnGuards that keeps what it was given.
type guardRecorder struct {
	mu    sync.Mutex
	calls [][]Guard
}

func (g *guardRecorder) onGuards(gs []Guard) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, gs)
	return nil
}

// take returns the calls since the last take.
func (g *guardRecorder) take() [][]Guard {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.calls
	g.calls = nil
	return c
}

// syncGuards runs a pass and returns the guards it delivered. Invalid
// selectors are expected: they are left out of the guards.
func syncGuards(t *testing.T, w *Watcher, rec *guardRecorder) []Guard {
	t.Helper()
	if _, err := w.Sync(); err != nil && !errors.Is(err, ErrInvalidSelector) {
		t.Fatalf("Sync: %v", err)
	}
	calls := rec.take()
	if len(calls) != 1 {
		t.Fatalf("OnGuards called %d times, want once", len(calls))
	}
	return calls[0]
}

// Where each workload's cgroup is expected, seen through its guard: the
// deepest existing directory above it.
func TestGuardExpectedPath(t *testing.T) {
	unit := Selector{SystemdUnit: "u.service"}
	tests := []struct {
		name     string
		sel      Selector
		dirs     []string // the directories that exist
		ranAt    string   // where an earlier pass saw the unit, which has stopped since
		runsAt   string   // where the unit runs now
		slice    string   // its Slice property, as systemd says
		sliceErr error
		want     string // the guard's path, "" for none
	}{
		{name: "cgroup: its parent", sel: Selector{Cgroup: "/agents//demo/"}, dirs: []string{"/agents"}, want: "/agents"},
		{name: "cgroup: its deepest existing ancestor", sel: Selector{Cgroup: "/a/b/c"}, dirs: []string{"/a"}, want: "/a"},
		{name: "cgroup: nothing above exists", sel: Selector{Cgroup: "/a/b"}, want: "/"},
		{name: "cgroup: the root has nothing above", sel: Selector{Cgroup: "/"}, want: ""},
		{name: "running unit: where it runs, whatever its slice", sel: unit,
			dirs: []string{"/custom.slice", "/system.slice"}, runsAt: "/custom.slice/u.service", slice: "system.slice", want: "/custom.slice"},
		{name: "stopped unit: its slice", sel: unit,
			dirs: []string{"/agents.slice", "/agents.slice/agents-x.slice", "/system.slice"}, slice: "agents-x.slice", want: "/agents.slice/agents-x.slice"},
		{name: "stopped unit: its slice, not made yet", sel: unit,
			dirs: []string{"/agents.slice", "/system.slice"}, slice: "agents-x.slice", want: "/agents.slice"},
		{name: "stopped unit: the root slice", sel: unit, dirs: []string{"/system.slice"}, slice: "-.slice", want: "/"},
		{name: "stopped unit: its slice before where it ran", sel: unit,
			dirs: []string{"/agents.slice", "/custom.slice"}, ranAt: "/custom.slice/u.service", slice: "agents.slice", want: "/agents.slice"},
		{name: "stopped unit, systemd does not say: where it ran", sel: unit,
			dirs: []string{"/custom.slice", "/system.slice"}, ranAt: "/custom.slice/u.service", want: "/custom.slice"},
		{name: "stopped unit, systemd fails: where it ran", sel: unit,
			dirs: []string{"/custom.slice", "/system.slice"}, ranAt: "/custom.slice/u.service", slice: "agents.slice", sliceErr: errors.New("timeout"), want: "/custom.slice"},
		{name: "stopped unit, not a slice name: where it ran", sel: unit,
			dirs: []string{"/custom.slice", "/system.slice"}, ranAt: "/custom.slice/u.service", slice: "agents", want: "/custom.slice"},
		{name: "never seen, systemd does not say: system.slice", sel: unit, dirs: []string{"/system.slice", "/custom.slice"}, want: "/system.slice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cg := &fakeCgroups{ids: map[string]uint64{}, units: map[string]string{}, slices: map[string]string{}}
			for i, d := range tt.dirs {
				cg.ids[d] = uint64(10 + i)
			}
			rec := &guardRecorder{}
			w := cg.watcher(WatchedWorkload{ID: 7, Name: "w", Selector: tt.sel})
			w.OnGuards = rec.onGuards
			if tt.ranAt != "" {
				cg.update(func(f *fakeCgroups) { f.units["u.service"], f.ids[tt.ranAt] = tt.ranAt, 50 })
				if gs := syncGuards(t, w, rec); len(gs) != 1 || gs[0].Path != path.Dir(tt.ranAt) {
					t.Fatalf("guards while running at %s = %+v", tt.ranAt, gs)
				}
				cg.set(tt.ranAt, 0) // stopped
			}
			if tt.runsAt != "" {
				cg.update(func(f *fakeCgroups) { f.units["u.service"], f.ids[tt.runsAt] = tt.runsAt, 60 })
			}
			cg.update(func(f *fakeCgroups) { f.slices["u.service"], f.sliceErr = tt.slice, tt.sliceErr })

			gs := syncGuards(t, w, rec)
			var want []Guard
			for _, p := range guardChain(tt.want) {
				want = append(want, Guard{Path: p, Workloads: []uint32{7}})
			}
			got := slices.Clone(gs)
			for i := range got {
				got[i].CgroupID, got[i].Watermark = 0, 0
			}
			if !slices.EqualFunc(got, want, Guard.equal) {
				t.Errorf("guards = %+v, want %+v", gs, want)
			}
		})
	}
}

func TestGuardsShared(t *testing.T) {
	cg := &fakeCgroups{
		ids: map[string]uint64{
			"/system.slice": 10, "/system.slice/a.service": 20, "/system.slice/b.service": 30, "/system.slice/other.service": 40,
			"/agents": 50, "/agents/demo": 60,
			"/custom.slice": 70, "/custom.slice/c.service": 80,
			"/empty": 90,
		},
		units: map[string]string{"c.service": "/custom.slice/c.service"},
	}
	rec := &guardRecorder{}
	w := cg.watcher(
		WatchedWorkload{ID: 1, Name: "a", Selector: Selector{SystemdUnit: "a.service"}},
		WatchedWorkload{ID: 2, Name: "demo", Selector: Selector{Cgroup: "/agents/demo"}},
		WatchedWorkload{ID: 3, Name: "b", Selector: Selector{SystemdUnit: "b.service"}},
		WatchedWorkload{ID: 4, Name: "c", Selector: Selector{SystemdUnit: "c.service"}},
		WatchedWorkload{ID: 5, Name: "missing", Selector: Selector{Cgroup: "/empty/x"}},
		WatchedWorkload{ID: 6, Name: "invalid", Selector: Selector{Cgroup: "/agents/y", SystemdUnit: "y.service"}},
	)
	w.OnGuards = rec.onGuards
	if _, err := w.Sync(); !errors.Is(err, ErrInvalidSelector) {
		t.Fatalf("Sync error = %v, want the invalid selector's", err)
	}
	want := []Guard{
		{Path: "/agents", CgroupID: 50, Watermark: 60, Workloads: []uint32{2}},
		{Path: "/custom.slice", CgroupID: 70, Watermark: 80, Workloads: []uint32{4}},
		{Path: "/empty", CgroupID: 90, Watermark: 90, Workloads: []uint32{5}}, // no children: its own id
		{Path: "/system.slice", CgroupID: 10, Watermark: 40, Workloads: []uint32{1, 3}},
	}
	calls := rec.take()
	if len(calls) != 1 || !slices.EqualFunc(calls[0], want, Guard.equal) {
		t.Fatalf("OnGuards calls = %+v, want one with %+v", calls, want)
	}

	// A cgroup made in a guard directory moves its watermark, and only its.
	cg.set("/system.slice/new.service", 95)
	want[3].Watermark = 95
	if gs := syncGuards(t, w, rec); !slices.EqualFunc(gs, want, Guard.equal) {
		t.Errorf("after a new cgroup in /system.slice: guards = %+v, want %+v", gs, want)
	}
	cg.set("/agents/other", 96)
	want[0].Watermark = 96
	gs := syncGuards(t, w, rec)
	if !slices.EqualFunc(gs, want, Guard.equal) {
		t.Errorf("after a new cgroup in /agents: guards = %+v, want %+v", gs, want)
	}
	// A caller changing what it got changes nothing here.
	gs[0].Workloads[0] = 99
	if w.guards[0].Workloads[0] != 2 {
		t.Errorf("OnGuards' argument shares memory with the watcher's state")
	}
}

// The watermarks are read before the workloads resolve: a cgroup made
// during the pass is above them, also in a guard directory the pass finds
// only by resolving.
func TestGuardWatermarkBeforeResolving(t *testing.T) {
	cg := &fakeCgroups{
		ids:   map[string]uint64{"/system.slice": 10, "/system.slice/a.service": 20, "/late.slice": 30, "/late.slice/u.service": 40},
		units: map[string]string{"u.service": "/late.slice/u.service"},
	}
	rec := &guardRecorder{}
	w := cg.watcher(
		WatchedWorkload{ID: 1, Name: "a", Selector: Selector{SystemdUnit: "a.service"}},
		WatchedWorkload{ID: 2, Name: "u", Selector: Selector{SystemdUnit: "u.service"}},
	)
	w.OnGuards = rec.onGuards
	made := false
	cg.during = func() {
		if !made {
			made = true
			cg.set("/system.slice/new.service", 100)
			cg.set("/late.slice/new.service", 101)
		}
	}
	gs := syncGuards(t, w, rec)
	if len(gs) != 2 || gs[0].Path != "/late.slice" || gs[1].Path != "/system.slice" {
		t.Fatalf("guards = %+v, want /late.slice and /system.slice", gs)
	}
	if gs[1].Watermark != 20 {
		t.Errorf("/system.slice watermark = %d, want 20, its highest child before the pass resolved", gs[1].Watermark)
	}
	if gs[0].Watermark >= 101 {
		t.Errorf("/late.slice watermark = %d: the cgroup made during the pass (101) is not above it", gs[0].Watermark)
	}
	// The next pass reads both before resolving.
	gs = syncGuards(t, w, rec)
	if len(gs) != 2 || gs[0].Watermark != 101 || gs[1].Watermark != 100 {
		t.Errorf("next pass: guards = %+v, want watermarks 101 and 100", gs)
	}
}

// A workload that failed to resolve for a reason other than its absence
// may have a new cgroup the pass could not see: its guard keeps the
// watermark it had.
func TestGuardWatermarkKeptOnError(t *testing.T) {
	denied := errors.New("permission denied")
	cg := &fakeCgroups{ids: map[string]uint64{"/system.slice": 10, "/system.slice/a.service": 20, "/system.slice/b.service": 22}}
	rec := &guardRecorder{}
	w := cg.watcher(
		WatchedWorkload{ID: 1, Name: "a", Selector: Selector{SystemdUnit: "a.service"}},
		WatchedWorkload{ID: 2, Name: "b", Selector: Selector{SystemdUnit: "b.service"}},
	)
	w.OnGuards = rec.onGuards
	watermark := func(what string, want uint64) {
		t.Helper()
		_, _ = w.Sync()
		calls := rec.take()
		if len(calls) > 1 {
			t.Fatalf("%s: OnGuards called %d times", what, len(calls))
		}
		got := w.guards
		if len(got) != 1 || got[0].Watermark != want || !slices.Equal(got[0].Workloads, []uint32{1, 2}) {
			t.Fatalf("%s: guards = %+v, want /system.slice with watermark %d and both workloads", what, got, want)
		}
		if len(calls) == 1 && !slices.EqualFunc(calls[0], got, Guard.equal) {
			t.Fatalf("%s: OnGuards got %+v, the pass found %+v", what, calls[0], got)
		}
	}
	watermark("both resolve", 22)

	cg.update(func(f *fakeCgroups) {
		f.ids["/system.slice/a.service"] = 30 // a restarted
		f.fail = map[string]error{"/system.slice/a.service": denied}
	})
	watermark("a fails", 22)
	watermark("a still fails", 22)

	cg.update(func(f *fakeCgroups) {
		f.fail = nil
		delete(f.ids, "/system.slice/a.service") // a stopped
		f.ids["/system.slice/c.service"] = 28
	})
	watermark("a not found leaves no doubt", 28)
	cg.set("/system.slice/a.service", 31)
	watermark("a back", 31)

	// With no watermark before, every child counts as new.
	cg.update(func(f *fakeCgroups) { f.fail = map[string]error{"/system.slice/a.service": denied} })
	fresh := cg.watcher(WatchedWorkload{ID: 1, Name: "a", Selector: Selector{SystemdUnit: "a.service"}})
	fresh.OnGuards = rec.onGuards
	_, _ = fresh.Sync()
	if gs := rec.take(); len(gs) != 1 || len(gs[0]) != 1 || gs[0][0].Watermark != 10 {
		t.Errorf("first pass with a failing workload: guards = %+v, want watermark 10, the directory's own id", gs)
	}
}

func TestGuardDirUnreadable(t *testing.T) {
	cg := &fakeCgroups{ids: map[string]uint64{"/system.slice": 10, "/system.slice/a.service": 20, "/agents": 30}}
	logs := &logRecorder{}
	rec := &guardRecorder{}
	w := cg.watcher(
		WatchedWorkload{ID: 1, Name: "a", Selector: Selector{SystemdUnit: "a.service"}},
		WatchedWorkload{ID: 2, Name: "demo", Selector: Selector{Cgroup: "/agents/demo"}},
	)
	w.Logger, w.OnGuards = slog.New(logs), rec.onGuards
	agents := Guard{Path: "/agents", CgroupID: 30, Watermark: 30, Workloads: []uint32{2}}
	sys := Guard{Path: "/system.slice", CgroupID: 10, Watermark: 20, Workloads: []uint32{1}}

	cg.update(func(f *fakeCgroups) { f.unreadable = map[string]bool{"/system.slice": true} })
	if gs := syncGuards(t, w, rec); !slices.EqualFunc(gs, []Guard{agents}, Guard.equal) {
		t.Errorf("guards = %+v, want only /agents", gs)
	}
	if n := logs.take("WARN cgroup guard /system.slice: cannot read it"); n != 1 {
		t.Errorf("%d warnings about /system.slice, want 1", n)
	}
	if _, err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := logs.take("cgroup guard /system.slice"); n != 0 {
		t.Errorf("the unreadable guard was logged %d more times", n)
	}
	if calls := rec.take(); len(calls) != 0 {
		t.Errorf("OnGuards called again with %+v though nothing changed", calls)
	}

	cg.update(func(f *fakeCgroups) { f.unreadable = nil })
	if gs := syncGuards(t, w, rec); !slices.EqualFunc(gs, []Guard{agents, sys}, Guard.equal) {
		t.Errorf("guards = %+v, want /agents and /system.slice", gs)
	}
	if n := logs.take("INFO cgroup guard /system.slice: read again"); n != 1 {
		t.Errorf("%d notes that /system.slice is read again, want 1", n)
	}
}

// OnGuards follows OnChange: it waits for a failed OnChange, and is
// retried when it fails itself.
func TestGuardsDeliveredAfterBindings(t *testing.T) {
	cg := &fakeCgroups{ids: map[string]uint64{"/system.slice": 10, "/system.slice/a.service": 20}}
	var order []string
	var failChange, failGuards bool
	w := cg.watcher(WatchedWorkload{ID: 1, Name: "a", Selector: Selector{SystemdUnit: "a.service"}})
	var guards []Guard
	w.OnChange = func([]Binding) error {
		order = append(order, "bindings")
		if failChange {
			return errors.New("workloads map full")
		}
		return nil
	}
	w.OnGuards = func(gs []Guard) error {
		order = append(order, "guards")
		if failGuards {
			return errors.New("guards map full")
		}
		guards = gs
		return nil
	}
	steps := []struct {
		name          string
		change        func()
		failChange    bool
		failGuards    bool
		want          []string
		wantErr       bool
		wantWatermark uint64 // of the guards OnGuards last accepted
	}{
		{name: "first pass: bindings, then guards", want: []string{"bindings", "guards"}, wantWatermark: 20},
		{name: "nothing changed", wantWatermark: 20},
		{name: "a cgroup made: guards only", change: func() { cg.set("/system.slice/b.service", 25) },
			want: []string{"guards"}, wantWatermark: 25},
		{name: "OnChange fails: guards wait", change: func() { cg.set("/system.slice/a.service", 30) }, failChange: true,
			want: []string{"bindings"}, wantErr: true, wantWatermark: 25},
		{name: "OnChange retried, then the guards", want: []string{"bindings", "guards"}, wantWatermark: 30},
		{name: "OnGuards fails", change: func() { cg.set("/system.slice/c.service", 35) }, failGuards: true,
			want: []string{"guards"}, wantErr: true, wantWatermark: 30},
		{name: "OnGuards retried though nothing changed", want: []string{"guards"}, wantWatermark: 35},
		{name: "and then left alone", wantWatermark: 35},
		{name: "OnGuards fails again", change: func() { cg.set("/system.slice/d.service", 40) }, failGuards: true,
			want: []string{"guards"}, wantErr: true, wantWatermark: 35},
		// The failed call may have left part of its set behind.
		{name: "back to what it last accepted: sent again", change: func() { cg.set("/system.slice/d.service", 0) },
			want: []string{"guards"}, wantWatermark: 35},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		failChange, failGuards, order = s.failChange, s.failGuards, nil
		_, err := w.Sync()
		if (err != nil) != s.wantErr {
			t.Errorf("%s: Sync error = %v, want error %v", s.name, err, s.wantErr)
		}
		if !slices.Equal(order, s.want) {
			t.Errorf("%s: calls = %v, want %v", s.name, order, s.want)
		}
		if len(guards) != 1 || guards[0].Watermark != s.wantWatermark {
			t.Errorf("%s: accepted guards = %+v, want watermark %d", s.name, guards, s.wantWatermark)
		}
	}
}

// Callers that come together share passes.
func TestSyncAfterCoalesces(t *testing.T) {
	cg := &fakeCgroups{ids: map[string]uint64{"/system.slice": 10, "/system.slice/a.service": 20}}
	w := cg.watcher(WatchedWorkload{ID: 1, Name: "a", Selector: Selector{SystemdUnit: "a.service"}})
	want := []Binding{{WorkloadID: 1, Name: "a", CgroupID: 20, Path: "/system.slice/a.service"}}

	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	cg.during = func() { once.Do(func() { close(entered); <-release }) }

	const callers = 20
	var took, done sync.WaitGroup
	took.Add(callers)
	done.Add(callers)
	results := make(chan error, callers)
	for range callers {
		go func() {
			defer done.Done()
			at := time.Now()
			took.Done()
			bs, err := w.SyncAfter(at)
			if err == nil && !slices.Equal(bs, want) {
				err = errors.New("wrong bindings")
			}
			results <- err
		}()
	}
	took.Wait() // every caller has its time
	<-entered   // and a pass is under way, held
	close(release)
	done.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Errorf("SyncAfter: %v", err)
		}
	}
	// The held pass serves the callers that came before it started; one
	// more serves all the others, whose times are all before its start.
	if n := cg.resolveCount(); n < 1 || n > 2 {
		t.Errorf("%d callers ran %d passes, want 1 or 2", callers, n)
	}

	// A completed pass that started after t serves without another.
	before := cg.resolveCount()
	long := time.Now().Add(-time.Hour)
	if bs, err := w.SyncAfter(long); err != nil || !slices.Equal(bs, want) {
		t.Errorf("SyncAfter(an hour ago) = %+v, %v", bs, err)
	}
	if n := cg.resolveCount(); n != before {
		t.Errorf("SyncAfter(an hour ago) ran %d passes, want none", n-before)
	}
	// A time after the last pass started needs a new one.
	if _, err := w.SyncAfter(time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := cg.resolveCount(); n != before+1 {
		t.Errorf("SyncAfter(now) ran %d passes, want 1", n-before)
	}
}

// guardChain is what guards the cgroup directory p when it is the deepest
// existing one above a workload: p and its ancestors but the root (the root
// only when p is the root), sorted; nothing when p is "".
func guardChain(p string) []string {
	if p == "" {
		return nil
	}
	chain := []string{p}
	for p != "/" && path.Dir(p) != "/" {
		p = path.Dir(p)
		chain = append([]string{p}, chain...)
	}
	return chain
}

// TestExpectedCgroups: each workload's expected path (resolved, from its
// slice when stopped, or its cgroup selector), and delivery between
// OnChange and OnGuards, retried after a failure.
func TestExpectedCgroups(t *testing.T) {
	cg := &fakeCgroups{ids: map[string]uint64{"/system.slice": 10, "/system.slice/run.service": 11}, units: map[string]string{"run.service": "/system.slice/run.service"},
		slices: map[string]string{"new.service": "agents-x.slice"}}
	w := cg.watcher(
		WatchedWorkload{ID: 1, Name: "running", Selector: Selector{SystemdUnit: "run.service"}},
		WatchedWorkload{ID: 2, Name: "stopped", Selector: Selector{SystemdUnit: "new.service"}},
		WatchedWorkload{ID: 3, Name: "outer", Selector: Selector{Cgroup: "/agents.slice"}},
		WatchedWorkload{ID: 4, Name: "inner", Selector: Selector{Cgroup: "/teams/a/agent"}},
		WatchedWorkload{ID: 5, Name: "same", Selector: Selector{Cgroup: "/system.slice/run.service"}},
	)
	var order []string
	var got []ExpectedCgroup
	w.OnChange = func([]Binding) error { order = append(order, "bindings"); return nil }
	w.OnExpected = func(es []ExpectedCgroup) error { order = append(order, "expected"); got = es; return nil }
	w.OnGuards = func([]Guard) error { order = append(order, "guards"); return nil }
	if _, err := w.Sync(); err != nil && !errors.Is(err, ErrCgroupNotFound) {
		t.Fatal(err)
	}
	want := []ExpectedCgroup{
		{Path: "/agents.slice", WorkloadID: 3},
		{Path: "/agents.slice/agents-x.slice/new.service", WorkloadID: 2},
		{Path: "/system.slice/run.service", WorkloadID: 1}, // the first of two at one path
		{Path: "/teams/a/agent", WorkloadID: 4},
	}
	if !slices.Equal(got, want) {
		t.Errorf("expected cgroups\n%+v\nwant\n%+v", got, want)
	}
	if !slices.Equal(order, []string{"bindings", "expected", "guards"}) {
		t.Errorf("delivery order %v, want bindings, expected, guards", order)
	}
	// Unchanged: not delivered again; a failure is retried.
	order = nil
	w.OnExpected = func([]ExpectedCgroup) error { order = append(order, "expected"); return errors.New("map full") }
	w.Sync()
	w.Sync()
	if n := slices.Index(order, "expected"); n >= 0 {
		t.Errorf("unchanged expected cgroups delivered again: %v", order)
	}
	cg.update(func(f *fakeCgroups) { f.slices["new.service"] = "agents-y.slice" }) // its Slice= changed
	w.Sync()
	w.Sync()
	if n := len(slices.DeleteFunc(slices.Clone(order), func(s string) bool { return s != "expected" })); n != 2 {
		t.Errorf("a failed OnExpected was tried %d times over two passes, want 2: %v", n, order)
	}
}
