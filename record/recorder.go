package record

import (
	"errors"
	"fmt"
	"hash"
	"math"
	"os"
	"sync"
	"time"
)

// Batching bounds: a Recorder writes its queued events in the background
// once the first of them has waited FlushInterval, or once maxQueued are
// queued, whichever comes first; at four times that the caller writes them
// itself.
const (
	DefaultFlushInterval = 100 * time.Millisecond
	maxQueued            = 256
	// maxBufKeep bounds the encoding buffers kept for the next batch (in
	// batchBuffers); a larger one, from a burst of large statements, is
	// left to the garbage collector.
	maxBufKeep = 256 << 10
)

// batchBuffers and eventQueues hold the Recorders' encoding buffers and
// queues: a Recorder takes them for a batch and gives them back when the
// batch is written, so that an idle session, of the many a gateway holds
// open, holds neither.
var (
	batchBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}
	eventQueues  = sync.Pool{New: func() any { q := make([]Event, 0, 16); return &q }}
)

// Recorder appends the events of one session to its log. It is safe for
// concurrent use; events are numbered in the order their calls took the
// Recorder's lock.
//
// Command events are queued and written in batches (see
// [Store.FlushInterval]): encoding, hashing and the write(2) happen off the
// caller's path, once per batch. With [Store.Strict] every event is written
// and fsynced before Command returns instead.
type Recorder struct {
	strict     bool
	flushEvery time.Duration
	now        func() time.Time
	started    time.Time
	failed     chan struct{} // closed at the first write or fsync failure

	mu       sync.Mutex
	f        *os.File
	id       string
	seq      uint64
	prev     string
	queue    []Event   // stamped, not yet numbered, encoded or written
	queuep   *[]Event  // where queue came from (eventQueues); nil while nothing is queued
	hash     hash.Hash // the chain's SHA-256; reused
	timer    *time.Timer
	commands int64
	denied   int64
	err      error // the first write or fsync failure; sticky
	closed   bool
}

// ID is the session id of the log.
func (r *Recorder) ID() string { return r.id }

// Command appends a command event stamped with the current time. It returns
// an error when the Recorder is closed or an earlier write failed. Without
// [Store.Strict] the event reaches the file within the flush interval (or at
// [Recorder.Close], or [Recorder.Flush]); a write failure then shows in
// [Recorder.Failed] and in the next call's error. With Strict the event is on
// disk when Command returns nil.
func (r *Recorder) Command(c Command) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	c.DurationMS = finite(c.DurationMS)
	ev := Event{Type: EventCommand, Time: r.now().UTC(), Command: &c, Truncated: capCommand(&c)}
	if r.strict {
		r.enqueue(ev)
		if err := r.flushLocked(); err != nil {
			return fmt.Errorf("recording command: %w", err)
		}
	} else {
		r.enqueue(ev)
		switch {
		case len(r.queue) >= maxQueued*4:
			// The background flush is not keeping up: the caller waits for
			// the write, which bounds the memory a busy session holds.
			if err := r.flushLocked(); err != nil {
				return fmt.Errorf("recording command: %w", err)
			}
		case len(r.queue) == maxQueued:
			r.flushSoon(0) // a full batch: written now, but not by the caller
		case len(r.queue) == 1:
			r.flushSoon(r.flushEvery)
		}
	}
	r.commands++
	if c.Decision == "deny" {
		r.denied++
	}
	return nil
}

// Strict reports whether each event is on disk when its call returns
// ([Store.Strict]): a handler then records a command with Begin before
// forwarding it, and its outcome with Result.
func (r *Recorder) Strict() bool { return r.strict }

// Begin appends a command event whose outcome is not known yet and returns
// its Seq, for the Result that follows. It is meant for strict recording:
// the event is on disk when Begin returns nil, so a command forwarded only
// then is never unrecorded. Without Strict it is an error.
func (r *Recorder) Begin(c Command) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.strict {
		return 0, errors.New("recording command: Begin needs strict recording")
	}
	if err := r.usable(); err != nil {
		return 0, err
	}
	r.enqueue(Event{Type: EventCommand, Time: r.now().UTC(), Command: &c, Truncated: capCommand(&c)})
	if err := r.flushLocked(); err != nil {
		return 0, fmt.Errorf("recording command: %w", err)
	}
	r.commands++
	if c.Decision == "deny" {
		r.denied++
	}
	return r.seq, nil
}

