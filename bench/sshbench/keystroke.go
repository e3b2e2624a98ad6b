//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/interlock-dev/interlock/record/asciicast"
)

// keystrokeCommand echoes what it reads; the pty is put in raw mode
// without echo by the pty request, so each byte comes back once, from the
// program, as a shell's line editor echoes a keystroke.
const keystrokeCommand = "cat"

// rawModes are the pty-req terminal modes: no line buffering, no echo by
// the terminal, no signal characters, no output processing.
var rawModes = ssh.TerminalModes{
	ssh.ECHO:   0,
	ssh.ICANON: 0,
	ssh.ISIG:   0,
	ssh.IEXTEN: 0,
	ssh.IXON:   0,
	ssh.ICRNL:  0,
	ssh.OPOST:  0,
}

// terminal is one x/crypto session with a pty running keystrokeCommand.
type terminal struct {
	client *ssh.Client
	stdin  io.Writer
	stdout io.Reader
	buf    [512]byte
	sent   int // round trips so far; picks the next byte
}

// openTerminal logs in on p and starts keystrokeCommand on a pty.
func openTerminal(ctx context.Context, p path) (*terminal, error) {
	c, err := dial(ctx, p)
	if err != nil {
		return nil, err
	}
	t, err := startTerminal(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	return t, nil
}

func startTerminal(c *ssh.Client) (*terminal, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("opening a session: %w", err)
	}
	if err := s.RequestPty("xterm", 24, 80, rawModes); err != nil {
		return nil, fmt.Errorf("requesting a pty: %w", err)
	}
	stdin, err := s.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.Start(keystrokeCommand); err != nil {
		return nil, fmt.Errorf("starting %s: %w", keystrokeCommand, err)
	}
	return &terminal{client: c, stdin: stdin, stdout: stdout}, nil
}

// roundTrip writes one byte and reads until that byte comes back. Bytes
// cycle through a..z, so a stray second copy of an earlier byte (were the
// terminal to echo as well) is skipped rather than taken for this one.
func (t *terminal) roundTrip() (time.Duration, error) {
	want := byte('a' + t.sent%26)
	t.sent++
	start := time.Now()
	if _, err := t.stdin.Write([]byte{want}); err != nil {
		return 0, fmt.Errorf("writing a keystroke: %w", err)
	}
	for {
		n, err := t.stdout.Read(t.buf[:])
		if slices.Contains(t.buf[:n], want) {
			return time.Since(start), nil
		}
		if err != nil {
			return 0, fmt.Errorf("reading the echo: %w", err)
		}
	}
}

// block runs n round trips, appending their times to lat. A block that
// stalls (no echo) is cut by closing the connection, which fails it.
func (t *terminal) block(ctx context.Context, n int, lat []time.Duration) ([]time.Duration, error) {
	limit := time.Minute + time.Duration(n)*10*time.Millisecond
	var timedOut atomic.Bool
	timer := time.AfterFunc(limit, func() {
		timedOut.Store(true)
		t.client.Close()
	})
	defer timer.Stop()
	stop := context.AfterFunc(ctx, func() { t.client.Close() })
	defer stop()
	for range n {
		d, err := t.roundTrip()
		if err != nil {
			if timedOut.Load() {
				err = fmt.Errorf("%w (no echo within %s)", err, limit)
			}
			if ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			return lat, err
		}
		lat = append(lat, d)
	}
	return lat, nil
}

func (t *terminal) close() error {
	if err := t.client.Close(); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// keystrokePath is one path's round trips.
type keystrokePath struct {
	lat []time.Duration
	// cpu is this process's CPU time during the measured blocks: the
	// x/crypto client's, and on the gateway path the gateway's too.
	cpu time.Duration
	// roundP50 is each round's median, for the added median per round.
	roundP50 []time.Duration
}

type keystrokeResult struct {
	paths   [2]keystrokePath // direct, gateway
	ciphers [2]string
	// recorded is the output bytes the gateway's terminal recording holds.
	recorded int
}

// measureKeystrokes keeps one terminal open per path and measures blocks
// of round trips, paths alternating.
func (b *bench) measureKeystrokes(ctx context.Context) (res keystrokeResult, err error) {
	paths := []path{b.direct, b.gateway}
	casts0, err := filepath.Glob(filepath.Join(b.store.Dir(), "*"+asciicast.FileExt))
	if err != nil {
		return res, err
	}
	var terms [2]*terminal
	defer func() {
		for _, t := range terms {
			if t != nil {
				err = errors.Join(err, t.close())
			}
		}
	}()
	for i, p := range paths {
		if terms[i], err = openTerminal(ctx, p); err != nil {
			return res, err
		}
		res.ciphers[i] = negotiated(terms[i].client)
	}
	if n := len(b.server.Active()); n != 1 {
		return res, fmt.Errorf("the gateway serves %d sessions while one terminal is open through it, want 1", n)
	}
	for i, p := range paths {
		logf("keystroke round trip: warming up %s (%d round trips)", p.name, b.opts.warmup)
		if _, err := terms[i].block(ctx, b.opts.warmup, nil); err != nil {
			return res, fmt.Errorf("warm-up on %s: %w", p.name, err)
		}
	}
	for round := range b.opts.rounds {
		n := b.opts.roundTrips / b.opts.rounds
		if round == b.opts.rounds-1 {
			n = b.opts.roundTrips - n*(b.opts.rounds-1)
		}
		for i, p := range paths {
			logf("keystroke round trip: round %d/%d, %s, %d round trips", round+1, b.opts.rounds, p.name, n)
			kp := &res.paths[i]
			cpu0, err := selfCPU()
			if err != nil {
				return res, err
			}
			from := len(kp.lat)
			if kp.lat, err = terms[i].block(ctx, n, kp.lat); err != nil {
				return res, fmt.Errorf("%s: %w", p.name, err)
			}
			cpu1, err := selfCPU()
			if err != nil {
				return res, err
			}
			kp.cpu += cpu1 - cpu0
			kp.roundP50 = append(kp.roundP50, percentile(kp.lat[from:], 0.5))
		}
	}

	gatewayBytes := terms[1].sent
	for i, t := range terms {
		terms[i] = nil
		if err := t.close(); err != nil {
			return res, err
		}
	}
	if err := b.settle(ctx); err != nil {
		return res, err
	}
	// Every echoed byte must be in the gateway's terminal recording: the
	// measured path recorded what it carried.
	casts, err := filepath.Glob(filepath.Join(b.store.Dir(), "*"+asciicast.FileExt))
	if err != nil {
		return res, err
	}
	var added []string
	for _, c := range casts {
		if !slices.Contains(casts0, c) {
			added = append(added, c)
		}
	}
	if len(added) != 1 {
		return res, fmt.Errorf("the gateway wrote %d terminal recordings for the one gateway terminal, want 1", len(added))
	}
	if res.recorded, err = recordedOutput(added[0]); err != nil {
		return res, err
	}
	if res.recorded < gatewayBytes {
		return res, fmt.Errorf("the gateway's terminal recording holds %d output bytes, want at least the %d echoed", res.recorded, gatewayBytes)
	}
	return res, nil
}

// recordedOutput counts the output bytes of an asciicast recording.
func recordedOutput(name string) (int, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r, err := asciicast.Open(f)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", name, err)
	}
	n := 0
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("reading %s: %w", name, err)
		}
		if ev.Code == asciicast.CodeOutput {
			n += len(ev.Data)
		}
	}
}

// percentile is the nearest-rank q-quantile of lat.
func percentile(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(lat))
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func mean(lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	return sum / time.Duration(len(lat))
}
