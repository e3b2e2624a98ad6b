package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// WatchedWorkload is a workload the Watcher keeps resolved.
type WatchedWorkload struct {
	ID       uint32
	Name     string
	Selector Selector
}

// Binding is one resolved workload: its cgroup right now.
type Binding struct {
	WorkloadID uint32
	Name       string
	CgroupID   uint64
	Path       string // below the cgroup v2 root, e.g. "/system.slice/agent.service"
}

// DefaultWatchInterval is how often a Watcher with no Interval resolves.
const DefaultWatchInterval = 2 * time.Second

// Watcher keeps workloads' cgroup ids current. They change under the
// gateway: systemd removes a unit's cgroup when it stops and makes a new one,
// with a new id, when it starts again. The exported fields are the
// configuration; set them before the first Sync and leave them alone after.
type Watcher struct {
	Root          string // the cgroup v2 mount point
	Workloads     []WatchedWorkload
	Interval      time.Duration // between passes of Run; DefaultWatchInterval when 0
	CreateMissing bool          // create missing Cgroup selectors' directories
	Logger        *slog.Logger  // nil discards
	// OnChange gets the full current set, in Workloads order, after the
	// first pass and whenever an id or path changes. When it fails it is
	// called again on the next pass even if nothing changed.
	OnChange func(bindings []Binding) error
	// OnGuards gets the full set of guards, sorted by path, after the
	// first pass and whenever a guard or its watermark changes (a
	// watermark moves whenever a cgroup is made in its directory). It is
	// called only once OnChange has taken the pass's bindings, or had
	// nothing new to take, so no watermark passes a workload's new cgroup
	// before the workloads map holds it. When it fails, or OnChange did,
	// it is called again on the next pass even if nothing changed.
	OnGuards func(guards []Guard) error
	// OnExpected gets the paths workloads' cgroups are or will be made
	// at, sorted by path, after
	// OnChange and before OnGuards, whenever they change; retried like
	// OnGuards.
	OnExpected func(expected []ExpectedCgroup) error

	// Stand-ins for tests: resolve for ResolveSelector, unitSlice for
	// asking systemd for a unit's Slice property ("" when systemd does not
	// run or say), tree for reading guard directories.
	resolve   func(root string, sel Selector, createMissing bool) (string, uint64, error)
	unitSlice func(unit string) (string, error)
	tree      *cgroupTree

	passMu  sync.Mutex // guards running and last
	running *pass      // the pass under way, nil when none is
	last    *pass      // the last pass that completed

	syncMu      sync.Mutex // one pass at a time; guards the fields below
	state       map[string]workloadState
	delivered   []Binding // the set OnChange last accepted
	deliveredOK bool      // false before the first delivery and after a failed one
	guards      []Guard   // the guards the last pass found
	guardsSent  []Guard   // the set OnGuards last accepted
	guardsOK    bool      // false before the first delivery and after a failed one
	// expectedSent is the set OnExpected last accepted; expectedOK is
	// false before the first delivery and after a failed one.
	expectedSent []ExpectedCgroup
	expectedOK   bool
	// guardProblems holds, by guard path, why the directory could not
	// be read, as logged.
	guardProblems map[string]string
	lastFailure   string // the last error Run logged

	mu      sync.RWMutex // guards the fields below, read by Current, Pending and Run
	current []Binding
	pending []string
	watched []Guard       // the guards whose directories Run watches
	moved   chan struct{} // tells Run that watched changed; nil until Run asks
	kick    chan struct{} // Kick's requests to Run; nil until either asks
}

// pass is one resolution pass, shared by every SyncAfter caller it serves.
type pass struct {
	start    time.Time
	done     chan struct{} // closed when the pass has ended
	bindings []Binding
	err      error
}

// workloadState is what was last logged about a workload, so each state
// change is logged once, not every pass.
type workloadState struct {
	binding  Binding
	problem  string // "" when resolved
	lastPath string // the path it last resolved to, kept while it does not
}

// problemNotFound is the state of a workload whose cgroup does not exist;
// the precise error text varies with how it was looked for.
const problemNotFound = "not found"

// Sync resolves every workload once and calls OnChange when the set
// changed, then OnGuards when the guards did. Workloads that cannot be
// resolved are left out of the set and listed by Pending; each is logged
// once when it goes missing and once when it appears. The error is
// OnChange's and OnGuards', joined with any invalid selectors. It is
// SyncAfter(time.Now()).
func (w *Watcher) Sync() ([]Binding, error) {
	return w.SyncAfter(time.Now())
}

