//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// endpoint is one way for pgbench to reach the database.
type endpoint struct {
	name     string // direct, gateway, pgbouncer
	host     string
	port     int
	user     string
	password string
	db       string
	// dbPrepared, when set, is the database name for -M prepared (PgBouncer
	// serves prepared statements only from a session-pooled database).
	dbPrepared string
	// pid is the proxy process whose CPU time is charged to the run; 0 for
	// direct.
	pid int
}

func (ep endpoint) database(protocol string) string {
	if protocol == "prepared" && ep.dbPrepared != "" {
		return ep.dbPrepared
	}
	return ep.db
}

// configuration is one row of the report.
type configuration struct {
	protocol string // simple | prepared
	clients  int
}

func (c configuration) String() string {
	return fmt.Sprintf("%s, %d client%s", c.protocol, c.clients, map[bool]string{true: "s"}[c.clients != 1])
}

// result is what one pgbench run measured.
type result struct {
	tps        float64       // without initial connection time
	latencyAvg time.Duration // pgbench's own average
	txns       int64
	latencies  []int64       // µs, one per transaction, from the transaction log
	cpu        time.Duration // user+system time of the proxy process during the run
}

// pgbench runs the select-only script against ep for d and reads its
// summary and, when logDir is set, its per-transaction log.
func (b *bench) pgbench(ctx context.Context, ep endpoint, c configuration, d time.Duration, logDir string) (result, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-n", "-S", "-M", c.protocol,
		"-c", strconv.Itoa(c.clients), "-j", strconv.Itoa(c.clients), "-T", strconv.Itoa(secs),
		"-h", ep.host, "-p", strconv.Itoa(ep.port), "-U", ep.user}
	var prefix string
	if logDir != "" {
		prefix = filepath.Join(logDir, fmt.Sprintf("%s-%s-%d", ep.name, c.protocol, c.clients))
		args = append(args, "-l", "--log-prefix", prefix)
	}
	args = append(args, ep.database(c.protocol))

	runCtx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, b.pgbenchBin, args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+ep.password, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
	cmd.SysProcAttr = childAttr()
	cpu0, err := cpuTime(ep.pid)
	if err != nil {
		return result{}, err
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return result{}, fmt.Errorf("pgbench %s (%s): %w", ep.name, c, context.Cause(ctx))
	}
	if err != nil {
		return result{}, fmt.Errorf("pgbench %s (%s): %w\n%s", ep.name, c, err, out)
	}
	cpu1, err := cpuTime(ep.pid)
	if err != nil {
		return result{}, err
	}
	r, err := parseSummary(string(out))
	if err != nil {
		return result{}, fmt.Errorf("pgbench %s (%s): %w\n%s", ep.name, c, err, out)
	}
	r.cpu = cpu1 - cpu0
	if prefix != "" {
		if r.latencies, err = readTransactionLogs(prefix); err != nil {
			return result{}, fmt.Errorf("pgbench %s (%s): %w", ep.name, c, err)
		}
		if int64(len(r.latencies)) != r.txns {
			return result{}, fmt.Errorf("pgbench %s (%s): %d transactions processed but %d logged", ep.name, c, r.txns, len(r.latencies))
		}
	}
	return r, nil
}

var (
	tpsLine    = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	latLine    = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	txnsLine   = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	failedLine = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

// parseSummary reads pgbench's end-of-run report.
func parseSummary(out string) (result, error) {
	var r result
	m := tpsLine.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("no tps line in the output")
	}
	r.tps, _ = strconv.ParseFloat(m[1], 64)
	if m = latLine.FindStringSubmatch(out); m == nil {
		return r, errors.New("no latency average in the output")
	}
	ms, _ := strconv.ParseFloat(m[1], 64)
	r.latencyAvg = time.Duration(ms * float64(time.Millisecond))
	if m = txnsLine.FindStringSubmatch(out); m == nil {
		return r, errors.New("no transaction count in the output")
	}
	r.txns, _ = strconv.ParseInt(m[1], 10, 64)
	if m = failedLine.FindStringSubmatch(out); m != nil && m[1] != "0" {
		return r, fmt.Errorf("%s transactions failed", m[1])
	}
	if r.txns == 0 || r.tps <= 0 {
		return r, errors.New("no transaction completed")
	}
	return r, nil
}

// readTransactionLogs reads the latency column of every log pgbench wrote
// under prefix (one file per thread: prefix.PID and prefix.PID.N) and
// removes the files. A line is "client_id transaction_no time script_no
// time_epoch time_us", time being the latency in µs.
func readTransactionLogs(prefix string) ([]int64, error) {
	files, err := filepath.Glob(prefix + ".*")
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no transaction logs %s.*", prefix)
	}
	var lat []int64
	for _, f := range files {
		if err := readTransactionLog(f, &lat); err != nil {
			return nil, err
		}
		if err := os.Remove(f); err != nil {
			return nil, err
		}
	}
	return lat, nil
}

func readTransactionLog(path string, lat *[]int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			return fmt.Errorf("%s:%d: %q is not a transaction log line", path, n, sc.Text())
		}
		us, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			// "failed" or "skipped" instead of a latency.
			return fmt.Errorf("%s:%d: transaction did not complete: %q", path, n, sc.Text())
		}
		*lat = append(*lat, us)
	}
	return sc.Err()
}

// cpuTime is the user+system CPU time of pid so far (0 for pid 0).
func cpuTime(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line, in clock ticks (USER_HZ, 100).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("reading CPU time of pid %d: short /proc/%d/stat", pid, pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// cell accumulates one (configuration, endpoint) over rounds.
type cell struct {
	tps       []float64
	latAvg    []time.Duration
	latencies []int64
	txns      int64
	cpu       time.Duration
	sorted    bool
}

func (c *cell) add(r result) {
	c.tps = append(c.tps, r.tps)
	c.latAvg = append(c.latAvg, r.latencyAvg)
	c.latencies = append(c.latencies, r.latencies...)
	c.txns += r.txns
	c.cpu += r.cpu
	c.sorted = false
}

// medianTPS is the median over rounds: a burst of other work on the
// machine spoils one round, not the figure.
func (c *cell) medianTPS() float64 { return median(c.tps) }

// ratioTPS is the median over rounds of c's TPS to base's TPS in the same
// round: each ratio compares runs seconds apart.
func (c *cell) ratioTPS(base *cell) float64 {
	r := make([]float64, len(c.tps))
	for i := range c.tps {
		r[i] = c.tps[i] / base.tps[i]
	}
	return median(r)
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if n := len(s); n%2 == 1 {
		return s[n/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (c *cell) meanLatency() time.Duration {
	var s time.Duration
	for _, v := range c.latAvg {
		s += v
	}
	return s / time.Duration(len(c.latAvg))
}

// percentile is the nearest-rank q-quantile of the logged latencies, in µs.
func (c *cell) percentile(q float64) int64 {
	if len(c.latencies) == 0 {
		return 0
	}
	if !c.sorted {
		slices.Sort(c.latencies)
		c.sorted = true
	}
	i := int(math.Ceil(q*float64(len(c.latencies)))) - 1
	return c.latencies[min(max(i, 0), len(c.latencies)-1)]
}

// cpuPerTxn is the proxy's CPU time per transaction, in µs.
func (c *cell) cpuPerTxn() float64 {
	if c.txns == 0 {
		return 0
	}
	return float64(c.cpu.Microseconds()) / float64(c.txns)
}
