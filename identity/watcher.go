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

	// resolve stands in for ResolveSelector in tests.
	resolve func(root string, sel Selector, createMissing bool) (string, uint64, error)

	syncMu      sync.Mutex // one pass at a time; guards the fields below
	state       map[string]workloadState
	delivered   []Binding // the set OnChange last accepted
	deliveredOK bool      // false before the first delivery and after a failed one
	lastFailure string    // the last OnChange error Run logged

	mu      sync.RWMutex // guards current and pending, read by Current and Pending
	current []Binding
	pending []string
}

// workloadState is what was last logged about a workload, so each state
// change is logged once, not every pass.
type workloadState struct {
	binding Binding
	problem string // "" when resolved
}

// problemNotFound is the state of a workload whose cgroup does not exist;
// the precise error text varies with how it was looked for.
const problemNotFound = "not found"

// Sync resolves every workload once and calls OnChange when the set
// changed. Workloads that cannot be resolved are left out of the set and
// listed by Pending; each is logged once when it goes missing and once when
// it appears. The error is OnChange's, joined with any invalid selectors.
func (w *Watcher) Sync() ([]Binding, error) {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	log := w.logger()
	resolve := w.resolve
	if resolve == nil {
		resolve = ResolveSelector
	}

	bs := make([]Binding, 0, len(w.Workloads))
	var pending []string
	var errs []error
	state := make(map[string]workloadState, len(w.Workloads))
	for _, wl := range w.Workloads {
		prev, seen := w.state[wl.Name]
		b, err := w.resolveOne(resolve, wl)
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
			state[wl.Name] = workloadState{problem: problem}
			continue
		}
		if !seen || prev.problem != "" || prev.binding != b {
			logFound(log, wl, b, prev, seen)
		}
		state[wl.Name] = workloadState{binding: b}
		bs = append(bs, b)
	}
	w.state = state

	w.mu.Lock()
	w.current, w.pending = bs, pending
	w.mu.Unlock()

	if w.deliveredOK && slices.Equal(bs, w.delivered) {
		return slices.Clone(bs), errors.Join(errs...)
	}
	if w.OnChange != nil {
		if err := w.OnChange(slices.Clone(bs)); err != nil {
			w.deliveredOK = false
			errs = append(errs, fmt.Errorf("applying workload cgroups: %w", err))
			return slices.Clone(bs), errors.Join(errs...)
		}
	}
	w.delivered, w.deliveredOK = bs, true
	return slices.Clone(bs), errors.Join(errs...)
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

// Run calls Sync every Interval until ctx is done, and returns ctx's error.
// A failed OnChange is logged (once per distinct error) and retried on the
// next pass.
func (w *Watcher) Run(ctx context.Context) error {
	interval := w.Interval
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		w.syncAndReport()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
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
