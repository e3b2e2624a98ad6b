package main

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/proxy"
)

// fixedAddrConn is a connection whose addresses no local socket has: its
// caller's process cannot be found.
type fixedAddrConn struct {
	net.Conn
	local, remote net.Addr
}

func (c fixedAddrConn) LocalAddr() net.Addr  { return c.local }
func (c fixedAddrConn) RemoteAddr() net.Addr { return c.remote }

// TestExplicitWorkloadOnlyForUnidentifiedCallers: --explicit-workload
// attributes a caller whose process cannot be found; a local process that
// is found but is in no workload's cgroup is refused, not given the
// workload's identity.
func TestExplicitWorkloadOnlyForUnidentifiedCallers(t *testing.T) {
	reg := identity.NewRegistry([]identity.Workload{{ID: 1, Name: "agent", Identity: identity.Identity{Subject: "agent:demo"}}})
	fallback, _ := reg.Lookup(1)
	a := &explicitAttributor{
		workloads: reg,
		fallback:  &fallback,
		// No workload resolved: whatever cgroup this test runs in, it is
		// in no workload.
		watcher: &identity.Watcher{},
	}

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The client is this test's own process: /proc finds it.
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	c, err := a.caller(server)
	if err == nil {
		t.Fatalf("a process in no workload got workload %s (subject %s) from --explicit-workload", c.Workload, c.Identity.Subject)
	}
	if !errors.Is(err, proxy.ErrUnknownWorkload) || !strings.Contains(err.Error(), "which is no workload's") {
		t.Errorf("identified process in no workload: %v, want ErrUnknownWorkload naming its cgroup", err)
	}
	if pid := os.Getpid(); !strings.Contains(err.Error(), "process "+strconv.Itoa(pid)) {
		t.Errorf("refusal %q does not name the process %d", err, pid)
	}

	// A caller /proc cannot show (here: addresses no socket has) gets the
	// fallback.
	unknown := fixedAddrConn{
		local:  &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2},
	}
	c, err = a.caller(unknown)
	if err != nil || c.Workload != "agent" {
		t.Errorf("unidentifiable caller: %+v, %v; want the --explicit-workload workload", c, err)
	}
	a.fallback = nil
	if _, err := a.caller(unknown); !errors.Is(err, proxy.ErrUnknownWorkload) {
		t.Errorf("unidentifiable caller without --explicit-workload: %v, want ErrUnknownWorkload", err)
	}
}