// SyncAfter returns the result of a pass that started at t or later, once
// it has completed: the one under way if it started late enough, else a
// new one. Concurrent callers share passes, so a burst of callers costs
// one or two passes, not one each. The gateway calls it for a connection
// from a cgroup it does not know, with the time it accepted it: a pass
// that started after that sees the cgroup.
func (w *Watcher) SyncAfter(t time.Time) ([]Binding, error) {
	for {
		w.passMu.Lock()
		if p := w.last; p != nil && !p.start.Before(t) {
			w.passMu.Unlock()
			return slices.Clone(p.bindings), p.err
		}
		if p := w.running; p != nil {
			w.passMu.Unlock()
			<-p.done
			continue
		}
		now := time.Now()
		if now.Before(t) {
			w.passMu.Unlock()
			time.Sleep(t.Sub(now))
			continue
		}
		p := &pass{start: now, done: make(chan struct{})}
		w.running = p
		w.passMu.Unlock()
		w.runPass(p)
		return slices.Clone(p.bindings), p.err
	}
}

// runPass runs p and publishes it. A pass that panics is not published:
// its waiters start another.
func (w *Watcher) runPass(p *pass) {
	completed := false
	defer func() {
		w.passMu.Lock()
		w.running = nil
		if completed {
			w.last = p
		}
		w.passMu.Unlock()
		close(p.done)
	}()
	p.bindings, p.err = w.sync()
	completed = true
}

// sync is one pass: read the guard directories, resolve the workloads,
// hand on what changed.
func (w *Watcher) sync() ([]Binding, error) {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	log := w.logger()
	resolve := w.resolve
	if resolve == nil {
		resolve = ResolveSelector
	}
	tree := systemCgroupTree()
	if w.tree != nil {
		tree = *w.tree
	}
	units := &unitSlices{ask: w.unitSlice, log: log, paths: map[string]string{}}
	if units.ask == nil {
		units.ask = systemUnitSlice
	}

	// Watermarks first: a cgroup made while the workloads resolve then
	// has a higher id than any read here.
	reads := newGuardReads(w.Root, tree)
	for _, dir := range w.guardCandidates(tree, units) {
		reads.read(dir)
	}
	reads.late = true

	bs := make([]Binding, 0, len(w.Workloads))
	rs := make([]resolution, 0, len(w.Workloads))
	var pending []string
	var errs []error
	state := make(map[string]workloadState, len(w.Workloads))
	for _, wl := range w.Workloads {
		prev, seen := w.state[wl.Name]
		b, err := w.resolveOne(resolve, wl)
		rs = append(rs, resolution{wl: wl, path: b.Path, err: err})
		if err != nil {
			pending = append(pending, wl.Name)
			problem := err.Error()
			if errors.Is(err, ErrCgroupNotFound) {
				problem = problemNotFound
			}
			if errors.Is(err, ErrInvalidSelector) {
				errs = append(errs, fmt.Errorf("workload %s: %w", wl.Name, err))
			}
			if !seen || prev.problem != problem {
				w.logMissing(log, wl, err)
			}
			state[wl.Name] = workloadState{problem: problem, lastPath: prev.lastPath}
			continue
		}
		if !seen || prev.problem != "" || prev.binding != b {
			logFound(log, wl, b, prev, seen)
		}
		state[wl.Name] = workloadState{binding: b, lastPath: b.Path}
		bs = append(bs, b)
	}
	w.state = state
	guards := w.guardSet(log, tree, reads, units, rs)
	w.guards = guards
	expected := w.expectedSet(units, rs)

	w.mu.Lock()
	w.current, w.pending = bs, pending
	if !sameGuardDirs(w.watched, guards) && w.moved != nil {
		select {
		case w.moved <- struct{}{}:
		default:
		}
	}
	w.watched = guards
	w.mu.Unlock()

	if err := w.deliver(bs, expected, guards); err != nil {
		errs = append(errs, err)
	}
	return slices.Clone(bs), errors.Join(errs...)
}

// deliver hands bindings to OnChange, then the expected cgroups to
// OnExpected, then guards to OnGuards, each when it differs from what that
// callback last accepted. Guards wait for the bindings: a watermark above
// a new cgroup's id tells the kernel the gateway knows that cgroup.
func (w *Watcher) deliver(bs []Binding, expected []ExpectedCgroup, guards []Guard) error {
	if !w.deliveredOK || !slices.Equal(bs, w.delivered) {
		if w.OnChange != nil {
			if err := w.OnChange(slices.Clone(bs)); err != nil {
				w.deliveredOK = false
				return fmt.Errorf("applying workload cgroups: %w", err)
			}
		}
		w.delivered, w.deliveredOK = bs, true
	}
	if w.OnExpected != nil && (!w.expectedOK || !slices.Equal(expected, w.expectedSent)) {
		if err := w.OnExpected(slices.Clone(expected)); err != nil {
			w.expectedOK = false
			return fmt.Errorf("applying expected cgroups: %w", err)
		}
		w.expectedSent, w.expectedOK = expected, true
	}
	if w.OnGuards == nil || w.guardsOK && slices.EqualFunc(guards, w.guardsSent, Guard.equal) {
		return nil
	}
	if err := w.OnGuards(cloneGuards(guards)); err != nil {
		w.guardsOK = false
		return fmt.Errorf("applying cgroup guards: %w", err)
	}
	w.guardsSent, w.guardsOK = guards, true
	return nil
}

