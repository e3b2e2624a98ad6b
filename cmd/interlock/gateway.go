package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/identity/adminauth"
	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/policy/review"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/record"
	"github.com/interlock-dev/interlock/redirect"
)

func newGatewayCommand() *cobra.Command {
	var (
		path             string
		explicit         bool
		explicitWorkload string
	)
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the gateway",
		Long: `Run the gateway. By default it installs (or adopts) the eBPF data path and
serves the connections the kernel redirects to it; this needs root or
CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN. With --explicit it runs without
eBPF: each target gets a plain listener that clients dial directly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadForGateway(path)
			if err != nil {
				return err
			}
			if explicitWorkload != "" {
				if !explicit {
					return errors.New("--explicit-workload needs --explicit")
				}
				if cfg.Workload(explicitWorkload) == nil {
					return fmt.Errorf("--explicit-workload: no workload %q in %s", explicitWorkload, cfg.Path)
				}
			}
			g := &gateway{
				cfg:              cfg,
				logger:           newLogger(cmd.ErrOrStderr(), cfg.Gateway.LogLevel),
				explicit:         explicit,
				explicitWorkload: explicitWorkload,
			}
			return g.run(cmd.Context())
		},
	}
	addConfigFlag(cmd, &path)
	cmd.Flags().BoolVar(&explicit, "explicit", false, "no eBPF: a plain listener per target (development, no privileges)")
	cmd.Flags().StringVar(&explicitWorkload, "explicit-workload", "", "with --explicit: the workload of callers whose process cannot be found on this host (another network namespace or host); a local process in no workload is still refused")
	return cmd
}

// gateway is one running gateway process: the wiring of the data path,
// the identity watcher, the proxy and the admin listener.
type gateway struct {
	cfg              *config.Config
	logger           *slog.Logger
	explicit         bool
	explicitWorkload string

	metrics    *prometheus.Registry
	server     *proxy.Server
	workloads  *identity.Registry
	targets    map[uint32]proxy.Target
	watcher    *identity.Watcher
	resolver   *redirect.TargetResolver
	dp         *redirect.Datapath
	sweeper    *sweeper // nil without the data path
	cgroupRoot string   // the cgroup v2 mount point (transparent mode)
	selfCgroup string   // the gateway's own cgroup path below it
	recordings *record.Store
	logins     *identity.Logins
	loginLimit *identity.LoginLimiter
	approvals  *review.Store
	adminAuth  *adminauth.Authenticator
	tokens     *adminauth.Tokens // nil: no admin tokens file
	// policy is the policy in force, which reloads replace (reload.go);
	// policyState (under mu) says which it is.
	policy   *policy.Live
	reloadMu sync.Mutex // one reload at a time
	reloads  *reloadMetrics
	// metricsToken, when set, is the bearer token /metrics needs
	// (gateway.metrics_token_file).
	metricsToken []byte
	adminAddr    netip.AddrPort // bound
	verifier     tokenVerifier  // nil: no OIDC issuer configured

	mu          sync.Mutex
	listeners   []listenerStatus
	policyState policyState
	ready       atomic.Bool
	started     time.Time
}

type listenerStatus struct {
	Address string `json:"address"`
	Target  string `json:"target,omitempty"` // explicit mode: the one target it serves
}

func (g *gateway) run(ctx context.Context) error {
	g.started = time.Now()
	cfg := g.cfg
	hup := notifyReloads()
	defer signal.Stop(hup)
	if err := os.MkdirAll(cfg.Gateway.StateDir, 0o700); err != nil {
		return fmt.Errorf("creating state folder: %w", err)
	}
	g.metrics = prometheus.NewRegistry()
	g.metrics.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if !g.explicit {
		// Before anything here dials (OIDC discovery, upstream
		// catalogues): the kernel must know the gateway's own cgroup.
		if err := g.openDatapath(); err != nil {
			return err
		}
	}
	if err := g.setUpVerifier(ctx); err != nil {
		return err
	}
	if err := g.setUpAdminAuth(ctx); err != nil {
		return err
	}
	if err := g.openApprovals(); err != nil {
		return err
	}
	defer g.approvals.Close()
	handlers, err := g.handlers()
	if err != nil {
		return err
	}
	stopReloads := make(chan struct{})
	defer close(stopReloads)
	g.watchReloads(hup, stopReloads)
	// A handler that keeps connections beyond its sessions (the postgres
	// handler's catalogue connections) closes them once the sessions
	// drained: deferred, so after the Shutdown below.
	defer func() {
		for name, h := range handlers {
			if c, ok := h.(io.Closer); ok {
				if err := c.Close(); err != nil {
					g.logger.Warn("closing a protocol handler", "protocol", name, "error", err)
				}
			}
		}
	}()
	g.server, err = proxy.NewServer(proxy.Options{
		Handlers:    handlers,
		Logger:      g.logger,
		Registerer:  g.metrics,
		DialTimeout: cfg.Gateway.DialTimeout.Duration,
	})
	if err != nil {
		return err
	}
	g.targets = map[uint32]proxy.Target{}
	for i := range cfg.Targets {
		t := &cfg.Targets[i]
		g.targets[t.ID()] = proxy.Target{ID: t.ID(), Name: t.Name, Protocol: t.Protocol, Address: t.Address}
	}
	var ws []identity.Workload
	for i := range cfg.Workloads {
		w := &cfg.Workloads[i]
		ws = append(ws, identity.Workload{ID: w.ID(), Name: w.Name, Identity: identity.Identity{Subject: w.Identity.Subject, Groups: w.Identity.Groups}, OIDC: w.Identity.OIDC})
	}
	g.workloads = identity.NewRegistry(ws)
	g.setUpLogins()
	defer g.logins.Close()

	adminLn, err := net.Listen("tcp", cfg.Gateway.Admin)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	g.adminAddr = netip.MustParseAddrPort(adminLn.Addr().String())
	if adminLn, err = adminListener(adminLn, cfg, g.logger); err != nil {
		return err
	}
	g.warnIfAdminExposed()
	admin := newAdminServer(g.adminHandler())
	go func() {
		if err := admin.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.logger.Error("admin listener stopped", "error", err)
		}
	}()
	g.logger.Info("admin listener up", "address", adminLn.Addr().String())

	// Everything below runs until ctx is done; serveCtx outlives it only
	// for the drain.
	serveCtx, cancelServe := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelServe()
	var serving sync.WaitGroup
	if g.explicit {
		err = g.startExplicit(ctx, serveCtx, &serving)
	} else {
		err = g.startTransparent(ctx, serveCtx, &serving)
	}
	if err == nil {
		err = g.serveLogin(serveCtx)
	}
	if err != nil {
		g.closeAll(admin)
		return err
	}
	g.ready.Store(true)
	g.logger.Info("gateway ready", "mode", g.mode(), "version", version)

	<-ctx.Done()
	g.ready.Store(false)
	g.logger.Info("shutting down", "drain", cfg.Gateway.ShutdownTimeout.Duration)
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.Gateway.ShutdownTimeout.Duration)
	defer cancel()
	cut, err := g.server.Shutdown(drainCtx)
	if err != nil {
		g.logger.Warn("shutdown", "error", err)
	}
	g.logger.Info("sessions drained", "cut", cut)
	cancelServe()
	serving.Wait()
	g.closeAll(admin)
	if !g.explicit {
		g.logger.Info("data path stays pinned: redirected connects are refused until the gateway is back", "bpffs", cfg.Gateway.BPFFS)
	}
	return nil
}

// warnIfAdminExposed warns when the admin listener is reachable from other
// hosts: the API is plain HTTP with bearer tokens.
func (g *gateway) warnIfAdminExposed() {
	if g.adminAddr.Addr().Unmap().IsLoopback() || g.cfg.Gateway.AdminTLS != nil {
		return
	}
	g.logger.Warn("admin listener is not on loopback: its API is plain HTTP, so bearer tokens cross the network readable; "+
		"set gateway.admin to a loopback address, or give it a certificate (gateway.admin_tls)",
		"address", g.adminAddr.String())
}

// newAdminServer serves the admin API. Its callers are few and local, so
// a connection that is slow to send its request, or idles, is cut instead
// of held: a local process could otherwise keep open as many as it likes.
func newAdminServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}

func (g *gateway) closeAll(admin *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = admin.Shutdown(ctx)
	if g.sweeper != nil {
		g.sweeper.stop()
	}
	if g.dp != nil {
		if err := g.dp.Close(); err != nil {
			g.logger.Warn("closing data path handles", "error", err)
		}
	}
}

func (g *gateway) mode() string {
	if g.explicit {
		return "explicit"
	}
	return "transparent"
}

func (g *gateway) serve(serveCtx context.Context, wg *sync.WaitGroup, ln net.Listener, a proxy.Attributor, target string) {
	g.mu.Lock()
	g.listeners = append(g.listeners, listenerStatus{Address: ln.Addr().String(), Target: target})
	g.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := g.server.Serve(serveCtx, ln, a); err != nil {
			g.logger.Error("listener stopped", "address", ln.Addr().String(), "error", err)
		}
	}()
}

func (g *gateway) watchedWorkloads() []identity.WatchedWorkload {
	var out []identity.WatchedWorkload
	for i := range g.cfg.Workloads {
		w := &g.cfg.Workloads[i]
		out = append(out, identity.WatchedWorkload{
			ID:       w.ID(),
			Name:     w.Name,
			Selector: identity.Selector{Cgroup: w.Match.Cgroup, SystemdUnit: w.Match.SystemdUnit},
		})
	}
	return out
}

// openDatapath installs or adopts the eBPF data path and tells it the
// gateway's own cgroup: a gateway restarted next to a workload's unit has a
// cgroup newer than the pinned guards know, and its dials must still go
// where it dials.
func (g *gateway) openDatapath() error {
	root, err := identity.CgroupV2Root()
	if err != nil {
		return fmt.Errorf("finding the cgroup v2 hierarchy: %w", err)
	}
	g.cgroupRoot = root
	g.dp, err = redirect.Open(redirect.Options{PinPath: g.cfg.Gateway.BPFFS, CgroupRoot: root, Logger: g.logger})
	if err != nil {
		return err
	}
	g.logger.Info("eBPF data path attached", "cgroup_root", root, "bpffs", g.cfg.Gateway.BPFFS, "cgroup_creation_tracked", g.dp.TracksCgroups())
	self, err := identity.ProcessCgroup(uint32(os.Getpid()))
	if err != nil {
		return fmt.Errorf("reading the gateway's own cgroup: %w", err)
	}
	g.selfCgroup = self
	id, err := identity.CgroupID(filepath.Join(root, filepath.FromSlash(self)))
	if err != nil {
		return fmt.Errorf("reading the gateway's own cgroup %s: %w", self, err)
	}
	if err := g.dp.SetGatewayCgroup(id); err != nil {
		return fmt.Errorf("telling the data path the gateway's cgroup: %w", err)
	}
	return nil
}

// startTransparent serves what the data path (openDatapath) redirects.
func (g *gateway) startTransparent(ctx, serveCtx context.Context, wg *sync.WaitGroup) error {
	cfg := g.cfg
	root := g.cgroupRoot

	lc := redirect.ListenConfig()
	ln4, err := lc.Listen(ctx, "tcp4", cfg.Gateway.ListenAddr.String())
	if err != nil {
		return fmt.Errorf("gateway listener: %w", err)
	}
	var ln6 net.Listener
	var addr6 netip.AddrPort
	if cfg.Gateway.Listen6Addr.IsValid() {
		ln6, err = lc.Listen(ctx, "tcp6", cfg.Gateway.Listen6Addr.String())
		if err != nil {
			g.logger.Warn("no IPv6 listener: connects to IPv6 targets will be refused", "address", cfg.Gateway.Listen6Addr, "error", err)
		} else {
			addr6 = netip.MustParseAddrPort(ln6.Addr().String())
		}
	}
	addr4 := netip.MustParseAddrPort(ln4.Addr().String())
	if err := g.dp.SetListeners(addr4, addr6); err != nil {
		return err
	}
	// Workloads never reach the gateway itself: its listeners and admin
	// API are refused in the kernel, whatever their egress allows (a
	// target connect is still rewritten to the listener).
	protected := []netip.AddrPort{addr4, g.adminAddr}
	if addr6.IsValid() {
		protected = append(protected, addr6)
	}
	if err := g.dp.SetProtected(protected); err != nil {
		return fmt.Errorf("protecting the gateway's own ports: %w", err)
	}

	var egress []redirect.EgressAllow
	for i := range cfg.Workloads {
		w := &cfg.Workloads[i]
		for _, r := range w.Egress.AllowRules {
			egress = append(egress, redirect.EgressAllow{WorkloadID: w.ID(), Prefix: r.Prefix, Port: r.Port})
		}
	}
	if err := g.dp.SyncEgress(egress); err != nil {
		return err
	}

	self := g.selfCgroup // read by openDatapath
	// sw is set once workloads and targets are in the maps: the first
	// sweep needs both.
	var sw *sweeper
	g.watcher = &identity.Watcher{
		Root:          root,
		Workloads:     g.watchedWorkloads(),
		Interval:      cfg.Gateway.ResolveInterval.Duration,
		CreateMissing: true,
		Logger:        g.logger,
		OnChange: func(bs []identity.Binding) error {
			// The gateway's own dials must never be redirected back to it.
			if b, ok := identity.MatchCgroupPath(self, bs); ok {
				return fmt.Errorf("the gateway runs in cgroup %s, inside workload %q (%s): run it outside every workload", self, b.Name, b.Path)
			}
			if err := g.dp.SyncWorkloads(g.kernelWorkloads(bs)); err != nil {
				return err
			}
			if sw != nil { // nil in the first pass: swept below
				sw.sweep("workloads' cgroups changed")
			}
			return nil
		},
		// Where workloads' cgroups will be made: the kernel's mkdir
		// hook puts a restarted unit's new cgroup in the map itself.
		OnExpected: func(es []identity.ExpectedCgroup) error {
			return g.dp.SyncExpected(g.kernelExpected(es))
		},
		// After the workloads: a guard must not move past a cgroup the
		// map does not hold yet.
		OnGuards: func(gs []identity.Guard) error {
			return g.dp.SyncGuards(g.kernelGuards(gs))
		},
	}
	if _, err := g.watcher.Sync(); err != nil {
		return fmt.Errorf("resolving workloads: %w", err)
	}

	var specs []redirect.TargetSpec
	for i := range cfg.Targets {
		t := &cfg.Targets[i]
		specs = append(specs, redirect.TargetSpec{ID: t.ID(), Name: t.Name, Host: t.Host, Prefix: t.Prefix, Port: t.Port})
	}
	g.resolver = &redirect.TargetResolver{
		Specs:    specs,
		Interval: cfg.Gateway.DNSInterval.Duration,
		Logger:   g.logger,
		OnChange: func(ts []redirect.Target) error {
			if err := g.dp.SyncTargets(ts); err != nil {
				return err
			}
			if sw != nil {
				sw.sweep("targets' addresses changed")
			}
			return nil
		},
	}
	if err := g.resolver.Sync(ctx); err != nil {
		return err
	}
	if sw, err = newSweeper(g.dp, cfg, g.logger, g.metrics); err != nil {
		return err
	}
	g.sweeper = sw
	sw.sweep("the data path attached")
	go func() {
		if err := g.watcher.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			g.logger.Error("workload watcher stopped", "error", err)
		}
	}()
	go g.resolver.Run(ctx)

	g.metrics.MustRegister(&kernelCollector{dp: g.dp, cfg: cfg, logger: g.logger})
	outcomes, err := newUnresolvedOutcomes(g.metrics)
	if err != nil {
		return err
	}
	a := &kernelAttributor{dp: g.dp, targets: g.targets, workloads: g.workloads, unresolved: &unresolvedResolver{
		root: root, watcher: g.watcher, cfg: cfg, workloads: g.workloads, logger: g.logger, outcomes: outcomes,
	}}
	g.serve(serveCtx, wg, ln4, a, "")
	if ln6 != nil {
		g.serve(serveCtx, wg, ln6, a, "")
	}
	return nil
}

func (g *gateway) kernelWorkloads(bs []identity.Binding) []redirect.Workload {
	var out []redirect.Workload
	for _, b := range bs {
		w := g.cfg.WorkloadByID(b.WorkloadID)
		if w == nil {
			continue
		}
		out = append(out, redirect.Workload{CgroupID: b.CgroupID, ID: b.WorkloadID, EgressDeny: w.Egress.Denies()})
	}
	return out
}

// kernelExpected are the watcher's expected cgroups as the kernel map
// holds them, with their workloads' egress default.
func (g *gateway) kernelExpected(es []identity.ExpectedCgroup) []redirect.Expected {
	out := make([]redirect.Expected, 0, len(es))
	for _, e := range es {
		ke := redirect.Expected{Path: e.Path, WorkloadID: e.WorkloadID, Workload: true}
		if w := g.cfg.WorkloadByID(e.WorkloadID); w != nil {
			ke.EgressDeny = w.Egress.Denies()
		}
		out = append(out, ke)
	}
	return out
}

// kernelGuards are the watcher's guards as the kernel map holds them: a
// new cgroup below a guard whose workloads deny egress may not connect
// anywhere while the gateway cannot take its connects.
func (g *gateway) kernelGuards(gs []identity.Guard) []redirect.Guard {
	out := make([]redirect.Guard, 0, len(gs))
	for _, gd := range gs {
		kg := redirect.Guard{CgroupID: gd.CgroupID, Watermark: gd.Watermark}
		for _, id := range gd.Workloads {
			if w := g.cfg.WorkloadByID(id); w != nil && w.Egress.Denies() {
				kg.EgressDeny = true
			}
		}
		out = append(out, kg)
	}
	return out
}

// kernelAttributor attributes a redirected connection from the kernel's
// origins map.
type kernelAttributor struct {
	dp         *redirect.Datapath
	targets    map[uint32]proxy.Target
	workloads  *identity.Registry
	unresolved *unresolvedResolver
}

func (a *kernelAttributor) Attribute(ctx context.Context, conn net.Conn) (proxy.Attribution, error) {
	o, err := a.dp.OriginalDestination(conn)
	if errors.Is(err, redirect.ErrNoOrigin) {
		return proxy.Attribution{}, fmt.Errorf("%w: %w", proxy.ErrNoOrigin, err)
	}
	if err != nil {
		return proxy.Attribution{}, err
	}
	if o.WorkloadID == redirect.UnresolvedWorkload {
		return a.unresolved.attribute(ctx, o, a.targets)
	}
	t, ok := a.targets[o.TargetID]
	if !ok {
		return proxy.Attribution{}, fmt.Errorf("%w: kernel target id %d", proxy.ErrUnknownTarget, o.TargetID)
	}
	caller, err := a.workloads.Caller(o.WorkloadID, o.PID, o.UID, o.CgroupID)
	if err != nil {
		return proxy.Attribution{}, fmt.Errorf("%w: %w", proxy.ErrUnknownWorkload, err)
	}
	return proxy.Attribution{Target: t, Caller: caller, Destination: o.Destination}, nil
}

// kernelCollector exports the kernel's per-workload connect counters on
// each scrape.
type kernelCollector struct {
	dp     *redirect.Datapath
	cfg    *config.Config
	logger *slog.Logger
}

var connectionsDesc = prometheus.NewDesc(
	"interlock_connections_total",
	"TCP connects by workloads, by what the kernel did: redirected (to the gateway), allowed (egress), denied (EPERM). target is empty for destinations that are not targets.",
	[]string{"workload", "target", "action"}, nil,
)

func (c *kernelCollector) Describe(ch chan<- *prometheus.Desc) { ch <- connectionsDesc }

func (c *kernelCollector) Collect(ch chan<- prometheus.Metric) {
	counters, err := c.dp.Counters()
	if err != nil {
		c.logger.Warn("reading kernel counters", "error", err)
		return
	}
	for _, k := range counters {
		workload := fmt.Sprintf("unknown-%d", k.WorkloadID)
		if k.WorkloadID == redirect.UnresolvedWorkload {
			// Cgroups made since the last pass, before the gateway knew
			// which (if any) workload they are.
			workload = unresolvedName
		} else if w := c.cfg.WorkloadByID(k.WorkloadID); w != nil {
			workload = w.Name
		}
		target := ""
		if k.TargetID != 0 {
			target = fmt.Sprintf("unknown-%d", k.TargetID)
			if t := c.cfg.TargetByID(k.TargetID); t != nil {
				target = t.Name
			}
		}
		for action, v := range map[string]uint64{"redirected": k.Redirected, "allowed": k.Allowed, "denied": k.Denied} {
			if v > 0 {
				ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.CounterValue, float64(v), workload, target, action)
			}
		}
	}
}
