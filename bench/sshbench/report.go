//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/interlock-dev/interlock/bench/benchenv"
)

// The goals of docs/benchmarks.md.
const (
	goalBulkRatio = 0.5              // gateway MB/s ≥ 0.5 × direct
	goalAddedP50  = time.Millisecond // the gateway adds at most this to the median keystroke round trip
)

// environment says where the numbers come from.
type environment struct {
	date, cpu, kernel, openssh string
	cpus, gomaxprocs           int
	load                       [2]string // 1-minute load average before and after measuring
	ciphers                    ciphers
}

func describeEnvironment(ctx context.Context, sshBin string) (environment, error) {
	env := environment{
		date:       time.Now().UTC().Format("2006-01-02 15:04 MST"),
		gomaxprocs: runtime.GOMAXPROCS(0),
	}
	host := benchenv.DescribeHost()
	env.cpu, env.kernel, env.cpus = host.CPU, host.Kernel, host.CPUs
	// ssh -V prints to stderr.
	out, err := exec.CommandContext(ctx, sshBin, "-V").CombinedOutput()
	if err != nil {
		return env, fmt.Errorf("ssh -V: %w", err)
	}
	env.openssh = strings.TrimSpace(string(out))
	return env, nil
}

// report prints the results as Markdown, ready for docs/benchmarks.md.
func report(w io.Writer, o options, env environment, bulk bulkResult, keys keystrokeResult) {
	fmt.Fprintf(w, "\nSSH through the gateway, %s: `ssh … '%s' < %d MiB` %d times per path; %d keystroke round trips per path in %d blocks after %d unmeasured; paths interleaved direct → gateway\n",
		env.date, bulkCommand, o.sizeMiB, o.rounds, o.roundTrips, o.rounds, o.warmup)
	fmt.Fprintf(w, "%s, %d CPUs, Linux %s, %s, %s GOMAXPROCS=%d\n", env.cpu, env.cpus, env.kernel, env.openssh, runtime.Version(), env.gomaxprocs)
	c := env.ciphers
	asked := "the client's default"
	if o.cipher != "" {
		asked = "`ssh -c " + o.cipher + "`"
	}
	fmt.Fprintf(w, "algorithms (OpenSSH: %s): ssh direct %s; ssh via the gateway: to it %s, from it to sshd %s; keystroke client (x/crypto): direct %s, to the gateway %s\n",
		asked, c.direct, c.agentLeg, c.upstreamLeg, c.keystroke[0], c.keystroke[1])
	fmt.Fprintf(w, "1-minute load average %s before measuring, %s after\n\n", env.load[0], env.load[1])

	d, g := bulk.paths[0], bulk.paths[1]
	dSetup, gSetup := medianElapsed(d.empty), medianElapsed(g.empty)
	dRates, gRates := rates(d.full, bulk.size), rates(g.full, bulk.size)
	ratios := make([]float64, len(dRates))
	for i := range dRates {
		ratios[i] = gRates[i] / dRates[i]
	}
	ratio := medianFloat(ratios)
	met := 0
	verdict := func(ok bool) string {
		if ok {
			met++
			return "ok"
		}
		return "**missed**"
	}
	fmt.Fprintln(w, "| bulk transfer | direct | gateway | gateway/direct | goal |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|")
	fmt.Fprintf(w, "| throughput, median of %d | %.0f MB/s | %.0f MB/s | **%.2f** | ≥ %.2f× %s |\n",
		o.rounds, medianFloat(dRates), medianFloat(gRates), ratio, goalBulkRatio, verdict(ratio >= goalBulkRatio))
	fmt.Fprintf(w, "| each round | %s MB/s | %s MB/s | %s | |\n", floats(dRates, "%.0f"), floats(gRates, "%.0f"), floats(ratios, "%.2f"))
	fmt.Fprintf(w, "| 0 bytes: connect, log in, run, exit (median) | %.1f ms | %.1f ms | %+.1f ms | |\n\n",
		ms(dSetup), ms(gSetup), ms(gSetup-dSetup))

	fmt.Fprintln(w, "| CPU per MB transferred | direct | gateway |")
	fmt.Fprintln(w, "|---|---:|---:|")
	part := func(name string, f func(bulkRun) time.Duration) (float64, float64) {
		dv, gv := cpuPerMB(d, bulk.size, f), cpuPerMB(g, bulk.size, f)
		fmt.Fprintf(w, "| %s | %.2f ms | %.2f ms |\n", name, dv, gv)
		return dv, gv
	}
	c1, c2 := part("ssh client", func(r bulkRun) time.Duration { return r.client })
	g1, g2 := part("this process: the gateway (idle on the direct path)", func(r bulkRun) time.Duration { return r.gateway })
	s1, s2 := part("sshd's connection processes (and `dd`)", func(r bulkRun) time.Duration { return r.sshd })
	fmt.Fprintf(w, "| all | %.2f ms | %.2f ms |\n\n", c1+g1+s1, c2+g2+s2)

	kd, kg := keys.paths[0], keys.paths[1]
	p50d, p50g := percentile(kd.lat, 0.5), percentile(kg.lat, 0.5)
	added := p50g - p50d
	fmt.Fprintln(w, "| keystroke round trip (pty, raw mode, cat) | direct | gateway | added by the gateway | goal |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|")
	fmt.Fprintf(w, "| p50 | %s | %s | **%s** | ≤ %s %s |\n", us(p50d), us(p50g), signedUS(added), us(goalAddedP50), verdict(added <= goalAddedP50))
	fmt.Fprintf(w, "| p99 | %s | %s | %s | |\n", us(percentile(kd.lat, 0.99)), us(percentile(kg.lat, 0.99)), signedUS(percentile(kg.lat, 0.99)-percentile(kd.lat, 0.99)))
	fmt.Fprintf(w, "| mean | %s | %s | %s | |\n", us(mean(kd.lat)), us(mean(kg.lat)), signedUS(mean(kg.lat)-mean(kd.lat)))
	var roundAdded []string
	for i := range kd.roundP50 {
		roundAdded = append(roundAdded, signedUS(kg.roundP50[i]-kd.roundP50[i]))
	}
	fmt.Fprintf(w, "| p50 of each block | %s | %s | %s | |\n", durations(kd.roundP50), durations(kg.roundP50), strings.Join(roundAdded, ", "))
	cd, cg := perRoundTrip(kd), perRoundTrip(kg)
	fmt.Fprintf(w, "| this process's CPU per round trip: x/crypto client, + gateway | %s | %s | %s | |\n\n", us(cd), us(cg), signedUS(cg-cd))

	fmt.Fprintf(w, "goals met: %d of 2. %d keystrokes went through the gateway's terminal recording (%d output bytes recorded).\n",
		met, o.warmup+o.roundTrips, keys.recorded)
}

