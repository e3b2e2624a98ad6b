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
// for callers that cannot be identified.
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

func (a *explicitAttributor) caller(conn net.Conn) (identity.Caller, error) {
	server, err1 := netip.ParseAddrPort(conn.LocalAddr().String())
	client, err2 := netip.ParseAddrPort(conn.RemoteAddr().String())
	if err := errors.Join(err1, err2); err != nil {
		return identity.Caller{}, err
	}
	pid, uid, err := identity.LocalPeer(server, client)
	if err == nil && a.watcher != nil {
		if path, cerr := identity.ProcessCgroup(pid); cerr == nil {
			if b, ok := identity.MatchCgroupPath(path, a.watcher.Current()); ok {
				return a.workloads.Caller(b.WorkloadID, pid, uid, b.CgroupID)
			}
		}
	}
	if a.fallback != nil {
		return a.workloads.Caller(a.fallback.ID, pid, uid, 0)
	}
	if err != nil {
		return identity.Caller{}, fmt.Errorf("%w: cannot find the process of client %s: %w", proxy.ErrUnknownWorkload, client, err)
	}
	return identity.Caller{}, fmt.Errorf("%w: process %d (client %s) is in no workload's cgroup", proxy.ErrUnknownWorkload, pid, client)
}
