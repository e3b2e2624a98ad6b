package identity

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// logRecorder is a slog handler that keeps what was logged.
type logRecorder struct {
	mu   sync.Mutex
	recs []string // "LEVEL message"
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Level.String()+" "+r.Message)
	return nil
}

// take returns how many records contain s, and forgets them all.
func (l *logRecorder) take(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if strings.Contains(r, s) {
			n++
		}
	}
	l.recs = nil
	return n
}

// fakeRoot is where the fake cgroup tree is mounted.
const fakeRoot = "/cg"

// fakeCgroups stands in for the cgroup tree and systemd: ResolveSelector,
// the guard directories' ids, and units' slices.
type fakeCgroups struct {
	mu  sync.Mutex
	ids map[string]uint64 // cgroup path → id; absent means not found. The root is id 1.
	// units says where a unit runs; /system.slice/UNIT when not listed.
	units map[string]string
	// slices is each unit's Slice property; sliceErr fails every lookup.
	slices   map[string]string
	sliceErr error
	// fail makes resolving the cgroup at a path fail with this error.
	fail map[string]error
	// unreadable guard directories fail to scan.
	unreadable map[string]bool
	resolves   int    // resolve calls
	during     func() // runs inside every resolve call
}

func (f *fakeCgroups) set(path string, id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == 0 {
		delete(f.ids, path)
		return
	}
	f.ids[path] = id
}

func (f *fakeCgroups) update(change func(f *fakeCgroups)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *fakeCgroups) resolve(root string, sel Selector, _ bool) (string, uint64, error) {
	if err := sel.validate(); err != nil {
		return "", 0, err
	}
	f.mu.Lock()
	f.resolves++
	during := f.during
	f.mu.Unlock()
	if during != nil {
		during()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p := sel.Cgroup
	if u := sel.SystemdUnit; u != "" {
		p = "/system.slice/" + u
		if at, ok := f.units[u]; ok {
			p = at
		}
	}
	if err := f.fail[p]; err != nil {
		return "", 0, fmt.Errorf("%s: %w", sel, err)
	}
	id, ok := f.ids[p]
	if !ok {
		return "", 0, fmt.Errorf("%s: %w", sel, ErrCgroupNotFound)
	}
	return root + p, id, nil
}

func (f *fakeCgroups) resolveCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.resolves
}

func (f *fakeCgroups) unitSlice(unit string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.slices[unit], f.sliceErr
}

// tree reads the fake tree below fakeRoot.
func (f *fakeCgroups) tree() *cgroupTree {
	rel := func(dir string) string { return cleanCgroupPath(strings.TrimPrefix(dir, fakeRoot)) }
	return &cgroupTree{
		isDir: func(dir string) bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			_, ok := f.ids[rel(dir)]
			return ok || rel(dir) == "/"
		},
		scan: func(dir string) (uint64, uint64, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			p := rel(dir)
			self, ok := f.ids[p]
			switch {
			case f.unreadable[p]:
				return 0, 0, fmt.Errorf("reading %s: permission denied", dir)
			case p == "/":
				self = 1
			case !ok:
				return 0, 0, fmt.Errorf("reading %s: %w", dir, fs.ErrNotExist)
			}
			var highest uint64
			for q, id := range f.ids {
				if q != p && path.Dir(q) == p {
					highest = max(highest, id)
				}
			}
			return self, highest, nil
		},
	}
}

// watcher is a Watcher of the fake tree.
func (f *fakeCgroups) watcher(wls ...WatchedWorkload) *Watcher {
	return &Watcher{Root: fakeRoot, Workloads: wls, resolve: f.resolve, unitSlice: f.unitSlice, tree: f.tree()}
}

