//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/interlock-dev/interlock/bench/benchenv"
)

// The goals of docs/benchmarks.md, as ratios to the direct path in the same
// run and as latency added to the direct median.
const (
	goalTPSOneClient   = 0.90 // 1 client: gateway TPS ≥ 0.90 × direct
	goalTPSManyClients = 0.80 // 8 clients: gateway TPS ≥ 0.80 × direct, and above PgBouncer
	goalAddedP50       = 30   // µs the gateway may add to the direct median latency
	goalManyClients    = 8
)

// environment says where the numbers come from.
type environment struct {
	cpu, kernel, postgres, pgbouncer, interlock string
	cpus                                        int
	load                                        [2]string // 1-minute load average before and after measuring
}

func describeEnvironment(ctx context.Context, b *bench) (environment, error) {
	env := environment{}
	host := benchenv.DescribeHost()
	env.cpu, env.kernel, env.cpus = host.CPU, host.Kernel, host.CPUs
	first := func(name string, args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, name, args...).Output()
		if err != nil {
			return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line, nil
	}
	var err error
	if env.postgres, err = first(b.pgbenchBin, "--version"); err != nil {
		return env, err
	}
	if env.pgbouncer, err = first(b.opts.pgbouncer, "--version"); err != nil {
		return env, err
	}
	if env.interlock, err = first(b.opts.interlock, "version"); err != nil {
		return env, err
	}
	return env, nil
}

// report prints the results as Markdown tables, ready for
// docs/benchmarks.md.
func report(w io.Writer, o options, env environment, configs []configuration, cells map[configuration][]*cell, decided, recorded int64) {
	fmt.Fprintf(w, "\npgbench -S -n (select only), %s per run, %d round(s) (TPS and ratios: median over rounds; latencies: all rounds' transactions), scale %d, paths interleaved direct → gateway → pgbouncer → relay\n",
		o.duration, o.rounds, o.scale)
	fmt.Fprintf(w, "%s, %d CPUs, Linux %s, %s, %s, interlock %s\n", env.cpu, env.cpus, env.kernel, env.postgres, env.pgbouncer, env.interlock)
	fmt.Fprintf(w, "1-minute load average %s before measuring, %s after (the after figure includes the benchmark's own processes)\n\n", env.load[0], env.load[1])

	fmt.Fprintln(w, "| configuration | direct TPS | gateway TPS (×direct) | pgbouncer TPS (×direct) | relay TPS (×direct) | p50 direct | p50 gateway | p50 pgbouncer | p50 relay | gateway +p50 | goals |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	met, total := 0, 0
	for _, c := range configs {
		d, g, pb, rl := cells[c][0], cells[c][1], cells[c][2], cells[c][3]
		verdicts := goals(c, d, g, pb)
		var text []string
		for _, v := range verdicts {
			total++
			mark := "ok"
			if v.ok {
				met++
			} else {
				mark = "**missed**"
			}
			text = append(text, v.what+" "+mark)
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f (%.2f) | %.0f (%.2f) | %.0f (%.2f) | %d µs | %d µs | %d µs | %d µs | %+d µs | %s |\n",
			c, d.medianTPS(), g.medianTPS(), g.ratioTPS(d), pb.medianTPS(), pb.ratioTPS(d), rl.medianTPS(), rl.ratioTPS(d),
			d.percentile(0.5), g.percentile(0.5), pb.percentile(0.5), rl.percentile(0.5), g.percentile(0.5)-d.percentile(0.5),
			strings.Join(text, "; "))
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "| configuration | latency avg direct / gateway / pgbouncer / relay | p99 direct / gateway / pgbouncer / relay | pgbouncer +p50 | relay +p50 | proxy CPU per transaction: gateway / pgbouncer / relay |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, c := range configs {
		d, g, pb, rl := cells[c][0], cells[c][1], cells[c][2], cells[c][3]
		fmt.Fprintf(w, "| %s | %s / %s / %s / %s | %d / %d / %d / %d µs | %+d µs | %+d µs | %.1f / %.1f / %.1f µs |\n",
			c, us(d.meanLatency()), us(g.meanLatency()), us(pb.meanLatency()), us(rl.meanLatency()),
			d.percentile(0.99), g.percentile(0.99), pb.percentile(0.99), rl.percentile(0.99),
			pb.percentile(0.5)-d.percentile(0.5), rl.percentile(0.5)-d.percentile(0.5), g.cpuPerTxn(), pb.cpuPerTxn(), rl.cpuPerTxn())
	}
	fmt.Fprintf(w, "\ngoals met: %d of %d. The gateway decided %d statements during the measured runs and recorded %d bytes of session logs.\n",
		met, total, decided, recorded)
	if slices.Contains(o.protocols, "prepared") {
		fmt.Fprintln(w, "pgbouncer runs -M prepared on a session-pooled database (PgBouncer before 1.21 cannot keep prepared statements in transaction pooling), -M simple in transaction pooling.")
	}
}

type verdict struct {
	what string
	ok   bool
}

// goals judges one configuration; a client count other than 1 and 8 has
// only the latency goal.
func goals(c configuration, d, g, pb *cell) []verdict {
	ratio := g.ratioTPS(d)
	var out []verdict
	switch c.clients {
	case 1:
		out = append(out, verdict{fmt.Sprintf("TPS ≥ %.2f×", goalTPSOneClient), ratio >= goalTPSOneClient})
	case goalManyClients:
		out = append(out,
			verdict{fmt.Sprintf("TPS ≥ %.2f×", goalTPSManyClients), ratio >= goalTPSManyClients},
			verdict{"TPS > pgbouncer", g.ratioTPS(pb) > 1})
	}
	out = append(out, verdict{fmt.Sprintf("+p50 ≤ %d µs", goalAddedP50), g.percentile(0.5)-d.percentile(0.5) <= goalAddedP50})
	return out
}

func us(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }
