package record

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"
)

// Recorder appends the events of one session to its log. It is safe for
// concurrent use; events are numbered in the order their calls took the
// Recorder's lock.
type Recorder struct {
	strict  bool
	now     func() time.Time
	started time.Time

	mu       sync.Mutex
	f        *os.File
	id       string
	seq      uint64
	prev     string
	commands int64
	denied   int64
	err      error // the first write or fsync failure; sticky
	closed   bool
}

// ID is the session id of the log.
func (r *Recorder) ID() string { return r.id }

// Command appends a command event stamped with the current time. With
// [Store.Strict] the event is on disk when Command returns nil.
func (r *Recorder) Command(c Command) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	c.DurationMS = finite(c.DurationMS)
	if err := r.append(&Event{Type: EventCommand, Time: r.now().UTC(), Command: &c}); err != nil {
		return fmt.Errorf("recording command: %w", err)
	}
	r.commands++
	if c.Decision == "deny" {
		r.denied++
	}
	return nil
}

// Close appends the session_end event, fsyncs and closes the log. When end
// leaves Commands, Denied or Seconds zero, Close fills them from what the
// Recorder recorded. Close is idempotent: calls after the first return nil.
// A Recorder whose earlier write failed writes no end event, closes the file
// and returns that failure.
func (r *Recorder) Close(end End) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.err != nil {
		return errors.Join(r.err, r.f.Close())
	}
	now := r.now()
	if end.Commands == 0 {
		end.Commands = r.commands
	}
	if end.Denied == 0 {
		end.Denied = r.denied
	}
	if end.Seconds == 0 && !r.started.IsZero() {
		end.Seconds = now.Sub(r.started).Seconds()
	}
	end.Seconds = finite(end.Seconds)
	err := r.append(&Event{Type: EventEnd, Time: now.UTC(), End: &end})
	if err == nil && !r.strict { // strict has synced already
		if err = r.f.Sync(); err != nil {
			err = fmt.Errorf("syncing %s: %w", r.f.Name(), err)
		}
	}
	if cerr := r.f.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("recording session end: %w", err)
	}
	return nil
}

// finite turns NaN and infinities, which JSON cannot carry, into 0.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// usable reports why no event can be appended, if so. r.mu is held.
func (r *Recorder) usable() error {
	if r.closed {
		return ErrClosed
	}
	if r.err != nil {
		return fmt.Errorf("recording failed earlier: %w", r.err)
	}
	return nil
}

// append chains ev to the log and writes it in one call. r.mu is held (or r
// not yet shared). A failure is kept: a log missing an event, or ending in a
// partial one, must not grow further.
func (r *Recorder) append(ev *Event) error {
	ev.Session = r.id
	ev.Seq = r.seq + 1
	ev.Prev = r.prev
	line, err := seal(ev)
	if err != nil {
		// Nothing was written: the log is intact and the caller may carry on.
		return err
	}
	if _, err := r.f.Write(line); err != nil {
		r.err = fmt.Errorf("writing %s: %w", r.f.Name(), err)
		return r.err
	}
	if r.strict {
		if err := r.f.Sync(); err != nil {
			r.err = fmt.Errorf("syncing %s: %w", r.f.Name(), err)
			return r.err
		}
	}
	r.seq, r.prev = ev.Seq, ev.Hash
	return nil
}
