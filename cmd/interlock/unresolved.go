package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/redirect"
)

// A connect from a cgroup made since the watcher's last pass, below the
// parent of a workload's cgroup, that the kernel's mkdir hook could not
// classify (no BTF, a long path, a folder on the way) reaches the gateway
// whatever its destination (redirect.UnresolvedWorkload): the cgroup may be
// a restarted unit's new one. The gateway finds the cgroup's path, matches
// it against the workloads, and then serves the connection as the
// workload's, applies the workload's egress, or, for root only (mayRelay),
// relays it unchanged.

// Outcomes of an unresolved connection, the values of the outcome label of
// interlock_unresolved_connections_total.
const (
	unresolvedWorkload      = "workload"       // a workload's target connect: served as usual
	unresolvedEgressAllowed = "egress_allowed" // a workload's other connect its egress allows, by root: relayed
	unresolvedEgressDenied  = "egress_denied"  // a workload's other connect its egress denies: closed
	unresolvedNoWorkload    = "not_workload"   // a process in no workload, root in a cgroup root made: relayed unchanged
	unresolvedNotRelayed    = "not_relayed"    // a connect the gateway would have to dial for a non-root process: closed
	unresolvedGone          = "gone"           // the cgroup was removed before the gateway looked
)

// errNotRelayed: an unresolved connection the gateway would have to dial
// for a process other than root, which it does not do.
var errNotRelayed = errors.New("the gateway dials on a process's behalf only for root")

// egressTarget is the target name of a relayed connection whose destination
// is not a target. Target names cannot contain parentheses.
const egressTarget = "(egress)"

// unresolvedResolver turns an unresolved connection into an attribution.
type unresolvedResolver struct {
	root      string // the cgroup v2 mount point
	watcher   *identity.Watcher
	cfg       *config.Config
	workloads *identity.Registry
	logger    *slog.Logger
	outcomes  *prometheus.CounterVec
}

func newUnresolvedOutcomes(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "interlock_unresolved_connections_total",
		Help: "Connects from cgroups created since the gateway's last resolution pass (a restarted unit's new cgroup, or any new sibling of a workload's cgroup), by what the gateway found them to be.",
	}, []string{"outcome"})
	for _, o := range []string{unresolvedWorkload, unresolvedEgressAllowed, unresolvedEgressDenied, unresolvedNoWorkload, unresolvedNotRelayed, unresolvedGone} {
		c.WithLabelValues(o)
	}
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("registering interlock_unresolved_connections_total: %w", err)
	}
	return c, nil
}

func (r *unresolvedResolver) attribute(ctx context.Context, o redirect.Origin, targets map[uint32]proxy.Target) (proxy.Attribution, error) {
	asked := time.Now()
	path, err := r.cgroupPath(o)
	if err != nil {
		r.outcomes.WithLabelValues(unresolvedGone).Inc()
		return proxy.Attribution{}, fmt.Errorf("%w: cgroup %d of pid %d: %w", proxy.ErrUnknownWorkload, o.CgroupID, o.PID, err)
	}
	bindings, err := r.bindings(ctx, asked, path)
	if err != nil {
		return proxy.Attribution{}, err
	}
	target, isTarget := targets[o.TargetID]
	b, ok := identity.MatchCgroupPath(path, bindings)
	if !ok {
		// Not ours: the connection goes where the process dialled, as it
		// would have without interlock, if the gateway may dial for it.
		if err := r.mayRelay(o, path); err != nil {
			r.outcomes.WithLabelValues(unresolvedNotRelayed).Inc()
			return proxy.Attribution{}, fmt.Errorf("%w: cgroup %s is in no workload: %w", proxy.ErrUnknownWorkload, path, err)
		}
		r.outcomes.WithLabelValues(unresolvedNoWorkload).Inc()
		r.logger.Debug("connection from a new cgroup in no workload: relayed unchanged", "cgroup", path, "pid", o.PID, "destination", o.Destination)
		return r.relay(o, target, isTarget, identity.Caller{PID: o.PID, UID: o.UID, CgroupID: o.CgroupID}), nil
	}
	caller, err := r.workloads.Caller(b.WorkloadID, o.PID, o.UID, o.CgroupID)
	if err != nil {
		return proxy.Attribution{}, fmt.Errorf("%w: %w", proxy.ErrUnknownWorkload, err)
	}
	if isTarget {
		r.outcomes.WithLabelValues(unresolvedWorkload).Inc()
		r.logger.Info("connection from a workload's new cgroup, before the kernel knew it", "workload", b.Name, "cgroup", path, "target", target.Name)
		return proxy.Attribution{Target: target, Caller: caller, Destination: o.Destination}, nil
	}
	if o.TargetID != 0 {
		return proxy.Attribution{}, fmt.Errorf("%w: kernel target id %d", proxy.ErrUnknownTarget, o.TargetID)
	}
	w := r.cfg.WorkloadByID(b.WorkloadID)
	if w == nil || !w.Egress.Allows(o.Destination) {
		r.outcomes.WithLabelValues(unresolvedEgressDenied).Inc()
		return proxy.Attribution{}, fmt.Errorf("workload %s (cgroup %s) to %s: %w", b.Name, path, o.Destination, proxy.ErrEgressDenied)
	}
	if err := r.mayRelay(o, path); err != nil {
		r.outcomes.WithLabelValues(unresolvedNotRelayed).Inc()
		return proxy.Attribution{}, fmt.Errorf("workload %s (cgroup %s) to %s, which its egress allows: %w", b.Name, path, o.Destination, err)
	}
	r.outcomes.WithLabelValues(unresolvedEgressAllowed).Inc()
	return r.relay(o, target, false, caller), nil
}

