//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/interlock-dev/interlock/bench/benchenv"
)

type options struct {
	sizeMiB    int
	rounds     int
	roundTrips int
	warmup     int
	cipher     string
	cpuProfile string
	keep       bool
}

func main() {
	var o options
	flag.IntVar(&o.sizeMiB, "size", 256, "MiB sent per bulk transfer")
	flag.IntVar(&o.rounds, "rounds", 5, "bulk transfers per path, and blocks the round trips are split into; paths alternate within each round")
	flag.IntVar(&o.roundTrips, "roundtrips", 5000, "keystroke round trips measured per path")
	flag.IntVar(&o.warmup, "warmup", 500, "unmeasured keystroke round trips per path before measuring")
	flag.StringVar(&o.cipher, "cipher", "", "cipher the OpenSSH client asks for on both paths (ssh -c), e.g. aes128-gcm@openssh.com; default: the client's own preference")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "after measuring, write a Go CPU profile of this process during one more gateway bulk transfer to FILE, and during one more block of gateway round trips to FILE.keystroke")
	flag.BoolVar(&o.keep, "keep", false, "keep the run's folder (recordings, gateway and sshd logs) instead of removing it")
	flag.Parse()

	if o.sizeMiB < 1 || o.rounds < 1 || o.roundTrips < o.rounds || o.warmup < 0 {
		fail(errors.New("-size and -rounds must be at least 1, -roundtrips at least -rounds, -warmup not negative"))
	}
	if os.Geteuid() != 0 {
		fail(errors.New("needs root, because sshd does (it switches to the login user and separates privileges): run it with sudo"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "sshbench: %v\n", err)
	os.Exit(1)
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func run(ctx context.Context, o options) (err error) {
	logf("starting sshd on 127.0.0.2 and the gateway on 127.0.0.1")
	b, err := setUp(o)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := b.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up: %w", cerr))
		}
	}()

	logf("checking that the gateway path is the gateway's")
	ciphers, err := b.check(ctx)
	if err != nil {
		return err
	}
	load0 := benchenv.LoadAverage()
	bulk, err := b.measureBulk(ctx)
	if err != nil {
		return err
	}
	keys, err := b.measureKeystrokes(ctx)
	if err != nil {
		return err
	}
	env, err := describeEnvironment(ctx, b.sshBin)
	if err != nil {
		return err
	}
	env.load = [2]string{load0, benchenv.LoadAverage()}
	env.ciphers = ciphers
	env.ciphers.keystroke = keys.ciphers
	report(os.Stdout, o, env, bulk, keys)

	if o.cpuProfile != "" {
		if err := b.profile(ctx); err != nil {
			return err
		}
		fmt.Printf("\nGo CPU profiles of the gateway process: %s (bulk transfer), %s.keystroke (round trips, x/crypto client included); read with `go tool pprof -top FILE`\n",
			o.cpuProfile, o.cpuProfile)
	}
	return nil
}
