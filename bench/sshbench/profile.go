//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"time"
)

// profileFor is how long each profile runs at least: at the profiler's
// 100 samples a second, a few hundred samples.
const profileFor = 5 * time.Second

// profile writes Go CPU profiles of this process during more gateway bulk
// transfers and more gateway round trips, after the measured ones so that
// profiling does not touch the numbers. During the transfers the process
// is the gateway alone (the ssh client is another process); during the
// round trips it is the gateway and the x/crypto client.
func (b *bench) profile(ctx context.Context) error {
	logf("profiling the gateway during bulk transfers (%s)", profileFor)
	if err := cpuProfile(b.opts.cpuProfile, func() error {
		for start := time.Now(); time.Since(start) < profileFor; {
			if _, err := b.transfer(ctx, b.gateway, b.payload, b.size); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}

	logf("profiling the gateway during round trips (%s)", profileFor)
	t, err := openTerminal(ctx, b.gateway)
	if err != nil {
		return err
	}
	if _, err := t.block(ctx, b.opts.warmup, nil); err != nil {
		return errors.Join(err, t.close())
	}
	lat := make([]time.Duration, 0, 1000)
	err = cpuProfile(b.opts.cpuProfile+".keystroke", func() error {
		for start := time.Now(); time.Since(start) < profileFor; {
			if _, err := t.block(ctx, cap(lat), lat[:0]); err != nil {
				return err
			}
		}
		return nil
	})
	return errors.Join(err, t.close(), b.settle(ctx))
}

// cpuProfile writes a CPU profile of this process while f runs.
func cpuProfile(name string, f func() error) error {
	out, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("creating the CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return fmt.Errorf("starting the CPU profile: %w", err)
	}
	runErr := f()
	pprof.StopCPUProfile()
	return errors.Join(runErr, out.Close())
}