// mayRelay tells whether the gateway may dial, for the process behind an
// unresolved connection, where the process itself would have gone. It
// dials as root and from its own cgroup, so rules that hold the process by
// its uid or cgroup (a firewall's owner match, IPAddressDeny=) would not
// see that connection: the gateway relays for root only, in a cgroup root
// made (in a subtree delegated to a user, the user makes cgroups at will).
// Everyone else's connection is closed; the next one, after the pass the
// connection started, is decided in the kernel and goes out directly.
func (r *unresolvedResolver) mayRelay(o redirect.Origin, path string) error {
	if o.UID != 0 {
		return fmt.Errorf("pid %d runs as uid %d: %w", o.PID, o.UID, errNotRelayed)
	}
	owner, err := identity.CgroupOwner(filepath.Join(r.root, filepath.FromSlash(path)))
	if err != nil {
		return errors.Join(err, errNotRelayed)
	}
	if owner != 0 {
		return fmt.Errorf("cgroup %s was made by uid %d: %w", path, owner, errNotRelayed)
	}
	return nil
}

// cgroupPath is the path of the cgroup the connect came from. The kernel
// opens a cgroup by its id only for a gateway with CAP_DAC_READ_SEARCH;
// without it, the caller's /proc/PID/cgroup names the cgroup, which counts
// only while its id is still the one the kernel recorded (the process may
// have moved since, or exited and its pid been reused).
func (r *unresolvedResolver) cgroupPath(o redirect.Origin) (string, error) {
	path, err := identity.CgroupPathByID(r.root, o.CgroupID)
	if err == nil || errors.Is(err, identity.ErrCgroupNotFound) {
		return path, err
	}
	byPID, perr := identity.ProcessCgroup(o.PID)
	if perr != nil {
		return "", errors.Join(err, perr)
	}
	id, perr := identity.CgroupID(filepath.Join(r.root, filepath.FromSlash(byPID)))
	switch {
	case perr != nil:
		return "", errors.Join(err, perr)
	case id != o.CgroupID:
		return "", errors.Join(err, fmt.Errorf("pid %d is in cgroup %s (id %d) now: %w", o.PID, byPID, id, identity.ErrCgroupNotFound))
	}
	return byPID, nil
}

// bindings are the workloads to match the cgroup at path against. A pass
// that starts after the connection was accepted puts the cgroup's id in the
// kernel's map (the caller's next connects are decided there) and binds a
// workload that just appeared. A restarted unit's cgroup has the path its
// binding already has, so when that matches and every workload is bound
// the last pass's paths decide, and the watcher is asked for a pass without
// waiting for it (Kick: such passes are spaced, however many connections
// ask); otherwise (no binding's path: a unit moved to another slice, or
// some workload not found yet, which might be the new cgroup's and deeper)
// the new pass decides, within the attribution's deadline.
func (r *unresolvedResolver) bindings(ctx context.Context, asked time.Time, path string) ([]identity.Binding, error) {
	current := r.watcher.Current()
	if _, ok := identity.MatchCgroupPath(path, current); ok && len(r.watcher.Pending()) == 0 {
		r.watcher.Kick()
		return current, nil
	}
	type result struct {
		bindings []identity.Binding
		err      error
	}
	done := make(chan result, 1)
	go func() {
		bs, err := r.watcher.SyncAfter(asked)
		done <- result{bs, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			r.logger.Warn("resolving workloads for a connection from a new cgroup", "cgroup", path, "error", res.err)
		}
		return res.bindings, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("resolving cgroup %s: %w", path, context.Cause(ctx))
	}
}

// relay attributes a connection the gateway forwards byte for byte, as the
// kernel would have let it go: to a target, for a process in no workload,
// or to a destination a workload's egress allows.
func (r *unresolvedResolver) relay(o redirect.Origin, target proxy.Target, isTarget bool, caller identity.Caller) proxy.Attribution {
	t := proxy.Target{Name: egressTarget, Protocol: "tcp", Address: o.Destination.String()}
	if isTarget {
		t = proxy.Target{ID: target.ID, Name: target.Name, Protocol: "tcp", Address: target.Address}
	}
	return proxy.Attribution{Target: t, Caller: caller, Destination: o.Destination}
}
