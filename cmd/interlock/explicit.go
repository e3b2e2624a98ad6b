package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/proxy"
)

// startExplicit gives every target a plain listener: no eBPF, no
// privileges. Callers are identified from /proc (the process that owns the
// client socket, and its cgroup); --explicit-workload names the workload
// for callers whose process cannot be found. A process that is found but
// is in no workload is refused.
func (g *gateway) startExplicit(ctx, serveCtx context.Context, wg *sync.WaitGroup) error {
	cfg := g.cfg
	if root, err := identity.CgroupV2Root(); err == nil {
		g.watcher = &identity.Watcher{
			Root:      root,
			Workloads: g.watchedWorkloads(),
			Interval:  cfg.Gateway.ResolveInterval.Duration,
			Logger:    g.logger,
			OnChange:  func([]identity.Binding) error { return nil },
		}
		if _, err := g.watcher.Sync(); err != nil {
			g.logger.Warn("resolving workload cgroups", "error", err)
		}
		go func() { _ = g.watcher.Run(ctx) }()
	} else {
		g.logger.Warn("no cgroup v2 hierarchy: callers can only be attributed with --explicit-workload", "error", err)
	}
	var fallback *identity.Workload
	if g.explicitWorkload != "" {
		w := cfg.Workload(g.explicitWorkload)
		id, _ := g.workloads.Lookup(w.ID())
		fallback = &id
	}

	next := cfg.Gateway.ListenAddr
	for i := range cfg.Targets {
		t := &cfg.Targets[i]
		addr := t.ListenAddr
		if !addr.IsValid() {
			next = netip.AddrPortFrom(next.Addr(), next.Port()+1)
			addr = next
		}
		if t.Host == "" && !t.Prefix.IsSingleIP() {
			return fmt.Errorf("target %s: explicit mode needs one address to dial, not the prefix %s", t.Name, t.Prefix)
		}
		ln, err := net.Listen("tcp", addr.String())
		if err != nil {
			return fmt.Errorf("explicit listener for target %s: %w", t.Name, err)
		}
		g.logger.Info("explicit listener up", "target", t.Name, "address", ln.Addr().String(), "upstream", t.Address)
		if !addr.Addr().IsLoopback() {
			g.warnNotLoopback(t.Name, ln.Addr().String(), fallback)
		}
		g.serve(serveCtx, wg, ln, &explicitAttributor{
			target:    g.targets[t.ID()],
			host:      t.Host,
			dest:      netip.AddrPortFrom(t.Prefix.Addr(), t.Port),
			port:      t.Port,
			watcher:   g.watcher,
			workloads: g.workloads,
			fallback:  fallback,
		}, t.Name)
	}
	return nil
}

// warnNotLoopback says what happens to callers from other hosts (or other
// network namespaces) on a listener they can reach: /proc on this host
// cannot show their process.
func (g *gateway) warnNotLoopback(target, address string, fallback *identity.Workload) {
	if fallback != nil {
		g.logger.Warn("explicit listener is not on loopback: callers from other hosts or network namespaces cannot be identified and get the --explicit-workload workload's identity",
			"target", target, "address", address, "workload", fallback.Name)
		return
	}
	g.logger.Warn("explicit listener is not on loopback: callers from other hosts or network namespaces cannot be identified and are refused",
		"target", target, "address", address)
}

// explicitAttributor serves one target's plain listener.
type explicitAttributor struct {
	target    proxy.Target
	host      string // resolved per connection when set
	dest      netip.AddrPort
	port      uint16
	watcher   *identity.Watcher
	workloads *identity.Registry
	fallback  *identity.Workload
}

func (a *explicitAttributor) Attribute(ctx context.Context, conn net.Conn) (proxy.Attribution, error) {
	dest := a.dest
	if a.host != "" {
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", a.host)
		if err != nil || len(addrs) == 0 {
			return proxy.Attribution{}, fmt.Errorf("resolving %s: %w", a.host, err)
		}
		dest = netip.AddrPortFrom(addrs[0].Unmap(), a.port)
	}
	caller, err := a.caller(conn)
	if err != nil {
		return proxy.Attribution{}, err
	}
	return proxy.Attribution{Target: a.target, Caller: caller, Destination: dest}, nil
}

// caller finds the process that owns the client side of conn and the
// workload its cgroup belongs to. --explicit-workload (a.fallback) is for
// a caller whose process cannot be found at all (a client in another
// network namespace or on another host, or one that already exited); a
// process that is found but is in no workload's cgroup is refused, or any
// local user could borrow the workload's identity by dialling the
// listener.
func (a *explicitAttributor) caller(conn net.Conn) (identity.Caller, error) {
	server, err1 := netip.ParseAddrPort(conn.LocalAddr().String())
	client, err2 := netip.ParseAddrPort(conn.RemoteAddr().String())
	if err := errors.Join(err1, err2); err != nil {
		return identity.Caller{}, err
	}
	pid, uid, err := identity.LocalPeer(server, client)
	if err != nil {
		if a.fallback != nil {
			return a.workloads.Caller(a.fallback.ID, 0, 0, 0)
		}
		return identity.Caller{}, fmt.Errorf("%w: cannot find the process of client %s (--explicit-workload names a workload for such callers): %w", proxy.ErrUnknownWorkload, client, err)
	}
	if a.watcher == nil {
		return identity.Caller{}, fmt.Errorf("%w: process %d (uid %d, client %s): no cgroup v2 hierarchy to find its workload in", proxy.ErrUnknownWorkload, pid, uid, client)
	}
	path, err := identity.ProcessCgroup(pid)
	if err != nil {
		return identity.Caller{}, fmt.Errorf("%w: process %d (uid %d, client %s): %w", proxy.ErrUnknownWorkload, pid, uid, client, err)
	}
	b, ok := identity.MatchCgroupPath(path, a.watcher.Current())
	if !ok {
		return identity.Caller{}, fmt.Errorf("%w: process %d (uid %d, client %s) is in cgroup %s, which is no workload's (--explicit-workload applies only to callers whose process cannot be found)",
			proxy.ErrUnknownWorkload, pid, uid, client, path)
	}
	return a.workloads.Caller(b.WorkloadID, pid, uid, b.CgroupID)
}
