// Package benchenv is what the benchmark programs (bench/pgbench,
// bench/sshbench) share: a description of the machine the numbers come
// from, its load, and the stack of clean-ups that stops what a run
// started. It never fails: what it cannot read it reports as unknown.
package benchenv

import (
	"bufio"
	"errors"
	"os"
	"runtime"
	"strings"
)

// Host is the machine a run measured on.
type Host struct {
	CPU    string // /proc/cpuinfo's first model name, or "unknown CPU"
	Kernel string // the kernel release, or ""
	CPUs   int
}

// DescribeHost reads the machine's CPU model and kernel release.
func DescribeHost() Host {
	h := Host{CPU: "unknown CPU", CPUs: runtime.NumCPU()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(k))
	}
	return h
}

// LoadAverage is the 1-minute load average, or "?": other work on the
// machine shows in it, and spoils a run on a small machine.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// Cleanups stops what a run started, newest first. The zero value is
// ready to use; it is not safe for concurrent use.
type Cleanups struct {
	fns []func() error
}

// OnClose adds f to run at Close.
func (c *Cleanups) OnClose(f func() error) { c.fns = append(c.fns, f) }

// Close runs every clean-up added so far, newest first, whatever each
// returns, and joins their errors. A second Close runs nothing.
func (c *Cleanups) Close() error {
	var errs []error
	for i := len(c.fns) - 1; i >= 0; i-- {
		errs = append(errs, c.fns[i]())
	}
	c.fns = nil
	return errors.Join(errs...)
}