func TestWatcherSync(t *testing.T) {
	cg := &fakeCgroups{ids: map[string]uint64{"/agents/demo": 10}}
	logs := &logRecorder{}
	var calls [][]Binding
	failNext := false
	w := &Watcher{
		Root: "/cg",
		Workloads: []WatchedWorkload{
			{ID: 1, Name: "demo", Selector: Selector{Cgroup: "/agents/demo"}},
			{ID: 2, Name: "unit", Selector: Selector{SystemdUnit: "agent.service"}},
		},
		Logger: slog.New(logs),
		OnChange: func(bs []Binding) error {
			calls = append(calls, bs)
			if failNext {
				failNext = false
				return errors.New("map full")
			}
			return nil
		},
		resolve:   cg.resolve,
		unitSlice: cg.unitSlice,
		tree:      cg.tree(),
	}
	demo := Binding{WorkloadID: 1, Name: "demo", CgroupID: 10, Path: "/agents/demo"}
	unit := Binding{WorkloadID: 2, Name: "unit", CgroupID: 20, Path: "/system.slice/agent.service"}

	steps := []struct {
		name        string
		change      func()
		failOnce    bool
		want        []Binding // the set Sync returns and Current shows
		wantPending []string
		wantCall    bool   // OnChange called with want
		wantErr     bool   // Sync returns OnChange's error
		wantWarn    int    // "not found" warnings logged by this pass
		wantInfo    string // an info message this pass must log, "" for none
	}{
		{name: "first pass delivers even what is partial",
			want: []Binding{demo}, wantPending: []string{"unit"}, wantCall: true, wantWarn: 1, wantInfo: "workload demo: cgroup resolved"},
		{name: "nothing changed: no call, no repeated warning",
			want: []Binding{demo}, wantPending: []string{"unit"}},
		{name: "the unit appears",
			change: func() { cg.set("/system.slice/agent.service", 20) },
			want:   []Binding{demo, unit}, wantCall: true, wantInfo: "workload unit: cgroup appeared"},
		{name: "the unit restarts with a new id",
			change: func() { cg.set("/system.slice/agent.service", 21) },
			want:   []Binding{demo, {WorkloadID: 2, Name: "unit", CgroupID: 21, Path: unit.Path}}, wantCall: true, wantInfo: "workload unit: cgroup changed"},
		{name: "the unit stops",
			change: func() { cg.set("/system.slice/agent.service", 0) },
			want:   []Binding{demo}, wantPending: []string{"unit"}, wantCall: true, wantWarn: 1},
		{name: "still stopped: logged once only",
			want: []Binding{demo}, wantPending: []string{"unit"}},
		{name: "a failed delivery is an error",
			change:   func() { cg.set("/agents/demo", 11) },
			failOnce: true,
			want:     []Binding{{WorkloadID: 1, Name: "demo", CgroupID: 11, Path: demo.Path}}, wantPending: []string{"unit"}, wantCall: true, wantErr: true},
		{name: "and is retried though nothing changed",
			want: []Binding{{WorkloadID: 1, Name: "demo", CgroupID: 11, Path: demo.Path}}, wantPending: []string{"unit"}, wantCall: true},
		{name: "everything gone: an empty set is delivered",
			change: func() { cg.set("/agents/demo", 0) },
			want:   []Binding{}, wantPending: []string{"demo", "unit"}, wantCall: true, wantWarn: 1},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		failNext = s.failOnce
		calls = nil
		got, err := w.Sync()
		if (err != nil) != s.wantErr {
			t.Fatalf("%s: Sync error = %v, want error %v", s.name, err, s.wantErr)
		}
		if !slices.Equal(got, s.want) || got == nil {
			t.Errorf("%s: Sync = %+v, want %+v", s.name, got, s.want)
		}
		if cur := w.Current(); !slices.Equal(cur, s.want) {
			t.Errorf("%s: Current = %+v, want %+v", s.name, cur, s.want)
		}
		if p := w.Pending(); !slices.Equal(p, s.wantPending) {
			t.Errorf("%s: Pending = %v, want %v", s.name, p, s.wantPending)
		}
		switch {
		case s.wantCall && (len(calls) != 1 || !slices.Equal(calls[0], s.want)):
			t.Errorf("%s: OnChange calls = %+v, want one with %+v", s.name, calls, s.want)
		case !s.wantCall && len(calls) != 0:
			t.Errorf("%s: OnChange called with %+v, want no call", s.name, calls)
		}
		if s.wantInfo != "" && !logs.has("INFO "+s.wantInfo) {
			t.Errorf("%s: no info %q logged", s.name, s.wantInfo)
		}
		if n := logs.take("cgroup not found, not enforced until it appears"); n != s.wantWarn {
			t.Errorf("%s: %d not-found warnings, want %d", s.name, n, s.wantWarn)
		}
	}
}