func (w *Watcher) resolveOne(resolve func(string, Selector, bool) (string, uint64, error), wl WatchedWorkload) (Binding, error) {
	dir, id, err := resolve(w.Root, wl.Selector, w.CreateMissing)
	if err != nil {
		return Binding{}, err
	}
	path, err := cgroupPath(w.Root, dir)
	if err != nil {
		return Binding{}, fmt.Errorf("%s: %w", wl.Selector, err)
	}
	return Binding{WorkloadID: wl.ID, Name: wl.Name, CgroupID: id, Path: path}, nil
}

func (w *Watcher) logMissing(log *slog.Logger, wl WatchedWorkload, err error) {
	attrs := []any{"workload", wl.Name, "selector", wl.Selector.String(), "error", err}
	if errors.Is(err, ErrCgroupNotFound) {
		log.Warn("workload "+wl.Name+": cgroup not found, not enforced until it appears", attrs...)
		return
	}
	log.Warn("workload "+wl.Name+": cannot resolve its cgroup, not enforced", attrs...)
}

func logFound(log *slog.Logger, wl WatchedWorkload, b Binding, prev workloadState, seen bool) {
	attrs := []any{"workload", wl.Name, "selector", wl.Selector.String(), "path", b.Path, "cgroup_id", b.CgroupID}
	switch {
	case seen && prev.problem != "":
		log.Info("workload "+wl.Name+": cgroup appeared, enforced", attrs...)
	case seen:
		log.Info("workload "+wl.Name+": cgroup changed", append(attrs, "previous_path", prev.binding.Path, "previous_cgroup_id", prev.binding.CgroupID)...)
	default:
		log.Info("workload "+wl.Name+": cgroup resolved", attrs...)
	}
}

// guardDebounce is how long Run waits after a cgroup is made in a guard
// directory before it resolves: systemd makes a unit's cgroups in a burst,
// and one pass then sees them all.
const guardDebounce = 5 * time.Millisecond

// guardSpacing is the least time from one pass a cgroup's creation started
// to the next: on a host that starts units all the time, every pass runs
// systemctl once per unit workload. The kernel's guards keep connects from
// the cgroups made meanwhile on the gateway's side, so waiting is safe.
const guardSpacing = 50 * time.Millisecond

// Run calls Sync every Interval until ctx is done, and returns ctx's error.
// A failed OnChange or OnGuards is logged (once per distinct error) and
// retried on the next pass. On Linux it also watches every guard's
// directory and resolves promptly when a cgroup is made there, so a
// restarted unit's new cgroup is bound without waiting for the interval.
func (w *Watcher) Run(ctx context.Context) error {
	interval := w.Interval
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	watch := newDirWatch(w.logger())
	defer watch.close()
	moved := w.movedChan()
	kick := w.kickChan()

	w.syncAndReport()
	var lastTriggered time.Time
	for {
		watch.set(w.Root, w.watchedGuards())
		soon := false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-moved:
			continue
		case <-t.C:
		case <-watch.created():
			soon = true
		case <-kick:
			soon = true
		}
		if soon {
			debounce := time.NewTimer(max(guardDebounce, guardSpacing-time.Since(lastTriggered)))
			select {
			case <-ctx.Done():
				debounce.Stop()
				return ctx.Err()
			case <-debounce.C:
			}
			// What came during the wait, the coming pass sees; what
			// comes during the pass starts another.
			select {
			case <-watch.created():
			default:
			}
			select {
			case <-kick:
			default:
			}
			lastTriggered = time.Now()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		w.syncAndReport()
	}
}

// Kick asks Run for a pass soon, as a cgroup made in a guard's directory
// does (passes so started are guardSpacing apart), without waiting for it:
// for a connection from a new cgroup that the last pass's paths already
// attribute, whose id the kernel's map should learn.
func (w *Watcher) Kick() {
	select {
	case w.kickChan() <- struct{}{}:
	default:
	}
}

func (w *Watcher) kickChan() chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.kick == nil {
		w.kick = make(chan struct{}, 1)
	}
	return w.kick
}

// movedChan returns the channel a pass signals when the guard directories
// change.
func (w *Watcher) movedChan() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.moved == nil {
		w.moved = make(chan struct{}, 1)
	}
	return w.moved
}

func (w *Watcher) watchedGuards() []Guard {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.watched
}

func (w *Watcher) syncAndReport() {
	_, err := w.Sync()
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	switch {
	case err != nil && err.Error() != w.lastFailure:
		w.logger().Error("syncing workload cgroups", "error", err)
		w.lastFailure = err.Error()
	case err == nil && w.lastFailure != "":
		w.logger().Info("workload cgroups synced again")
		w.lastFailure = ""
	}
}

// Current returns the workloads resolved by the last pass.
func (w *Watcher) Current() []Binding {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return slices.Clone(w.current)
}

// Guards returns the guards of the last pass, for status output.
func (w *Watcher) Guards() []Guard {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return cloneGuards(w.watched)
}

// Pending returns the names of the workloads the last pass could not
// resolve, for status output.
func (w *Watcher) Pending() []string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return slices.Clone(w.pending)
}

func (w *Watcher) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}
