package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/redirect"
	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// TestUnresolvedAttribution: what the gateway makes of a connection the
// kernel sent it from a cgroup it had not resolved, on real cgroups: the
// workload's new cgroup (found by the pass the connection starts), a
// process in no workload, egress allowed and denied, and a cgroup already
// gone.
func TestUnresolvedAttribution(t *testing.T) {
	redirecttest.RequirePrivileged(t)
	root, err := identity.CgroupV2Root()
	if err != nil {
		t.Fatal(err)
	}
	top := redirecttest.MakeCgroup(t, root, fmt.Sprintf("/interlock-unresolved-%d", os.Getpid()))
	cfgPath := filepath.Join(t.TempDir(), "interlock.yaml")
	cfg, err := config.Parse(cfgPath, []byte(fmt.Sprintf(`targets:
  - name: echo
    protocol: tcp
    address: 127.0.0.2:7000
workloads:
  - name: agent
    match: {cgroup: %s/agent}
    egress: {default: deny, allow: ["127.0.0.3:53"]}
`, top.Path)))
	if err != nil {
		t.Fatal(err)
	}
	wl := &cfg.Workloads[0]
	target := proxy.Target{ID: cfg.Targets[0].ID(), Name: "echo", Protocol: "tcp", Address: "127.0.0.2:7000"}
	targets := map[uint32]proxy.Target{target.ID: target}

	// The workload's cgroup does not exist yet: the watcher would make it
	// (CreateMissing), here it appears as a unit's would, after the pass.
	w := &identity.Watcher{
		Root:      root,
		Workloads: []identity.WatchedWorkload{{ID: wl.ID(), Name: wl.Name, Selector: identity.Selector{Cgroup: wl.Match.Cgroup}}},
		Interval:  0,
	}
	if _, err := w.Sync(); err != nil && !errors.Is(err, identity.ErrCgroupNotFound) {
		t.Logf("first pass: %v", err)
	}
	// Run does the passes a connection asks for without waiting (Kick).
	w.Interval = time.Hour
	runCtx, stopRun := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- w.Run(runCtx) }()
	t.Cleanup(func() { stopRun(); <-ran })
	agent := redirecttest.MakeCgroup(t, root, top.Path+"/agent")
	sub := redirecttest.MakeCgroup(t, root, top.Path+"/agent/task")
	other := redirecttest.MakeCgroup(t, root, top.Path+"/other")

	outcomes, err := newUnresolvedOutcomes(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r := &unresolvedResolver{
		root:      root,
		watcher:   w,
		cfg:       cfg,
		workloads: identity.NewRegistry([]identity.Workload{{ID: wl.ID(), Name: wl.Name}}),
		logger:    slog.New(slog.DiscardHandler),
		outcomes:  outcomes,
	}
	origin := func(cg redirecttest.Cgroup, dst string, targetID uint32) redirect.Origin {
		return redirect.Origin{Destination: netip.MustParseAddrPort(dst), WorkloadID: redirect.UnresolvedWorkload,
			TargetID: targetID, PID: 4242, UID: 1000, CgroupID: cg.ID}
	}
	asRoot := func(o redirect.Origin) redirect.Origin { o.UID = 0; return o }
	count := func(outcome string) float64 { return testutil.ToFloat64(outcomes.WithLabelValues(outcome)) }

	t.Run("workload's new cgroup, target", func(t *testing.T) {
		at, err := r.attribute(t.Context(), origin(sub, "127.0.0.2:7000", target.ID), targets)
		if err != nil {
			t.Fatal(err)
		}
		if at.Caller.Workload != "agent" || at.Target != target || at.Destination.String() != "127.0.0.2:7000" || at.Caller.CgroupID != sub.ID {
			t.Errorf("attribution %+v, want the agent workload's session to the echo target", at)
		}
		if count(unresolvedWorkload) != 1 {
			t.Errorf("outcome workload counted %v, want 1", count(unresolvedWorkload))
		}
		// The pass it ran bound the new cgroup.
		if b := w.Current(); len(b) != 1 || b[0].CgroupID != agent.ID {
			t.Errorf("watcher bindings after the connection: %+v, want the agent cgroup %d", b, agent.ID)
		}
	})
	t.Run("workload, egress allowed", func(t *testing.T) {
		at, err := r.attribute(t.Context(), asRoot(origin(agent, "127.0.0.3:53", 0)), targets)
		if err != nil {
			t.Fatal(err)
		}
		if at.Caller.Workload != "agent" || at.Target.Protocol != "tcp" || at.Target.Name != egressTarget || at.Destination.String() != "127.0.0.3:53" {
			t.Errorf("attribution %+v, want a relay of the agent's connection to 127.0.0.3:53", at)
		}
	})
	t.Run("workload, egress denied", func(t *testing.T) {
		_, err := r.attribute(t.Context(), origin(agent, "127.0.0.3:54", 0), targets)
		if !errors.Is(err, proxy.ErrEgressDenied) {
			t.Errorf("err = %v, want ErrEgressDenied", err)
		}
		if count(unresolvedEgressDenied) != 1 {
			t.Errorf("outcome egress_denied counted %v, want 1", count(unresolvedEgressDenied))
		}
	})
	t.Run("no workload, target", func(t *testing.T) {
		at, err := r.attribute(t.Context(), asRoot(origin(other, "127.0.0.2:7000", target.ID)), targets)
		if err != nil {
			t.Fatal(err)
		}
		if at.Caller.Workload != "" || at.Target.Protocol != "tcp" || at.Target.Name != "echo" || at.Destination.String() != "127.0.0.2:7000" {
			t.Errorf("attribution %+v, want a plain relay to the echo target for nobody's process", at)
		}
		if count(unresolvedNoWorkload) != 1 {
			t.Errorf("outcome not_workload counted %v, want 1", count(unresolvedNoWorkload))
		}
	})
	t.Run("not relayed for others than root", func(t *testing.T) {
		// A subtree delegated to uid 1000: the user made this cgroup.
		mine := redirecttest.MakeCgroup(t, root, top.Path+"/delegated")
		if err := os.Chown(mine.Dir(), 1000, 1000); err != nil {
			t.Fatal(err)
		}
		rootInMine := asRoot(origin(mine, "127.0.0.9:443", 0))
		nobodyInOther := origin(other, "127.0.0.9:443", 0)
		agentToAllowed := origin(agent, "127.0.0.3:53", 0)
		for _, tc := range []struct {
			name string
			o    redirect.Origin
		}{
			{"root in a user's cgroup", rootInMine},
			{"uid 1000 in no workload", nobodyInOther},
			{"uid 1000 in the workload, egress allowed", agentToAllowed},
		} {
			_, err := r.attribute(t.Context(), tc.o, targets)
			if !errors.Is(err, errNotRelayed) {
				t.Errorf("%s: err = %v, want the connection closed: the gateway dials for root only", tc.name, err)
			}
		}
		if got := count(unresolvedNotRelayed); got != 3 {
			t.Errorf("outcome not_relayed counted %v, want 3", got)
		}
	})
	t.Run("restarted cgroup, every workload bound", func(t *testing.T) {
		if err := os.Remove(sub.Dir()); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(agent.Dir()); err != nil {
			t.Fatal(err)
		}
		restarted := redirecttest.MakeCgroup(t, root, top.Path+"/agent")
		at, err := r.attribute(t.Context(), origin(restarted, "127.0.0.2:7000", target.ID), targets)
		if err != nil {
			t.Fatal(err)
		}
		if at.Caller.Workload != "agent" || at.Caller.CgroupID != restarted.ID {
			t.Errorf("attribution %+v, want the agent workload's session from its new cgroup", at)
		}
		// The pass the connection started binds the new id.
		deadline := time.Now().Add(10 * time.Second)
		for b := w.Current(); len(b) != 1 || b[0].CgroupID != restarted.ID; b = w.Current() {
			if time.Now().After(deadline) {
				t.Fatalf("watcher bindings %+v, want the restarted cgroup %d", b, restarted.ID)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("cgroup gone", func(t *testing.T) {
		gone := redirecttest.MakeCgroup(t, root, top.Path+"/gone")
		if err := os.Remove(gone.Dir()); err != nil {
			t.Fatal(err)
		}
		_, err := r.attribute(t.Context(), origin(gone, "127.0.0.2:7000", target.ID), targets)
		if !errors.Is(err, proxy.ErrUnknownWorkload) {
			t.Errorf("err = %v, want ErrUnknownWorkload", err)
		}
		if count(unresolvedGone) != 1 {
			t.Errorf("outcome gone counted %v, want 1", count(unresolvedGone))
		}
	})
	t.Run("without CAP_DAC_READ_SEARCH", func(t *testing.T) {
		// A gateway run with CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN only
		// cannot open a cgroup by its id: the caller's process names it.
		cg := redirecttest.MakeCgroup(t, root, top.Path+"/agent/nocap")
		f, err := os.Open(cg.Dir())
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		proc := exec.Command("sleep", "60")
		proc.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
		if err := proc.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = proc.Process.Kill(); _ = proc.Wait() }()
		o := origin(cg, "127.0.0.2:7000", target.ID)
		o.PID = uint32(proc.Process.Pid)

		at, err := withoutCapability(t, unix.CAP_DAC_READ_SEARCH, func() (proxy.Attribution, error) {
			return r.attribute(t.Context(), o, targets)
		})
		if err != nil || at.Caller.Workload != "agent" || at.Caller.CgroupID != cg.ID {
			t.Errorf("attribution %+v, %v; want the agent workload's session from %s", at, err, cg.Path)
		}
		// A pid that is no longer in the recorded cgroup proves nothing.
		o.CgroupID = agent.ID
		if _, err := withoutCapability(t, unix.CAP_DAC_READ_SEARCH, func() (proxy.Attribution, error) {
			return r.attribute(t.Context(), o, targets)
		}); err == nil {
			t.Error("attributed a connection by a pid that is in another cgroup than the recorded one")
		}
	})
}

// withoutCapability runs fn on one OS thread whose effective set lacks
// capability c (capabilities are per thread), and restores it.
func withoutCapability[T any](t *testing.T, c uint, fn func() (T, error)) (T, error) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var saved [2]unix.CapUserData
	if err := unix.Capget(&hdr, &saved[0]); err != nil {
		t.Fatal(err)
	}
	dropped := saved
	dropped[c/32].Effective &^= 1 << (c % 32)
	if err := unix.Capset(&hdr, &dropped[0]); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Capset(&hdr, &saved[0]); err != nil {
			t.Fatalf("restoring capabilities: %v", err)
		}
	}()
	return fn()
}
