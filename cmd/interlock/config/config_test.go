package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadExample(t *testing.T) {
	c, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	g := c.Gateway
	checks := []struct {
		name      string
		got, want any
	}{
		{"Path", c.Path, "testdata/example.yaml"},
		{"ListenAddr", g.ListenAddr, netip.MustParseAddrPort("127.0.0.1:15001")},
		{"Listen6", g.Listen6, "[::1]:15001"},
		{"Listen6Addr", g.Listen6Addr, netip.MustParseAddrPort("[::1]:15001")},
		{"AdminAddr", g.AdminAddr, netip.MustParseAddrPort("127.0.0.1:9470")},
		{"StateDir", g.StateDir, "/var/lib/interlock"},
		{"BPFFS", g.BPFFS, "/sys/fs/bpf/interlock"},
		{"ResolveInterval", g.ResolveInterval.Duration, time.Second},
		{"DNSInterval", g.DNSInterval.Duration, 30 * time.Second},
		{"DialTimeout", g.DialTimeout.Duration, 10 * time.Second},
		{"ShutdownTimeout", g.ShutdownTimeout.Duration, 10 * time.Second},
		{"LogLevel", g.LogLevel, "info"},
		{"LargeMessageMemoryMiB", g.LargeMessageMemoryMiB, 512},
		{"PreparedStatementMemoryMiB", g.PreparedStatementMemoryMiB, 64},
		{"ReviewStoreMiB", g.ReviewStoreMiB, 1024},
		{"OpenConnections", g.OpenConnections, "close"},
		{"len(Targets)", len(c.Targets), 1},
		{"len(Workloads)", len(c.Workloads), 1},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}

	target := c.Target("echo")
	if target == nil {
		t.Fatal(`Target("echo") = nil`)
	}
	wantTarget := Target{Name: "echo", Protocol: "tcp", Address: "127.0.0.2:7000",
		Prefix: netip.MustParsePrefix("127.0.0.2/32"), Port: 7000}
	if *target != wantTarget {
		t.Errorf("target = %+v, want %+v", *target, wantTarget)
	}
	if !target.Prefix.Addr().Is4() {
		t.Errorf("target prefix %s is not IPv4", target.Prefix)
	}
	if got := c.TargetByID(target.ID()); got != target {
		t.Errorf("TargetByID(%#x) = %p, want %p", target.ID(), got, target)
	}

	w := c.Workload("agent")
	if w == nil {
		t.Fatal(`Workload("agent") = nil`)
	}
	if w.Match != (Match{Cgroup: "/agents/demo"}) {
		t.Errorf("match = %+v", w.Match)
	}
	if w.Identity.Subject != "agent:demo" || !slices.Equal(w.Identity.Groups, []string{"agents"}) {
		t.Errorf("identity = %+v", w.Identity)
	}
	if w.Egress.Default != EgressDeny || len(w.Egress.AllowRules) != 0 {
		t.Errorf("egress = %+v, want deny with no allow rules", w.Egress)
	}
	if got := c.WorkloadByID(w.ID()); got != w {
		t.Errorf("WorkloadByID(%#x) = %p, want %p", w.ID(), got, w)
	}
}

func TestLoadFull(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	g := c.Gateway
	if g.ListenAddr != netip.MustParseAddrPort("127.0.0.1:16001") ||
		g.Listen6Addr != netip.MustParseAddrPort("[::1]:16002") ||
		g.AdminAddr != netip.MustParseAddrPort("[::1]:9471") {
		t.Errorf("listeners = %s %s %s", g.ListenAddr, g.Listen6Addr, g.AdminAddr)
	}
	if g.StateDir != "/srv/interlock/state" || g.BPFFS != "/sys/fs/bpf/interlock-test" {
		t.Errorf("folders = %q %q", g.StateDir, g.BPFFS)
	}
	if g.ResolveInterval.Duration != 500*time.Millisecond || g.DNSInterval.Duration != 5*time.Minute ||
		g.DialTimeout.Duration != 3*time.Second || g.ShutdownTimeout.Duration != 90*time.Second {
		t.Errorf("durations = %s %s %s %s", g.ResolveInterval, g.DNSInterval, g.DialTimeout, g.ShutdownTimeout)
	}
	if g.LogLevel != "debug" {
		t.Errorf("log level = %q", g.LogLevel)
	}

	wantTargets := []struct {
		name   string
		host   string
		prefix string
		port   uint16
		listen string
	}{
		{"orders-db", "db.internal", "", 5432, "127.0.0.1:25432"},
		{"lab.net", "", "10.1.0.0/16", 22, ""},
		{"v6-host", "", "fd00::5/128", 6443, ""},
		{"v6_net", "", "fd00:1::/64", 443, ""},
	}
	for _, want := range wantTargets {
		tg := c.Target(want.name)
		if tg == nil {
			t.Errorf("no target %q", want.name)
			continue
		}
		var wantPrefix netip.Prefix
		if want.prefix != "" {
			wantPrefix = netip.MustParsePrefix(want.prefix)
		}
		var wantListen netip.AddrPort
		if want.listen != "" {
			wantListen = netip.MustParseAddrPort(want.listen)
		}
		if tg.Host != want.host || tg.Prefix != wantPrefix || tg.Port != want.port || tg.ListenAddr != wantListen {
			t.Errorf("target %q = host %q prefix %s port %d listen %s, want %q %s %d %s",
				want.name, tg.Host, tg.Prefix, tg.Port, tg.ListenAddr, want.host, wantPrefix, want.port, wantListen)
		}
	}

	agent := c.Workload("agent")
	if agent.Match.Cgroup != "/agents/demo" {
		t.Errorf("cgroup = %q, want it cleaned to /agents/demo", agent.Match.Cgroup)
	}
	wantRules := []AllowRule{
		{netip.MustParsePrefix("10.0.0.0/8"), 0},
		{netip.MustParsePrefix("127.0.0.53/32"), 0},
		{netip.MustParsePrefix("127.0.0.53/32"), 53},
		{netip.MustParsePrefix("10.1.0.0/16"), 5432},
		{netip.MustParsePrefix("::1/128"), 0},
		{netip.MustParsePrefix("::1/128"), 8080},
		{netip.MustParsePrefix("fd00::/8"), 443},
	}
	if !slices.Equal(agent.Egress.AllowRules, wantRules) {
		t.Errorf("allow rules = %v, want %v", agent.Egress.AllowRules, wantRules)
	}

	batch := c.Workload("batch")
	if batch.Match.SystemdUnit != "batch-agent.service" || batch.Identity.Subject != "workload:batch" ||
		batch.Egress.Default != EgressAllow {
		t.Errorf("batch = %+v", *batch)
	}
}

func TestParseValues(t *testing.T) {
	const targets = "targets:\n  - {name: t, protocol: tcp, address: \"127.0.0.2:7000\"}\n"
	tests := []struct {
		name  string
		yaml  string
		check func(*Config) any // returns the value to compare
		want  any
	}{
		{"listen6 off", "gateway:\n  listen6: off\n" + targets,
			func(c *Config) any { return c.Gateway.Listen6Addr }, netip.AddrPort{}},
		{"listen6 follows the listen port", "gateway:\n  listen: 127.0.0.1:3000\n" + targets,
			func(c *Config) any { return c.Gateway.Listen6Addr }, netip.MustParseAddrPort("[::1]:3000")},
		{"wildcard listen", "gateway:\n  listen: 0.0.0.0:15001\n  listen6: \"[::]:15001\"\n" + targets,
			func(c *Config) any { return c.Gateway.Listen6Addr }, netip.MustParseAddrPort("[::]:15001")},
		{"default subject", targets + "workloads:\n  - {name: agent, match: {cgroup: /a}}\n",
			func(c *Config) any { return c.Workloads[0].Identity.Subject }, "workload:agent"},
		{"default egress", targets + "workloads:\n  - {name: agent, match: {cgroup: /a}}\n",
			func(c *Config) any { return c.Workloads[0].Egress.Default }, "deny"},
		{"no workloads", targets,
			func(c *Config) any { return len(c.Workloads) }, 0},
		{"hostname with final dot", "targets:\n  - {name: t, protocol: tcp, address: \"db.example.:5432\"}\n",
			func(c *Config) any { return c.Targets[0].Host }, "db.example."},
		{"single-label hostname", "targets:\n  - {name: t, protocol: tcp, address: \"localhost:5432\"}\n",
			func(c *Config) any { return c.Targets[0].Host }, "localhost"},
		{"IPv4 prefix", "targets:\n  - {name: t, protocol: tcp, address: \"10.0.0.0/8:5432\"}\n",
			func(c *Config) any { return c.Targets[0].Prefix }, netip.MustParsePrefix("10.0.0.0/8")},
		{"all of IPv4", "targets:\n  - {name: t, protocol: tcp, address: \"0.0.0.0/0:443\"}\n",
			func(c *Config) any { return c.Targets[0].Prefix }, netip.MustParsePrefix("0.0.0.0/0")},
		{"overlapping prefixes are allowed", "targets:\n  - {name: a, protocol: tcp, address: \"10.0.0.0/8:22\"}\n  - {name: b, protocol: tcp, address: \"10.1.0.0/16:22\"}\n",
			func(c *Config) any { return len(c.Targets) }, 2},
		{"same address, other port", "targets:\n  - {name: a, protocol: tcp, address: \"10.0.0.1:22\"}\n  - {name: b, protocol: tcp, address: \"10.0.0.1:23\"}\n",
			func(c *Config) any { return len(c.Targets) }, 2},
		{"duration null keeps the default", "gateway:\n  dial_timeout:\n" + targets,
			func(c *Config) any { return c.Gateway.DialTimeout.Duration }, 10 * time.Second},
		{"anchors and aliases", "targets:\n  - {name: t, protocol: tcp, address: \"127.0.0.2:7000\"}\nworkloads:\n  - name: a\n    match: {cgroup: /a}\n    identity: &id {subject: s, groups: [g]}\n  - name: b\n    match: {cgroup: /b}\n    identity: *id\n",
			func(c *Config) any { return c.Workloads[1].Identity.Subject }, "s"},
		{"systemd scope", targets + "workloads:\n  - {name: a, match: {systemd_unit: run-u42.scope}}\n",
			func(c *Config) any { return c.Workloads[0].Match.SystemdUnit }, "run-u42.scope"},
		{"systemd template instance", targets + "workloads:\n  - {name: a, match: {systemd_unit: agent@7.service}}\n",
			func(c *Config) any { return c.Workloads[0].Match.SystemdUnit }, "agent@7.service"},
		{"empty allow list", targets + "workloads:\n  - {name: a, match: {cgroup: /a}, egress: {allow: []}}\n",
			func(c *Config) any { return len(c.Workloads[0].Egress.AllowRules) }, 0},
		{"bracketed IPv6 without port", targets + "workloads:\n  - {name: a, match: {cgroup: /a}, egress: {allow: [\"[fd00::/8]\"]}}\n",
			func(c *Config) any { return c.Workloads[0].Egress.AllowRules[0] }, AllowRule{Prefix: netip.MustParsePrefix("fd00::/8")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("demo.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := tt.check(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// Two names whose IDs collide, found by search.
const (
	targetCollisionA   = "n383735"
	targetCollisionB   = "n1610010"
	workloadCollisionA = "n386289"
	workloadCollisionB = "n1158346"
)

func TestCollisionNames(t *testing.T) {
	a, b := Target{Name: targetCollisionA}, Target{Name: targetCollisionB}
	if a.ID() != b.ID() {
		t.Errorf("target IDs %#x and %#x differ", a.ID(), b.ID())
	}
	c, d := Workload{Name: workloadCollisionA}, Workload{Name: workloadCollisionB}
	if c.ID() != d.ID() {
		t.Errorf("workload IDs %#x and %#x differ", c.ID(), d.ID())
	}
}

func TestParseErrors(t *testing.T) {
	// target is a valid targets section of two lines.
	const target = "targets:\n  - {name: echo, protocol: tcp, address: \"127.0.0.2:7000\"}\n"
	tests := []struct {
		name  string
		yaml  string
		field string // the Field of one of the *FieldErrors
		want  string // one line of the error, exactly
	}{
		// The file as a whole.
		{"empty file", "", "",
			"demo.yaml: file is empty"},
		{"only comments", "# nothing here\n\n", "",
			"demo.yaml: file is empty"},
		{"two documents", target + "---\n" + target, "",
			"demo.yaml:4:1: more than one YAML document; a configuration file holds one"},
		{"syntax error", "targets: [\n", "",
			"demo.yaml:1:10: sequence end token ']' not found"},
		{"deeply nested", "targets: " + strings.Repeat("[", 65) + strings.Repeat("]", 65) + "\n", "",
			"demo.yaml: brackets nest 65 deep; at most 64 are allowed"},
		{"too large", "# " + strings.Repeat("x", maxFileSize) + "\n", "",
			"demo.yaml: file is 1048579 bytes; a configuration file is at most 1048576"},
		{"not a mapping", "- a\n", "",
			"demo.yaml:1:1: sequence was used where mapping is expected"},

		// Decoding.
		{"unknown gateway field", "gateway:\n  lisen: 127.0.0.1:1\n" + target, "",
			`demo.yaml:2:3: unknown field "lisen" in gateway; did you mean "listen"?`},
		{"unknown top-level field", "targest: []\n", "",
			`demo.yaml:1:1: unknown field "targest" at the top level; did you mean "targets"?`},
		{"unknown field far from any", target + "frobnicate: 1\n", "",
			`demo.yaml:3:1: unknown field "frobnicate" at the top level; known fields: gateway, targets, workloads, identity, policy`},
		{"unknown target field", "targets:\n  - name: echo\n    protocol: tcp\n    adress: 127.0.0.2:1\n", "",
			`demo.yaml:4:5: unknown field "adress" in targets[0]; did you mean "address"?`},
		{"unknown match field", target + "workloads:\n  - name: a\n    match:\n      pod: x\n", "",
			`demo.yaml:6:7: unknown field "pod" in workloads[0].match; known fields: cgroup, systemd_unit`},
		{"duplicate key", "gateway:\n  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\n" + target, "",
			`demo.yaml:3:3: mapping key "listen" already defined at [2:3]`},
		{"wrong type", "gateway:\n  listen: [127.0.0.1:1]\n" + target, "gateway.listen",
			"demo.yaml:2:11: gateway.listen: expected a string, found a list"},
		{"targets not a list", "targets: echo\n", "targets",
			"demo.yaml:1:10: targets: string was used where sequence is expected"},
		{"non-string key", "gateway:\n  1: x\n" + target, "gateway",
			"demo.yaml:2:3: gateway: int used as a key; keys are field names"},
		{"tag", "gateway:\n  dial_timeout: !!str 2s\n" + target, "gateway.dial_timeout",
			"demo.yaml:2:17: gateway.dial_timeout: YAML tags such as !!str are not supported; write the plain value"},
		{"tagged empty list", target + "workloads:\n  - identity:\n      groups: !!seq\n", "workloads[0].identity.groups",
			"demo.yaml:5:15: workloads[0].identity.groups: YAML tags such as !!seq are not supported; write the plain value"},
		{"duration without unit", "gateway:\n  dial_timeout: 5\n" + target, "gateway.dial_timeout",
			`demo.yaml:2:17: gateway.dial_timeout: 5 has no unit; write it like "5s" or "5ms"`},
		{"duration not a duration", "gateway:\n  dns_interval: soon\n" + target, "gateway.dns_interval",
			`demo.yaml:2:17: gateway.dns_interval: "soon" is not a duration; write it like "1s", "500ms" or "5m"`},
		{"duration a list", "gateway:\n  dns_interval: [1s]\n" + target, "gateway.dns_interval",
			`demo.yaml:2:17: gateway.dns_interval: sequence is not a duration; write it like "1s", "500ms" or "5m"`},

		// Gateway.
		{"listen without port", "gateway:\n  listen: 127.0.0.1\n" + target, "gateway.listen",
			`demo.yaml:2:11: gateway.listen: "127.0.0.1" has no port`},
		{"listen hostname", "gateway:\n  listen: localhost:15001\n" + target, "gateway.listen",
			`demo.yaml:2:11: gateway.listen: "localhost" is not an IP address; listeners take ip:port`},
		{"listen IPv6", "gateway:\n  listen: \"[::1]:15001\"\n" + target, "gateway.listen",
			`demo.yaml:2:11: gateway.listen: "[::1]:15001" is not an IPv4 address; IPv6 connects go to listen6`},
		{"listen port 0", "gateway:\n  listen: 127.0.0.1:0\n" + target, "gateway.listen",
			"demo.yaml:2:11: gateway.listen: port 0 is not allowed; use a port from 1 to 65535"},
		{"listen port too large", "gateway:\n  listen: 127.0.0.1:65536\n" + target, "gateway.listen",
			`demo.yaml:2:11: gateway.listen: port "65536" is not a number from 1 to 65535`},
		{"listen6 IPv4", "gateway:\n  listen6: 127.0.0.1:15002\n" + target, "gateway.listen6",
			`demo.yaml:2:12: gateway.listen6: "127.0.0.1:15002" is not an IPv6 address; write it like "[::1]:15001", or "off"`},
		{"listen6 unbracketed", "gateway:\n  listen6: \"::1:15002\"\n" + target, "gateway.listen6",
			`demo.yaml:2:12: gateway.listen6: "::1:15002": IPv6 addresses go in brackets before the port, e.g. "[::1]:15001"`},
		{"admin not ip:port", "gateway:\n  admin: \":9470\"\n" + target, "gateway.admin",
			`demo.yaml:2:10: gateway.admin: "" is not an IP address; listeners take ip:port`},
		{"admin on the listener", "gateway:\n  admin: 127.0.0.1:15001\n" + target, "gateway.admin",
			"demo.yaml:2:10: gateway.admin: 127.0.0.1:15001 is also bound by gateway.listen"},
		{"admin on the wildcard listener", "gateway:\n  listen6: \"[::]:9470\"\n  admin: \"[::1]:9470\"\n" + target, "gateway.admin",
			"demo.yaml:3:10: gateway.admin: [::1]:9470 is also bound by gateway.listen6"},
		{"state_dir relative", "gateway:\n  state_dir: var/lib\n" + target, "gateway.state_dir",
			`demo.yaml:2:14: gateway.state_dir: "var/lib" is not an absolute path`},
		{"bpffs relative", "gateway:\n  bpffs: interlock\n" + target, "gateway.bpffs",
			`demo.yaml:2:10: gateway.bpffs: "interlock" is not an absolute path`},
		{"bpffs root", "gateway:\n  bpffs: /\n" + target, "gateway.bpffs",
			`demo.yaml:2:10: gateway.bpffs: "/" is not a folder of its own; pin under a folder below the bpffs mount, e.g. "/sys/fs/bpf/interlock"`},
		{"bpffs mount", "gateway:\n  bpffs: /sys/fs/bpf/\n" + target, "gateway.bpffs",
			`demo.yaml:2:10: gateway.bpffs: "/sys/fs/bpf/" is not a folder of its own; pin under a folder below the bpffs mount, e.g. "/sys/fs/bpf/interlock"`},
		{"resolve_interval too short", "gateway:\n  resolve_interval: 50ms\n" + target, "gateway.resolve_interval",
			"demo.yaml:2:21: gateway.resolve_interval: 50ms is below the minimum of 100ms"},
		{"dns_interval too short", "gateway:\n  dns_interval: 500ms\n" + target, "gateway.dns_interval",
			"demo.yaml:2:17: gateway.dns_interval: 500ms is below the minimum of 1s"},
		{"negative timeout", "gateway:\n  shutdown_timeout: -1s\n" + target, "gateway.shutdown_timeout",
			"demo.yaml:2:21: gateway.shutdown_timeout: -1s is negative"},
		{"large message memory too small", "gateway:\n  large_message_memory_mib: 1\n" + target, "gateway.large_message_memory_mib",
			"demo.yaml:2:29: gateway.large_message_memory_mib: 1 is below the minimum of 2"},
		{"prepared statement memory negative", "gateway:\n  prepared_statement_memory_mib: -1\n" + target, "gateway.prepared_statement_memory_mib",
			"demo.yaml:2:34: gateway.prepared_statement_memory_mib: -1 is below the minimum of 1"},
		{"prepared statement memory too large", "gateway:\n  prepared_statement_memory_mib: 1048577\n" + target, "gateway.prepared_statement_memory_mib",
			"demo.yaml:2:34: gateway.prepared_statement_memory_mib: 1048577 is above the maximum of 1048576 (1 TiB)"},
		{"review store budget negative", "gateway:\n  review_store_mib: -1\n" + target, "gateway.review_store_mib",
			"demo.yaml:2:21: gateway.review_store_mib: -1 is below the minimum of 1"},
		{"open connections", "gateway:\n  open_connections: keep\n" + target, "gateway.open_connections",
			`demo.yaml:2:21: gateway.open_connections: unknown value "keep"; use one of close, report`},
		{"log level", "gateway:\n  log_level: verbose\n" + target, "gateway.log_level",
			`demo.yaml:2:14: gateway.log_level: unknown log level "verbose"; use one of debug, info, warn, error`},

		// Targets.
		{"no targets", "gateway:\n  listen: 127.0.0.1:15001\n", "targets",
			"demo.yaml: targets: at least one target is required"},
		{"empty targets", "targets: []\n", "targets",
			"demo.yaml:1:10: targets: at least one target is required"},
		{"target name missing", "targets:\n  - protocol: tcp\n    address: 127.0.0.2:1\n", "targets[0].name",
			"demo.yaml:2:5: targets[0].name: a target name is required"},
		{"target name invalid", "targets:\n  - name: Echo\n    protocol: tcp\n    address: 127.0.0.2:1\n", "targets[0].name",
			`demo.yaml:2:11: targets[0].name: "Echo" is not a valid target name; use 1 to 63 of a-z, 0-9, "_", "." and "-", starting with a letter or digit`},
		{"target name too long", "targets:\n  - name: " + strings.Repeat("a", 64) + "\n    protocol: tcp\n    address: 127.0.0.2:1\n", "targets[0].name",
			`demo.yaml:2:11: targets[0].name: "` + strings.Repeat("a", 64) + `" is not a valid target name; use 1 to 63 of a-z, 0-9, "_", "." and "-", starting with a letter or digit`},
		{"duplicate target name", target + "  - name: echo\n    protocol: tcp\n    address: 127.0.0.3:1\n", "targets[1].name",
			`demo.yaml:3:11: targets[1].name: duplicate target name "echo" (first used by targets[0])`},
		{"target ID collision", "targets:\n  - {name: " + targetCollisionA + ", protocol: tcp, address: \"127.0.0.2:1\"}\n  - {name: " + targetCollisionB + ", protocol: tcp, address: \"127.0.0.3:1\"}\n", "targets[1].name",
			`demo.yaml:3:12: targets[1].name: target "n1610010" has the same ID (0x9f608850) as target "n383735" (targets[0]); rename one of them`},
		{"protocol missing", "targets:\n  - name: echo\n    address: 127.0.0.2:1\n", "targets[0].protocol",
			"demo.yaml:2:5: targets[0].protocol: a protocol is required; known protocols: tcp, postgres, ssh"},
		{"protocol unknown", "targets:\n  - name: echo\n    protocol: postgresql\n    address: 127.0.0.2:1\n", "targets[0].protocol",
			`demo.yaml:3:15: targets[0].protocol: unknown protocol "postgresql"; known protocols: tcp, postgres, ssh`},
		{"address missing", "targets:\n  - name: echo\n    protocol: tcp\n    address:\n", "targets[0].address",
			`demo.yaml:4:5: targets[0].address: an address is required, e.g. "db.internal:5432" or "10.0.0.5:5432"`},
		{"address without port", "targets:\n  - name: echo\n    protocol: tcp\n    address: 127.0.0.2\n", "targets[0].address",
			`demo.yaml:4:14: targets[0].address: "127.0.0.2" has no port`},
		{"hostname without port", "targets:\n  - name: echo\n    protocol: tcp\n    address: db.internal\n", "targets[0].address",
			`demo.yaml:4:14: targets[0].address: "db.internal" has no port`},
		{"address port 0", "targets:\n  - name: echo\n    protocol: tcp\n    address: 127.0.0.2:0\n", "targets[0].address",
			"demo.yaml:4:14: targets[0].address: port 0 is not allowed; use a port from 1 to 65535"},
		{"address named port", "targets:\n  - name: echo\n    protocol: tcp\n    address: db:postgres\n", "targets[0].address",
			`demo.yaml:4:14: targets[0].address: port "postgres" is not a number from 1 to 65535`},
		{"address IPv6 without brackets", "targets:\n  - name: echo\n    protocol: tcp\n    address: fd00::1:5432\n", "targets[0].address",
			`demo.yaml:4:14: targets[0].address: "fd00::1:5432": IPv6 addresses go in brackets before the port, e.g. "[fd00::1]:5432"`},
		{"address IPv4 in brackets", "targets:\n  - name: echo\n    protocol: tcp\n    address: \"[10.0.0.1]:5432\"\n", "targets[0].address",
			`demo.yaml:4:14: targets[0].address: "10.0.0.1": brackets are for IPv6 addresses`},
		{"address bracket unclosed", "targets:\n  - name: echo\n    protocol: tcp\n    address: \"[fd00::1:5432\"\n", "targets[0].address",
			`demo.yaml:4:14: targets[0].address: "[fd00::1:5432" has no closing "]"`},
		{"address host bits", "targets:\n  - name: echo\n    protocol: tcp\n    address: 10.0.0.1/8:22\n", "targets[0].address",
			`demo.yaml:4:14: targets[0].address: "10.0.0.1/8" has bits set after the prefix length; did you mean 10.0.0.0/8?`},
		{"address bad prefix", "targets:\n  - name: echo\n    protocol: tcp\n    address: 10.0.0.0/33:22\n", "targets[0].address",
			`demo.yaml:4:14: targets[0].address: "10.0.0.0/33" is not an IP prefix`},
		{"address v4-mapped", "targets:\n  - name: echo\n    protocol: tcp\n    address: \"[::ffff:10.0.0.1]:22\"\n", "targets[0].address",
			`demo.yaml:4:14: targets[0].address: "::ffff:10.0.0.1" is an IPv4-mapped IPv6 address; write IPv4 addresses as such, e.g. 10.0.0.1`},
		{"address zone", "targets:\n  - name: echo\n    protocol: tcp\n    address: \"[fe80::1%eth0]:22\"\n", "targets[0].address",
			`demo.yaml:4:14: targets[0].address: "fe80::1%eth0" has a zone; write the address without %eth0`},
		{"address bad hostname", "targets:\n  - name: echo\n    protocol: tcp\n    address: db..internal:22\n", "targets[0].address",
			`demo.yaml:4:14: targets[0].address: "db..internal" is not an IP address, prefix or hostname`},
		{"address mistyped IP", "targets:\n  - name: echo\n    protocol: tcp\n    address: 10.0.0.300:22\n", "targets[0].address",
			`demo.yaml:4:14: targets[0].address: "10.0.0.300" is not an IP address, prefix or hostname`},
		{"duplicate target address", target + "  - {name: echo2, protocol: tcp, address: \"127.0.0.2/32:7000\"}\n", "targets[1].address",
			`demo.yaml:3:43: targets[1].address: "127.0.0.2/32:7000" is also the address of target "echo" (targets[0])`},
		{"duplicate target hostname", "targets:\n  - {name: a, protocol: tcp, address: \"db.internal:5432\"}\n  - {name: b, protocol: tcp, address: \"DB.internal.:5432\"}\n", "targets[1].address",
			`demo.yaml:3:39: targets[1].address: "DB.internal.:5432" is also the address of target "a" (targets[0])`},
		{"target listen not ip:port", "targets:\n  - name: echo\n    protocol: tcp\n    address: 127.0.0.2:7000\n    listen: 7000\n", "targets[0].listen",
			`demo.yaml:5:13: targets[0].listen: "7000" has no port`},
		{"target listen on gateway listen", "targets:\n  - name: echo\n    protocol: tcp\n    address: 127.0.0.2:7000\n    listen: 127.0.0.1:15001\n", "targets[0].listen",
			"demo.yaml:5:13: targets[0].listen: 127.0.0.1:15001 is also bound by gateway.listen"},
		{"target listens collide", "targets:\n  - {name: a, protocol: tcp, address: \"127.0.0.2:1\", listen: \"0.0.0.0:7000\"}\n  - {name: b, protocol: tcp, address: \"127.0.0.3:1\", listen: \"127.0.0.1:7000\"}\n", "targets[1].listen",
			"demo.yaml:3:62: targets[1].listen: 127.0.0.1:7000 is also bound by targets[0].listen"},

		// Workloads.
		{"workload name missing", target + "workloads:\n  - match: {cgroup: /a}\n", "workloads[0].name",
			"demo.yaml:4:5: workloads[0].name: a workload name is required"},
		{"duplicate workload name", target + "workloads:\n  - {name: agent, match: {cgroup: /a}}\n  - {name: agent, match: {cgroup: /b}}\n", "workloads[1].name",
			`demo.yaml:5:12: workloads[1].name: duplicate workload name "agent" (first used by workloads[0])`},
		{"workload ID collision", target + "workloads:\n  - {name: " + workloadCollisionA + ", match: {cgroup: /a}}\n  - {name: " + workloadCollisionB + ", match: {cgroup: /b}}\n", "workloads[1].name",
			`demo.yaml:5:12: workloads[1].name: workload "n1158346" has the same ID (0x8ae7bf61) as workload "n386289" (workloads[0]); rename one of them`},
		{"match missing", target + "workloads:\n  - name: agent\n", "workloads[0].match",
			"demo.yaml:4:5: workloads[0].match: set one of cgroup or systemd_unit"},
		{"match both", target + "workloads:\n  - name: agent\n    match:\n      cgroup: /a\n      systemd_unit: a.service\n", "workloads[0].match",
			"demo.yaml:6:7: workloads[0].match: set only one of cgroup or systemd_unit"},
		{"cgroup relative", target + "workloads:\n  - name: agent\n    match:\n      cgroup: agents/demo\n", "workloads[0].match.cgroup",
			`demo.yaml:6:15: workloads[0].match.cgroup: "agents/demo" is not absolute; write the path below the cgroup v2 root, e.g. "/agents/demo"`},
		{"cgroup dot-dot", target + "workloads:\n  - name: agent\n    match:\n      cgroup: /agents/../demo\n", "workloads[0].match.cgroup",
			`demo.yaml:6:15: workloads[0].match.cgroup: "/agents/../demo" contains ".."`},
		{"cgroup root", target + "workloads:\n  - name: agent\n    match:\n      cgroup: //\n", "workloads[0].match.cgroup",
			`demo.yaml:6:15: workloads[0].match.cgroup: "/" is the cgroup root, which holds every process; select a cgroup below it`},
		{"cgroup with mount", target + "workloads:\n  - name: agent\n    match:\n      cgroup: /sys/fs/cgroup/agents\n", "workloads[0].match.cgroup",
			`demo.yaml:6:15: workloads[0].match.cgroup: "/sys/fs/cgroup/agents" includes the cgroup mount; write the path below it, e.g. "/agents"`},
		{"duplicate cgroup", target + "workloads:\n  - {name: a, match: {cgroup: /agents/demo}}\n  - {name: b, match: {cgroup: /agents/demo/}}\n", "workloads[1].match.cgroup",
			`demo.yaml:5:31: workloads[1].match.cgroup: cgroup "/agents/demo" is also matched by workload "a" (workloads[0])`},
		{"unit without type", target + "workloads:\n  - name: agent\n    match:\n      systemd_unit: agent\n", "workloads[0].match.systemd_unit",
			`demo.yaml:6:21: workloads[0].match.systemd_unit: "agent" has no unit type; write the full name, e.g. "agent.service" (types: .service, .scope, .slice)`},
		{"unit template", target + "workloads:\n  - name: agent\n    match:\n      systemd_unit: agent@.service\n", "workloads[0].match.systemd_unit",
			`demo.yaml:6:21: workloads[0].match.systemd_unit: "agent@.service" is a template; name an instance, e.g. "agent@1.service"`},
		{"unit invalid", target + "workloads:\n  - name: agent\n    match:\n      systemd_unit: a/b.service\n", "workloads[0].match.systemd_unit",
			`demo.yaml:6:21: workloads[0].match.systemd_unit: "a/b.service" is not a valid systemd unit name`},
		{"duplicate unit", target + "workloads:\n  - {name: a, match: {systemd_unit: x.service}}\n  - {name: b, match: {systemd_unit: x.service}}\n", "workloads[1].match.systemd_unit",
			`demo.yaml:5:37: workloads[1].match.systemd_unit: unit "x.service" is also matched by workload "a" (workloads[0])`},
		{"empty group", target + "workloads:\n  - name: agent\n    match: {cgroup: /a}\n    identity:\n      groups: [ok, \"\"]\n", "workloads[0].identity.groups[1]",
			"demo.yaml:7:20: workloads[0].identity.groups[1]: empty group name"},
		{"egress default", target + "workloads:\n  - name: agent\n    match: {cgroup: /a}\n    egress:\n      default: block\n", "workloads[0].egress.default",
			`demo.yaml:7:16: workloads[0].egress.default: "block" is not an egress default; use "allow" or "deny"`},
		{"allow hostname", target + "workloads:\n  - name: agent\n    match: {cgroup: /a}\n    egress:\n      allow: [example.com]\n", "workloads[0].egress.allow[0]",
			`demo.yaml:7:15: workloads[0].egress.allow[0]: "example.com" is a hostname; egress rules take IP addresses and prefixes`},
		{"allow port 0", target + "workloads:\n  - name: agent\n    match: {cgroup: /a}\n    egress:\n      allow:\n        - 10.0.0.0/8\n        - 127.0.0.53:0\n", "workloads[0].egress.allow[1]",
			"demo.yaml:9:11: workloads[0].egress.allow[1]: port 0 is not allowed; use a port from 1 to 65535"},
		{"allow host bits", target + "workloads:\n  - name: agent\n    match: {cgroup: /a}\n    egress:\n      allow: [\"fd00::1/8\"]\n", "workloads[0].egress.allow[0]",
			`demo.yaml:7:15: workloads[0].egress.allow[0]: "fd00::1/8" has bits set after the prefix length; did you mean fd00::/8?`},
		{"allow garbage", target + "workloads:\n  - name: agent\n    match: {cgroup: /a}\n    egress:\n      allow: [\"10.0.0.0/8/8\"]\n", "workloads[0].egress.allow[0]",
			`demo.yaml:7:15: workloads[0].egress.allow[0]: "10.0.0.0/8/8" is not an IP prefix`},
		{"allow empty", target + "workloads:\n  - name: agent\n    match: {cgroup: /a}\n    egress:\n      allow: [\"\"]\n", "workloads[0].egress.allow[0]",
			`demo.yaml:7:15: workloads[0].egress.allow[0]: "" is not an IP address or prefix`},
		{"admin_tls without key", "gateway:\n  admin_tls: {cert_file: /etc/interlock/admin.crt}\n" + target, "gateway.admin_tls",
			"demo.yaml:2:15: gateway.admin_tls: needs both cert_file and key_file"},
		{"admin_tls missing files", "gateway:\n  admin_tls: {cert_file: /nonexistent/admin.crt, key_file: /nonexistent/admin.key, ca_file: /nonexistent/ca.crt}\n" + target, "gateway.admin_tls.key_file",
			"demo.yaml:2:60: gateway.admin_tls.key_file: stat /nonexistent/admin.key: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("demo.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded, want %q; config: %+v", tt.want, c)
			}
			if c != nil {
				t.Errorf("Parse returned a config with an error")
			}
			lines := strings.Split(err.Error(), "\n")
			if !slices.Contains(lines, tt.want) {
				t.Errorf("error is\n%s\nwant a line\n%s", err, tt.want)
			}
			var found bool
			for _, fe := range fieldErrors(err) {
				if fe.File != "demo.yaml" {
					t.Errorf("%q: File = %q, want demo.yaml", fe, fe.File)
				}
				found = found || fe.Field == tt.field
			}
			if !found {
				t.Errorf("no *FieldError with Field %q in %v", tt.field, err)
			}
		})
	}
}

// fieldErrors flattens the *FieldErrors in err; it fails if there is
// anything else.
func fieldErrors(err error) []*FieldError {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var all []*FieldError
		for _, e := range joined.Unwrap() {
			all = append(all, fieldErrors(e)...)
		}
		return all
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return []*FieldError{fe}
	}
	return []*FieldError{{Field: "<not a *FieldError>", Err: err}}
}

func TestParseReportsEveryProblem(t *testing.T) {
	const yaml = `gateway:
  listen: nowhere
  log_level: loud
targets:
  - name: Bad
    protocol: ftp
    address: 127.0.0.2
workloads:
  - name: agent
    egress:
      default: maybe
`
	_, err := Parse("demo.yaml", []byte(yaml))
	want := []string{
		"demo.yaml:2:11: gateway.listen: \"nowhere\" has no port",
		"demo.yaml:3:14: gateway.log_level: unknown log level \"loud\"; use one of debug, info, warn, error",
		"demo.yaml:5:11: targets[0].name: \"Bad\" is not a valid target name; use 1 to 63 of a-z, 0-9, \"_\", \".\" and \"-\", starting with a letter or digit",
		"demo.yaml:6:15: targets[0].protocol: unknown protocol \"ftp\"; known protocols: tcp, postgres, ssh",
		"demo.yaml:7:14: targets[0].address: \"127.0.0.2\" has no port",
		"demo.yaml:9:5: workloads[0].match: set one of cgroup or systemd_unit",
		"demo.yaml:11:16: workloads[0].egress.default: \"maybe\" is not an egress default; use \"allow\" or \"deny\"",
	}
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("error is\n%s\nwant\n%s", err, strings.Join(want, "\n"))
	}
}

func TestValidateWithoutFile(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want string
	}{
		{"no targets", Config{}, "targets: at least one target is required"},
		{"bad target", Config{Targets: []Target{{Name: "a", Protocol: "tcp", Address: "x"}}},
			`targets[0].address: "x" has no port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if err == nil || err.Error() != tt.want {
				t.Errorf("Validate() = %v, want %s", err, tt.want)
			}
		})
	}
}

func TestValidateTwice(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	first := *c
	first.Targets = slices.Clone(c.Targets)
	if err := c.Validate(); err != nil {
		t.Fatalf("second Validate: %v", err)
	}
	if !reflect.DeepEqual(first.Gateway, c.Gateway) || !slices.Equal(first.Targets, c.Targets) {
		t.Errorf("second Validate changed the config:\n%+v\n%+v", first, *c)
	}

	// A change after loading is validated, and reported at the field's place.
	c.Targets[1].Address = "10.1.0.0/16"
	err = c.Validate()
	want := `testdata/full.yaml:20:14: targets[1].address: "10.1.0.0/16" has no port`
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %s", err, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.yaml")
	_, err := Load(path)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(%q) = %v, want a not-exist error naming the file", path, err)
	}
}

func TestIDs(t *testing.T) {
	tests := []struct {
		id   uint32
		want uint32
	}{
		// FNV-1a 32 reference values, computed independently of hash/fnv.
		{(&Target{Name: "echo"}).ID(), fnv1a("target/echo")},
		{(&Workload{Name: "agent"}).ID(), fnv1a("workload/agent")},
		{stableID(""), 0x811c9dc5},
	}
	for _, tt := range tests {
		if tt.id != tt.want {
			t.Errorf("ID = %#x, want %#x", tt.id, tt.want)
		}
	}
	if (&Target{Name: "x"}).ID() == (&Workload{Name: "x"}).ID() {
		t.Error("a target and a workload of the same name share an ID")
	}
}

func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for _, b := range []byte(s) {
		h ^= uint32(b)
		h *= 16777619
	}
	return h
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/example.yaml", "testdata/full.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(""))
	f.Add([]byte("targets:\n  - {name: a, protocol: tcp, address: \"[fd00::/8]:443\"}\n"))
	f.Add([]byte("targets:\n  - &t {name: a, protocol: tcp, address: \"h:1\"}\n  - *t\nworkloads:\n  - <<: {name: w}\n    match: {systemd_unit: a.scope}\n"))
	f.Add([]byte("gateway: {listen6: off, dial_timeout: 1s}\ntargets: [{name: a, protocol: tcp, address: \"1.2.3.4:5\"}]\n"))
	f.Add([]byte("workloads:\n  - egress:\n      allow: [\"::1\", \"[::1]:80\", \"1.2.3.4/32:9\"]\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if c != nil {
				t.Error("Parse returned a config with an error")
			}
			for _, fe := range fieldErrors(err) {
				if fe.File != "fuzz.yaml" {
					t.Errorf("error %q does not name the file", fe)
				}
			}
			return
		}
		// A config that parsed keeps the promises the gateway relies on.
		if err := c.Validate(); err != nil {
			t.Fatalf("a parsed config fails Validate again: %v", err)
		}
		if len(c.Targets) == 0 || !c.Gateway.ListenAddr.Addr().Is4() {
			t.Fatalf("parsed config without targets or an IPv4 listener: %+v", c)
		}
		for i := range c.Targets {
			tg := &c.Targets[i]
			if tg.Port == 0 || tg.Prefix.IsValid() == (tg.Host != "") || tg.ID() == 0 {
				t.Fatalf("target %+v", *tg)
			}
			if c.TargetByID(tg.ID()) != tg || c.Target(tg.Name) != tg {
				t.Fatalf("target %q is not found by its ID or name", tg.Name)
			}
		}
		for i := range c.Workloads {
			w := &c.Workloads[i]
			if (w.Match.Cgroup == "") == (w.Match.SystemdUnit == "") || w.Identity.Subject == "" {
				t.Fatalf("workload %+v", *w)
			}
			if len(w.Egress.AllowRules) != len(w.Egress.Allow) {
				t.Fatalf("workload %q: %d allow rules from %d entries", w.Name, len(w.Egress.AllowRules), len(w.Egress.Allow))
			}
			if c.WorkloadByID(w.ID()) != w {
				t.Fatalf("workload %q is not found by its ID", w.Name)
			}
		}
	})
}

func TestEgressAllows(t *testing.T) {
	deny := Egress{Default: EgressDeny, AllowRules: []AllowRule{
		{Prefix: netip.MustParsePrefix("127.0.0.53/32"), Port: 53},
		{Prefix: netip.MustParsePrefix("127.1.0.0/16")},
		{Prefix: netip.MustParsePrefix("fd00::/8"), Port: 443},
	}}
	allow := Egress{Default: EgressAllow}
	tests := []struct {
		e    *Egress
		dst  string
		want bool
	}{
		{&allow, "127.0.0.9:80", true},
		{&deny, "127.0.0.53:53", true},
		{&deny, "127.0.0.53:54", false},
		{&deny, "[::ffff:127.0.0.53]:53", true},
		{&deny, "127.1.2.3:1", true},
		{&deny, "127.2.0.1:1", false},
		{&deny, "[fd00::1]:443", true},
		{&deny, "[fd00::1]:80", false},
		{&deny, "[::1]:443", false},
	}
	for _, tt := range tests {
		if got := tt.e.Allows(netip.MustParseAddrPort(tt.dst)); got != tt.want {
			t.Errorf("%s Allows(%s) = %v, want %v", tt.e.Default, tt.dst, got, tt.want)
		}
	}
}

func TestAdminURL(t *testing.T) {
	tests := []struct {
		admin string
		tls   bool
		want  string
	}{
		{"127.0.0.1:9470", false, "http://127.0.0.1:9470"},
		{"127.0.0.1:9470", true, "https://127.0.0.1:9470"},
		{"0.0.0.0:9470", true, "https://127.0.0.1:9470"},
		{"[::]:9470", false, "http://[::1]:9470"},
		{"[::1]:9470", false, "http://[::1]:9470"},
		{"gw.internal:9470", true, "https://gw.internal:9470"},
	}
	for _, tt := range tests {
		g := Gateway{Admin: tt.admin}
		if tt.tls {
			g.AdminTLS = &AdminTLS{CertFile: "c", KeyFile: "k"}
		}
		if got := g.AdminURL(); got != tt.want {
			t.Errorf("admin %s (tls %v): AdminURL = %q, want %q", tt.admin, tt.tls, got, tt.want)
		}
	}
}
