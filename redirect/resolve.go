package redirect

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// TargetSpec is a configured target before its hostname, if any, is
// resolved.
type TargetSpec struct {
	ID     uint32
	Name   string
	Host   string       // hostname to resolve; "" when Prefix is set
	Prefix netip.Prefix // a fixed address or prefix
	Port   uint16
}

// TargetResolver turns TargetSpecs into map entries and keeps hostname
// targets current: the gateway re-resolves them every Interval and hands
// the full set to OnChange when it changed. A failed lookup keeps the last
// addresses it had, so a DNS outage does not lift enforcement.
type TargetResolver struct {
	Specs    []TargetSpec
	Interval time.Duration
	Logger   *slog.Logger
	// Lookup resolves a hostname; nil uses net.DefaultResolver.
	Lookup   func(ctx context.Context, host string) ([]netip.Addr, error)
	OnChange func([]Target) error

	mu       sync.Mutex
	resolved map[uint32][]netip.Prefix
	failing  map[uint32]string
	last     []Target
	synced   bool
}

// Sync resolves every spec once and calls OnChange when the entries
// differ from the last successful call.
func (r *TargetResolver) Sync(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resolved == nil {
		r.resolved = map[uint32][]netip.Prefix{}
		r.failing = map[uint32]string{}
	}
	var out []Target
	for _, s := range r.Specs {
		if s.Host == "" {
			out = append(out, Target{ID: s.ID, Prefix: s.Prefix, Port: s.Port})
			r.resolved[s.ID] = []netip.Prefix{s.Prefix}
			continue
		}
		addrs, err := r.lookup(ctx, s.Host)
		if err != nil || len(addrs) == 0 {
			if r.failing[s.ID] == "" {
				r.logger().Warn("cannot resolve target hostname; keeping the addresses it had",
					"target", s.Name, "host", s.Host, "addresses", len(r.resolved[s.ID]), "error", err)
			}
			r.failing[s.ID] = fmt.Sprint(err)
		} else {
			var ps []netip.Prefix
			for _, a := range addrs {
				a = a.Unmap()
				ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
			}
			slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
			ps = slices.Compact(ps)
			if !slices.Equal(ps, r.resolved[s.ID]) {
				r.logger().Info("target hostname resolved", "target", s.Name, "host", s.Host, "addresses", ps)
			}
			r.resolved[s.ID] = ps
			delete(r.failing, s.ID)
		}
		for _, p := range r.resolved[s.ID] {
			out = append(out, Target{ID: s.ID, Prefix: p, Port: s.Port})
		}
	}
	if r.synced && slices.Equal(out, r.last) {
		return nil
	}
	if err := r.OnChange(out); err != nil {
		return fmt.Errorf("programming targets: %w", err)
	}
	r.last, r.synced = out, true
	return nil
}

// Run calls Sync every Interval until ctx is done.
func (r *TargetResolver) Run(ctx context.Context) {
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Sync(ctx); err != nil {
				r.logger().Error("target sync failed", "error", err)
			}
		}
	}
}

// Resolved returns each target's current addresses (by target id) and the
// last lookup error of those that are failing.
func (r *TargetResolver) Resolved() (map[uint32][]netip.Prefix, map[uint32]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.resolved), maps.Clone(r.failing)
}

func (r *TargetResolver) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if r.Lookup != nil {
		return r.Lookup(ctx, host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

func (r *TargetResolver) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}
