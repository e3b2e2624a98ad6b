package main

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/interlock-dev/interlock/redirect"
	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// TestRecreatedSliceHasNoGap: the directory a unit's cgroup is made in (its
// slice) is itself stopped and made again, with a new id, together with the
// unit's new cgroup. The guard on the old slice's id no longer covers
// anything, so the slice's parent must be guarded too: with the gateway
// frozen (no pass can run) the unit's first connect to a target still
// reaches the gateway, and with the gateway gone it is refused, never
// direct.
func TestRecreatedSliceHasNoGap(t *testing.T) {
	e := newE2E(t)
	e.resolveInterval = "1h"
	echo := fmt.Sprintf("127.0.0.2:%d", freePort(t, "127.0.0.2"))
	redirecttest.EchoServer(t, echo)
	unit := fmt.Sprintf("itest-slice-%d.service", os.Getpid())
	e.writeConfig(fmt.Sprintf(`workloads:
  - {name: unit-agent, match: {systemd_unit: %s}, egress: {default: deny}}
targets:
  - {name: echo, protocol: tcp, address: "%s"}
`, unit, echo))
	toTarget := redirecttest.Dial{Network: "tcp4", Address: echo, Send: "ping\n"}
	cg := e.cgroup("/agents.slice/" + unit)
	gw := e.start()
	waitFor(t, func() bool { return e.status().Workloads[0].CgroupID == cg.ID }, "the unit's cgroup to be found")

	// recreate stands for the slice being stopped and the unit started
	// again: both cgroups go, and come back with new ids.
	recreate := func() redirecttest.Cgroup {
		t.Helper()
		for _, dir := range []string{cg.Dir(), e.root + e.top + "/agents.slice"} {
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
		}
		cg = e.cgroup("/agents.slice/" + unit)
		return cg
	}
	// redirected is how many connects to the target the kernel sent the
	// gateway from the unit: as the workload's (the kernel's mkdir hook
	// knew the new cgroup) or as unresolved (without the hook).
	unitID := e.status().Workloads[0].ID
	redirected := func() uint64 {
		st, err := redirect.Inspect(e.pin)
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, c := range st.Counters {
			if c.TargetID != 0 && (c.WorkloadID == redirect.UnresolvedWorkload || c.WorkloadID == unitID) {
				n += c.Redirected
			}
		}
		return n
	}

	// Frozen, the gateway's listener still takes connects but no pass runs.
	before := redirected()
	if err := gw.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer gw.cmd.Process.Signal(syscall.SIGCONT) //nolint:errcheck // sent again below
	frozen := recreate()
	result := make(chan redirecttest.Result, 1)
	go func() { result <- redirecttest.Agent(t, frozen, toTarget) }()
	waitFor(t, func() bool {
		select {
		case r := <-result:
			t.Fatalf("the unit's connect in a re-created slice did not wait for the frozen gateway: %+v (direct: %v)", r, direct(r))
		default:
		}
		return redirected() > before
	}, "the kernel to send the re-created slice's unit's connect to the frozen gateway")
	if err := gw.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if r := <-result; !proxied(r) {
		t.Fatalf("the unit's connect in a re-created slice while the gateway was frozen: %+v", r)
	}
	if got := e.metric("interlock_sessions_total", `target="echo"`, `workload="unit-agent"`); got != 1 {
		t.Errorf("unit-agent sessions = %v, want 1", got)
	}
	waitFor(t, func() bool { return e.status().Workloads[0].CgroupID == cg.ID }, "the gateway to follow the unit into the re-created slice")

	// With the gateway gone, the kernel alone decides: refused, not direct.
	if err := gw.stop(syscall.SIGKILL); err == nil {
		t.Log("gateway stopped")
	}
	if r := redirecttest.Agent(t, recreate(), toTarget); r.Errno != "EPERM" {
		t.Errorf("the unit's connect in a re-created slice while the gateway is down: %+v, want EPERM", r)
	}
}