// medianElapsed is the median time of runs.
func medianElapsed(runs []bulkRun) time.Duration {
	var v []time.Duration
	for _, r := range runs {
		v = append(v, r.elapsed)
	}
	s := slices.Sorted(slices.Values(v))
	if len(s) == 0 {
		return 0
	}
	return s[(len(s)-1)/2]
}

// rates are the MB/s (10^6 bytes) of each full run, by dd's clock.
func rates(full []bulkRun, size int64) []float64 {
	var out []float64
	for _, r := range full {
		out = append(out, float64(size)/1e6/max(r.transfer, time.Microsecond).Seconds())
	}
	return out
}

// cpuPerMB is a part's CPU time in ms per MB over the full runs, the median
// empty run's taken off each.
func cpuPerMB(p bulkPath, size int64, part func(bulkRun) time.Duration) float64 {
	var empty []time.Duration
	for _, r := range p.empty {
		empty = append(empty, part(r))
	}
	slices.Sort(empty)
	base := empty[(len(empty)-1)/2]
	var total time.Duration
	for _, r := range p.full {
		total += max(part(r)-base, 0)
	}
	return ms(total) / (float64(size) / 1e6 * float64(len(p.full)))
}

func perRoundTrip(p keystrokePath) time.Duration {
	if len(p.lat) == 0 {
		return 0
	}
	return p.cpu / time.Duration(len(p.lat))
}

func medianFloat(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if n := len(s); n%2 == 1 {
		return s[n/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func floats(v []float64, format string) string {
	var out []string
	for _, f := range v {
		out = append(out, fmt.Sprintf(format, f))
	}
	return strings.Join(out, ", ")
}

func durations(v []time.Duration) string {
	var out []string
	for _, d := range v {
		out = append(out, us(d))
	}
	return strings.Join(out, ", ")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func signedUS(d time.Duration) string {
	return fmt.Sprintf("%+.0f µs", float64(d)/float64(time.Microsecond))
}
