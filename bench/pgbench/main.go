//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/interlock-dev/interlock/bench/benchenv"
)

type options struct {
	interlock string
	pgbouncer string
	duration  time.Duration
	warmup    time.Duration
	rounds    int
	scale     int
	clients   []int
	protocols []string
	profile   string
	keep      bool
}

func main() {
	var o options
	var clients, protocols string
	flag.StringVar(&o.interlock, "interlock", "bin/interlock", "the interlock binary to benchmark")
	flag.StringVar(&o.pgbouncer, "pgbouncer", "/usr/sbin/pgbouncer", "the PgBouncer binary to compare with")
	flag.DurationVar(&o.duration, "duration", 15*time.Second, "length of each measured pgbench run (whole seconds)")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured pgbench run on each path before measuring (0: none)")
	flag.IntVar(&o.rounds, "rounds", 1, "times to repeat every configuration; TPS and ratios are medians over rounds, latency percentiles pooled")
	flag.IntVar(&o.scale, "scale", 10, "pgbench -i scale factor (100,000 accounts each)")
	flag.StringVar(&clients, "clients", "1,8", "comma-separated client counts (pgbench -c N -j N)")
	flag.StringVar(&protocols, "protocols", "simple,prepared", "comma-separated query protocols (pgbench -M)")
	flag.StringVar(&o.profile, "profile", "", "after measuring, record a perf CPU profile of the gateway into this file (report in FILE.txt) during one more run with the first -protocols and the most -clients")
	flag.BoolVar(&o.keep, "keep", false, "keep the run's folder (logs, configuration) instead of removing it")
	flag.Parse()

	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "pgbench: needs root, like the gateway: it starts PostgreSQL and PgBouncer as the postgres OS user (run it with sudo)")
		os.Exit(1)
	}
	var err error
	if o.clients, err = parseInts(clients); err != nil {
		fail(fmt.Errorf("-clients: %w", err))
	}
	o.protocols = strings.Split(protocols, ",")
	for _, p := range o.protocols {
		if p != "simple" && p != "prepared" && p != "extended" {
			fail(fmt.Errorf("-protocols: %q is not simple, extended or prepared", p))
		}
	}
	if o.rounds < 1 || o.scale < 1 || o.duration < time.Second {
		fail(errors.New("-rounds and -scale must be at least 1, -duration at least 1s"))
	}
	if o.interlock, err = filepath.Abs(o.interlock); err != nil {
		fail(err)
	}
	for _, bin := range []string{o.interlock, o.pgbouncer} {
		if _, err := exec.LookPath(bin); err != nil {
			fail(fmt.Errorf("%s: %w (build interlock with make build; PgBouncer is the pgbouncer package)", bin, err))
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o)
	stop()
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "pgbench: %v\n", err)
	os.Exit(1)
}

