//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// bulkCommand reads its standard input to the end and reports how many
// bytes it read (every transfer is checked to have arrived whole) and in
// how many seconds, from its start to the end of its input: the
// transfer's time without the connection's set-up and tear-down. The
// report goes to stdout: through the gateway, stderr written just before a
// program exits can be lost (proxy/ssh sends EOF once stdout ends, and
// x/crypto refuses stderr data after EOF).
const bulkCommand = "dd of=/dev/null bs=1M 2>&1"

// ddSummary is dd's last line: "268435456 bytes (268 MB, 256 MiB) copied,
// 1.23 s, 217 MB/s", or "0 bytes copied, 2.4e-05 s, 0.0 kB/s".
var ddSummary = regexp.MustCompile(`(?m)^([0-9]+) bytes .*copied, ([0-9.e+-]+) s,`)

// bulkRun is one transfer.
type bulkRun struct {
	elapsed  time.Duration // the ssh client's run, start to exit
	transfer time.Duration // dd's, from its start to the end of its input
	// CPU time during the run: the ssh client's, this process's (the
	// gateway's: nothing else runs in it then) and sshd's connection
	// processes'.
	client, gateway, sshd time.Duration
}

// bulkPath is one path's transfers: full ones of the payload, and empty
// ones that measure everything but the bytes.
type bulkPath struct {
	full, empty []bulkRun
}

type bulkResult struct {
	size  int64
	paths [2]bulkPath // direct, gateway
}

// measureBulk runs the transfers, paths alternating within each round.
func (b *bench) measureBulk(ctx context.Context) (bulkResult, error) {
	res := bulkResult{size: b.size}
	paths := []path{b.direct, b.gateway}
	for _, p := range paths {
		logf("bulk transfer: warming up %s (%d MiB)", p.name, b.opts.sizeMiB)
		if _, err := b.transfer(ctx, p, b.payload, b.size); err != nil {
			return res, fmt.Errorf("warm-up: %w", err)
		}
	}
	before, err := b.sessions()
	if err != nil {
		return res, err
	}
	for round := 1; round <= b.opts.rounds; round++ {
		for i, p := range paths {
			logf("bulk transfer: round %d/%d, %s", round, b.opts.rounds, p.name)
			e, err := b.transfer(ctx, p, b.empty, 0)
			if err != nil {
				return res, err
			}
			f, err := b.transfer(ctx, p, b.payload, b.size)
			if err != nil {
				return res, err
			}
			res.paths[i].empty = append(res.paths[i].empty, e)
			res.paths[i].full = append(res.paths[i].full, f)
		}
	}
	after, err := b.sessions()
	if err != nil {
		return res, err
	}
	if want := 2 * b.opts.rounds; after-before != want {
		return res, fmt.Errorf("the gateway recorded %d sessions during %d gateway transfers: the measured path is not the gateway's", after-before, want)
	}
	return res, nil
}

// transfer sends the file in to bulkCommand on p and checks that want
// bytes arrived.
func (b *bench) transfer(ctx context.Context, p path, in string, want int64) (bulkRun, error) {
	self0, err := selfCPU()
	if err != nil {
		return bulkRun{}, err
	}
	sshd0, err := reapedCPU(b.sshd.Pid())
	if err != nil {
		return bulkRun{}, err
	}
	r, err := b.runSSH(ctx, p, bulkCommand, in)
	if err != nil {
		return bulkRun{}, err
	}
	if r.code != 0 {
		return bulkRun{}, fmt.Errorf("ssh %s %q: exit status %d\n%s%s", p.name, bulkCommand, r.code, r.stderr, b.logTails())
	}
	var secs float64
	// An empty run measures everything but the bytes; its exit status is
	// all it needs to show. (Through the gateway, the output of a command
	// that ends as soon as it starts can be lost: proxy/ssh may close the
	// agent's channel before it starts relaying.)
	if want > 0 {
		m := ddSummary.FindStringSubmatch(r.stdout)
		if m == nil {
			return bulkRun{}, fmt.Errorf("ssh %s %q: no byte count in its output\n%s%s", p.name, bulkCommand, r.stdout, r.stderr)
		}
		if m[1] != strconv.FormatInt(want, 10) {
			return bulkRun{}, fmt.Errorf("ssh %s %q: %s bytes arrived, want %d", p.name, bulkCommand, m[1], want)
		}
		if secs, err = strconv.ParseFloat(m[2], 64); err != nil || secs <= 0 {
			return bulkRun{}, fmt.Errorf("ssh %s %q: dd's time %q is not a positive number of seconds", p.name, bulkCommand, m[2])
		}
	}
	// The gateway's share ends with its session; read it before waiting
	// for sshd, whose wait costs this process CPU too.
	if err := b.waitGateway(ctx); err != nil {
		return bulkRun{}, err
	}
	self1, err := selfCPU()
	if err != nil {
		return bulkRun{}, err
	}
	if err := b.settle(ctx); err != nil {
		return bulkRun{}, err
	}
	sshd1, err := reapedCPU(b.sshd.Pid())
	if err != nil {
		return bulkRun{}, err
	}
	return bulkRun{elapsed: r.elapsed, transfer: time.Duration(secs * float64(time.Second)), client: r.clientCPU, gateway: self1 - self0, sshd: sshd1 - sshd0}, nil
}

// waitGateway waits until the gateway has no session running.
func (b *bench) waitGateway(ctx context.Context) error {
	deadline := time.Now().Add(settleTimeout)
	for len(b.server.Active()) > 0 {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the gateway still has %d sessions %s after their clients ended", len(b.server.Active()), settleTimeout)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// selfCPU is this process's user+system CPU time so far.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("reading this process's CPU time: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// reapedCPU is the user+system CPU time of pid's children that it has
// waited for (cutime+cstime): for sshd, that of its connection processes
// that have ended, and of everything they ran.
func reapedCPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
	}
	// After the command name: state is field 3 of the line, so cutime and
	// cstime (fields 16 and 17, clock ticks of 10 ms) are 13 and 14 here.
	f := statFields(stat)
	if len(f) < 15 {
		return 0, fmt.Errorf("reading CPU time of pid %d: short /proc/%d/stat", pid, pid)
	}
	cu, err1 := strconv.ParseInt(f[13], 10, 64)
	cs, err2 := strconv.ParseInt(f[14], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("reading CPU time of pid %d: %q %q are not tick counts", pid, f[13], f[14])
	}
	return time.Duration(cu+cs) * 10 * time.Millisecond, nil
}