// Result appends the outcome of the command event of (a Begin's Seq).
func (r *Recorder) Result(res Result) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	res.DurationMS = finite(res.DurationMS)
	r.enqueue(Event{Type: EventResult, Time: r.now().UTC(), Result: &res, Truncated: capStrings("result", &res)})
	if err := r.flushLocked(); err != nil {
		return fmt.Errorf("recording a result: %w", err)
	}
	return nil
}

// enqueue appends ev to the batch, taking a queue from eventQueues for a
// new one. r.mu is held.
func (r *Recorder) enqueue(ev Event) {
	if r.queuep == nil {
		r.queuep = eventQueues.Get().(*[]Event)
		r.queue = (*r.queuep)[:0]
	}
	r.queue = append(r.queue, ev)
}

// flushSoon schedules a flush of what is queued in d, on the timer's own
// goroutine: encoding, hashing and the write happen off the caller's path.
// r.mu is held.
func (r *Recorder) flushSoon(d time.Duration) {
	if r.timer == nil {
		r.timer = time.AfterFunc(d, r.timedFlush)
		return
	}
	r.timer.Reset(d)
}

func (r *Recorder) timedFlush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.err != nil {
		return
	}
	r.flushLocked() // a failure is kept in r.err and signalled by r.failed
}

// Flush writes the queued events now. It returns the Recorder's write
// failure, if any.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	return r.flushLocked()
}

// Failed is closed when a write or fsync of the log fails; [Recorder.Err]
// then says why. A handler that must not run commands unrecorded ends the
// session when it is closed.
func (r *Recorder) Failed() <-chan struct{} { return r.failed }

// Err is the write or fsync failure that closed [Recorder.Failed], or nil.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
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
	if r.timer != nil {
		r.timer.Stop()
	}
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
	r.enqueue(Event{Type: EventEnd, Time: now.UTC(), End: &end, Truncated: capStrings("end", &end)})
	err := r.flushLocked()
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

// flushLocked chains the queued events and writes them in one call (and
// fsyncs them when strict). r.mu is held (or r not yet shared). A failure
// is kept: a log missing an event, or ending in a partial one, must not
// grow further.
func (r *Recorder) flushLocked() error {
	if r.err != nil {
		return r.err
	}
	if len(r.queue) == 0 {
		return nil
	}
	bp := batchBuffers.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxBufKeep {
			*bp = (*bp)[:0]
			batchBuffers.Put(bp)
		}
	}()
	buf := (*bp)[:0]
	seq, prev := r.seq, r.prev
	for i := range r.queue {
		ev := &r.queue[i]
		ev.Session = r.id
		ev.Seq = seq + 1
		ev.Prev = prev
		var err error
		if buf, err = sealAppend(buf, ev, r.hash); err != nil {
			// Cannot happen for the events the Recorder builds (finite
			// numbers, strings); if it does, nothing of the batch is
			// written and the log stays intact but ends here.
			return r.fail(err)
		}
		seq, prev = ev.Seq, ev.Hash
	}
	*bp = buf // given back (or not) by the deferred function, after the write
	clear(r.queue)
	*r.queuep = r.queue[:0]
	eventQueues.Put(r.queuep)
	r.queue, r.queuep = nil, nil
	if _, err := r.f.Write(buf); err != nil {
		return r.fail(fmt.Errorf("writing %s: %w", r.f.Name(), err))
	}
	if r.strict {
		if err := r.f.Sync(); err != nil {
			return r.fail(fmt.Errorf("syncing %s: %w", r.f.Name(), err))
		}
	}
	r.seq, r.prev = seq, prev
	return nil
}

// fail makes err sticky and signals it. r.mu is held.
func (r *Recorder) fail(err error) error {
	if r.err == nil {
		r.err = err
		close(r.failed)
	}
	return r.err
}
