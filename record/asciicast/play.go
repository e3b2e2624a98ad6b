package asciicast

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// DefaultMaxIdle is the longest pause Play shows when neither
// PlayOptions.MaxIdle nor the header's idle_time_limit says otherwise: an
// agent's session is mostly waiting, and nobody wants to watch that.
const DefaultMaxIdle = 2 * time.Second

// PlayOptions tune Play.
type PlayOptions struct {
	// Speed divides every pause: 2 plays twice as fast. 0 means 1; it must
	// be a finite number > 0 otherwise.
	Speed float64
	// MaxIdle caps each pause, measured in the recording's time before
	// Speed applies. 0 means the header's idle_time_limit, or DefaultMaxIdle
	// when it has none; a negative MaxIdle shows every pause as recorded.
	MaxIdle time.Duration
	// Resize writes each resize event as the xterm escape that asks the
	// terminal to take that size ("\x1b[8;ROWS;COLSt"). Off, resizes are
	// left out: most terminals ignore the request or should not obey it.
	Resize bool
	// Raw writes the output as it was recorded. Off, it goes through a
	// [Filter], which keeps what renders the session and drops what would
	// make the replaying terminal do more (write the clipboard or the
	// title, answer queries into its input): the output came from the
	// agent and the target, who must not drive the operator's terminal.
	Raw bool
	// Sleep waits d or until ctx ends, returning an error in that case. Nil
	// means a timer; tests pass a fake to see the pauses without waiting.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Play writes the output events of the recording in r to w, filtered unless
// opts.Raw, pausing between them as the recording did (see PlayOptions).
// Input and marker events, and codes it does not know, are not written.
// Pauses are measured between the events Play writes, so typing that the
// terminal did not echo, or output the Filter dropped whole, does not show
// as a pause of its own. Play returns nil at the end of the recording
// and context.Cause(ctx) as soon as ctx ends; a Write to w that blocks is
// not interrupted.
func Play(ctx context.Context, w io.Writer, r io.Reader, opts PlayOptions) error {
	speed := opts.Speed
	if speed == 0 {
		speed = 1
	}
	if !(speed > 0) || math.IsInf(speed, 0) {
		return fmt.Errorf("playing asciicast: %w: speed %v", ErrInvalid, opts.Speed)
	}
	sleep := opts.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	rd, err := Open(r)
	if err != nil {
		return fmt.Errorf("playing asciicast: %w", err)
	}
	maxIdle := opts.MaxIdle
	if maxIdle == 0 {
		maxIdle = DefaultMaxIdle
		if limit := rd.Header().IdleTimeLimit; limit > 0 {
			maxIdle = seconds(limit)
		}
	}
	var (
		prev   float64 // time of the last event written
		filter *Filter
		buf    []byte
	)
	if !opts.Raw {
		filter = &Filter{}
	}
	for {
		if ctx.Err() != nil {
			return fmt.Errorf("playing asciicast: %w", context.Cause(ctx))
		}
		ev, err := rd.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("playing asciicast: %w", err)
		}
		out := playable(ev, opts.Resize)
		if filter != nil && ev.Code == CodeOutput {
			buf = filter.Append(buf[:0], out)
			out = string(buf)
		}
		if out == "" {
			continue
		}
		if d := pause(ev.Time-prev, maxIdle, speed); d > 0 {
			if err := sleep(ctx, d); err != nil {
				return fmt.Errorf("playing asciicast: %w", err)
			}
			if ctx.Err() != nil { // a Sleep that ignored ctx
				return fmt.Errorf("playing asciicast: %w", context.Cause(ctx))
			}
		}
		prev = max(prev, ev.Time)
		if _, err := io.WriteString(w, out); err != nil {
			return fmt.Errorf("playing asciicast: writing output: %w", err)
		}
	}
}

// playable is what Play writes for ev; "" for nothing.
func playable(ev Event, resize bool) string {
	switch ev.Code {
	case CodeOutput:
		return ev.Data
	case CodeResize:
		if cols, rows, ok := ev.Size(); ok && resize {
			return "\x1b[8;" + strconv.Itoa(rows) + ";" + strconv.Itoa(cols) + "t"
		}
	}
	return ""
}

// pause is the wait for a gap of secs in the recording: capped at maxIdle
// (when > 0), then divided by speed. A negative gap (times out of order) is
// no wait.
func pause(secs float64, maxIdle time.Duration, speed float64) time.Duration {
	if !(secs > 0) {
		return 0
	}
	d := seconds(secs)
	if maxIdle > 0 && d > maxIdle {
		d = maxIdle
	}
	return seconds(d.Seconds() / speed)
}

// seconds converts to a Duration, saturating where a file's huge times would
// overflow it.
func seconds(s float64) time.Duration {
	ns := s * float64(time.Second)
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// DumpOptions tune Dump.
type DumpOptions struct {
	// Raw writes the output as it was recorded; off, it goes through a
	// [Filter], as Play's does: what is dumped to a pipe often ends up on
	// a terminal (less -R, cat).
	Raw bool
}

// Dump writes the output of the recording in r to w at once, without the
// pauses: for a file or a pipe rather than a terminal. What was read before
// a malformed line is written before Dump returns the error.
func Dump(w io.Writer, r io.Reader, opts DumpOptions) error {
	rd, err := Open(r)
	if err != nil {
		return fmt.Errorf("dumping asciicast: %w", err)
	}
	bw := bufio.NewWriter(w)
	var (
		readErr error
		filter  *Filter
		buf     []byte
	)
	if !opts.Raw {
		filter = &Filter{}
	}
	for {
		ev, err := rd.Next()
		if err != nil {
			if err != io.EOF {
				readErr = fmt.Errorf("dumping asciicast: %w", err)
			}
			break
		}
		if ev.Code == CodeOutput {
			var err error
			if filter != nil {
				buf = filter.Append(buf[:0], ev.Data)
				_, err = bw.Write(buf)
			} else {
				_, err = bw.WriteString(ev.Data)
			}
			if err != nil {
				return fmt.Errorf("dumping asciicast: writing output: %w", err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("dumping asciicast: writing output: %w", err)
	}
	return readErr
}