func run(ctx context.Context, o options) (err error) {
	password, err := randomPassword()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "interlock-pgbench-")
	if err != nil {
		return err
	}
	// Others may traverse (PgBouncer runs as postgres and reads its own
	// subfolder), not list.
	if err := os.Chmod(dir, 0o711); err != nil {
		return errors.Join(err, os.RemoveAll(dir))
	}
	b := &bench{opts: o, dir: dir, password: password}
	b.OnClose(func() error {
		if o.keep {
			fmt.Fprintf(os.Stderr, "kept %s\n", dir)
			return nil
		}
		return os.RemoveAll(dir)
	})
	defer func() {
		if cerr := b.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up: %w", cerr))
		}
	}()

	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	logf("starting PostgreSQL and loading pgbench data (scale %d)", o.scale)
	if err := b.startPostgres(ctx); err != nil {
		return err
	}
	logf("starting the gateway (%s) and PgBouncer", o.interlock)
	if err := b.startGateway(ctx); err != nil {
		return err
	}
	if err := b.startBouncer(ctx); err != nil {
		return err
	}
	endpoints := []endpoint{
		{name: "direct", host: b.pg.Host, port: b.pg.Port, user: appUser, password: password, db: database},
		{name: "gateway", host: "127.0.0.1", port: b.gatewayPort, user: appUser, db: database, pid: b.gateway.cmd.Process.Pid},
		{name: "pgbouncer", host: "127.0.0.1", port: b.bouncerPort, user: appUser, password: password, db: database, dbPrepared: bouncerSessionDB, pid: b.bouncer.cmd.Process.Pid},
		{name: "relay", host: "127.0.0.1", port: b.relayPort, user: appUser, password: password, db: database, pid: b.gateway.cmd.Process.Pid},
	}
	var configs []configuration
	for _, p := range o.protocols {
		for _, c := range o.clients {
			configs = append(configs, configuration{protocol: p, clients: c})
		}
	}
	logDir := filepath.Join(dir, "pgbench-logs")
	if err := os.Mkdir(logDir, 0o700); err != nil {
		return err
	}

	load0 := benchenv.LoadAverage()
	if o.warmup > 0 {
		for _, ep := range endpoints {
			logf("warming up %s for %s", ep.name, o.warmup)
			if _, err := b.pgbench(ctx, ep, configuration{protocol: "simple", clients: maxClients(o.clients)}, o.warmup, ""); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
	}

	cells := map[configuration][]*cell{}
	var decided float64
	for round := 1; round <= o.rounds; round++ {
		for _, c := range configs {
			if cells[c] == nil {
				cells[c] = []*cell{{}, {}, {}, {}}
			}
			for i, ep := range endpoints {
				logf("round %d/%d: %s, %s, %s", round, o.rounds, c, ep.name, o.duration)
				var before gatewayCounts
				if ep.name == "gateway" {
					if before, err = b.gatewayCounts(ctx); err != nil {
						return err
					}
				}
				r, err := b.pgbench(ctx, ep, c, o.duration, logDir)
				if err != nil {
					return err
				}
				if ep.name == "gateway" {
					n, err := b.checkGatewayRun(ctx, before, c, r)
					if err != nil {
						return err
					}
					decided += n
				}
				cells[c][i].add(r)
			}
		}
	}
	recorded, err := dirSize(filepath.Join(dir, "gateway", "state", "recordings"))
	if err != nil {
		return fmt.Errorf("gateway recordings: %w", err)
	}

	env, err := describeEnvironment(ctx, b)
	if err != nil {
		return err
	}
	env.load = [2]string{load0, benchenv.LoadAverage()}
	report(os.Stdout, o, env, configs, cells, int64(decided), recorded)

	if o.profile != "" {
		c := configuration{protocol: o.protocols[0], clients: maxClients(o.clients)}
		logf("profiling the gateway with perf during one more run (%s, %s)", c, o.duration)
		if err := b.profileGateway(ctx, endpoints[1], c); err != nil {
			return err
		}
		fmt.Printf("\nperf profile of the gateway (%s): %s, report in %s.txt\n", c, o.profile, o.profile)
	}
	return nil
}

// profileGateway runs perf record on the gateway process during one more
// gateway run, and writes perf report summaries next to the profile.
func (b *bench) profileGateway(ctx context.Context, ep endpoint, c configuration) error {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return fmt.Errorf("-profile needs perf (linux-perf): %w", err)
	}
	secs := strconv.Itoa(max(1, int(b.opts.duration/time.Second)))
	rec := exec.CommandContext(ctx, perf, "record", "-F", "999", "-g", "-o", b.opts.profile,
		"-p", strconv.Itoa(ep.pid), "--", "sleep", secs)
	rec.SysProcAttr = childAttr()
	var recOut strings.Builder
	rec.Stdout, rec.Stderr = &recOut, &recOut
	if err := rec.Start(); err != nil {
		return fmt.Errorf("perf record: %w", err)
	}
	_, runErr := b.pgbench(ctx, ep, c, b.opts.duration, "")
	if err := errors.Join(runErr, rec.Wait()); err != nil {
		return fmt.Errorf("profiling the gateway: %w\n%s", err, recOut.String())
	}
	var report strings.Builder
	// By binary (gateway, kernel, libc); by function including callees (what
	// each part of the handler costs); by function itself.
	for _, args := range [][]string{
		{"--no-children", "--sort", "dso"},
		{"--children", "--sort", "symbol", "--percent-limit", "2"},
		{"--no-children", "--sort", "symbol", "--percent-limit", "0.7"},
	} {
		cmd := exec.CommandContext(ctx, perf, append([]string{"report", "-i", b.opts.profile, "--stdio", "-g", "none"}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("perf report: %w", err)
		}
		report.Write(out)
	}
	return os.WriteFile(b.opts.profile+".txt", []byte(report.String()), 0o644)
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func maxClients(cs []int) int {
	m := 1
	for _, c := range cs {
		m = max(m, c)
	}
	return m
}

func dirSize(dir string) (int64, error) {
	var n int64
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return 0, err
		}
		n += info.Size()
	}
	return n, nil
}