// has reports whether a record starts with s.
func (l *logRecorder) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.recs, func(r string) bool { return strings.HasPrefix(r, s) })
}

func TestWatcherInvalidSelector(t *testing.T) {
	w := &Watcher{
		Root:      "/cg",
		Workloads: []WatchedWorkload{{ID: 1, Name: "both", Selector: Selector{Cgroup: "/a", SystemdUnit: "a.service"}}},
		resolve:   (&fakeCgroups{ids: map[string]uint64{"/a": 1}}).resolve,
	}
	bs, err := w.Sync()
	if !errors.Is(err, ErrInvalidSelector) {
		t.Fatalf("Sync error = %v, want ErrInvalidSelector", err)
	}
	if len(bs) != 0 || !slices.Equal(w.Pending(), []string{"both"}) {
		t.Errorf("Sync = %+v, Pending = %v; want nothing bound and the workload pending", bs, w.Pending())
	}
}

func TestWatcherRun(t *testing.T) {
	cg := &fakeCgroups{ids: map[string]uint64{"/system.slice/agent.service": 5}}
	got := make(chan []Binding, 16)
	w := &Watcher{
		Root:      "/cg",
		Workloads: []WatchedWorkload{{ID: 1, Name: "unit", Selector: Selector{SystemdUnit: "agent.service"}}},
		Interval:  5 * time.Millisecond,
		OnChange:  func(bs []Binding) error { got <- bs; return nil },
		resolve:   cg.resolve,
		unitSlice: cg.unitSlice,
		tree:      cg.tree(),
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	wantID := func(id uint64) {
		t.Helper()
		select {
		case bs := <-got:
			if len(bs) != 1 || bs[0].CgroupID != id {
				t.Fatalf("OnChange(%+v), want cgroup id %d", bs, id)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("OnChange not called with cgroup id %d", id)
		}
	}
	wantID(5)
	cg.set("/system.slice/agent.service", 6)
	wantID(6)
	_ = w.Current() // concurrent with Run: the race detector checks this

	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

// TestWatcherKick: with the interval an hour away, Kick makes Run pass
// soon; Kick never blocks, however often it is called.
func TestWatcherKick(t *testing.T) {
	cg := &fakeCgroups{ids: map[string]uint64{"/system.slice/agent.service": 5}}
	got := make(chan []Binding, 16)
	w := &Watcher{
		Root:      "/cg",
		Workloads: []WatchedWorkload{{ID: 1, Name: "unit", Selector: Selector{SystemdUnit: "agent.service"}}},
		Interval:  time.Hour,
		OnChange:  func(bs []Binding) error { got <- bs; return nil },
		resolve:   cg.resolve,
		unitSlice: cg.unitSlice,
		tree:      cg.tree(),
	}
	w.Kick() // before Run: kept for it
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no first pass")
	}
	cg.set("/system.slice/agent.service", 6)
	for range 100 {
		w.Kick()
	}
	select {
	case bs := <-got:
		if len(bs) != 1 || bs[0].CgroupID != 6 {
			t.Errorf("OnChange(%+v) after Kick, want cgroup id 6", bs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Kick did not start a pass")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}
