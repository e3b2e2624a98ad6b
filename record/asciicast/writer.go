package asciicast

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Buffering bounds.
const (
	// flushInterval is the longest an event waits in the buffer: a reader
	// of a live recording sees it at most this late, and a crash loses at
	// most this much.
	flushInterval = 100 * time.Millisecond
	// flushSize is how much buffered data is written at once without
	// waiting for the interval.
	flushSize = 64 << 10
	// maxBufKeep bounds the buffer a Writer keeps between flushes, so a
	// burst of output does not pin memory for the rest of a quiet session.
	maxBufKeep = 256 << 10
	// maxChunk bounds the bytes of data in one event. Escaping makes a byte
	// at most six ("\u001b"), so every line stays well under MaxLine.
	maxChunk = 64 << 10
)

// file is what a Writer writes to: an *os.File, or a buffer in tests.
type file interface {
	io.Writer
	Sync() error
	Close() error
	Name() string
}

// stream is the state of one direction of the terminal (output or input).
type stream struct {
	code  string
	carry []byte        // an incomplete UTF-8 sequence waiting for its rest
	last  time.Duration // time of the stream's last call
}

// Writer appends the events of one recording. It is safe for concurrent
// use; events are written in the order their calls took the Writer's lock.
type Writer struct {
	failed chan struct{} // closed at the first write or fsync failure

	mu     sync.Mutex
	f      file
	buf    []byte // whole lines not yet written
	timer  *time.Timer
	last   time.Duration // time of the last event; later events never go earlier
	out    stream
	in     stream
	size   int64
	sum    hash.Hash // SHA-256 of the bytes written to f
	sumLen int64     // how many that is
	err    error     // the first write or fsync failure; sticky
	closed bool
}

// Digest identifies the bytes of a recording file: their SHA-256 (hex)
// and how many there are. The session's event log holds it
// (record.Command.RecordingSHA256), which puts the recording under the
// log's hash chain.
type Digest struct {
	SHA256 string
	Bytes  int64
}

// Create creates the recording at path (mode 0600; an existing file is never
// overwritten, the error then wraps fs.ErrExist) and writes h as its header.
// A zero h.Version means 2; Width and Height must be 1..65535.
func Create(path string, h Header) (*Writer, error) {
	line, err := headerLine(h)
	if err != nil {
		return nil, fmt.Errorf("creating recording: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating recording: %w", err)
	}
	w, err := newWriter(f, line)
	if err != nil {
		// The file is ours and holds no valid header: leave no trace that a
		// retry under the same name would trip over.
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("creating recording: %w", err)
	}
	return w, nil
}

func headerLine(h Header) ([]byte, error) {
	if h.Version == 0 {
		h.Version = Version
	}
	if err := h.check(); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrInvalid, err)
	}
	line, err := json.Marshal(&h)
	if err != nil {
		return nil, fmt.Errorf("encoding header: %w", err)
	}
	return append(line, '\n'), nil
}

// newWriter writes the header line to f, unbuffered, so the file is a valid
// (empty) recording from the start.
func newWriter(f file, header []byte) (*Writer, error) {
	if _, err := f.Write(header); err != nil {
		return nil, fmt.Errorf("writing header to %s: %w", f.Name(), err)
	}
	w := &Writer{
		failed: make(chan struct{}),
		f:      f,
		out:    stream{code: CodeOutput},
		in:     stream{code: CodeInput},
		size:   int64(len(header)),
		sum:    sha256.New(),
		sumLen: int64(len(header)),
	}
	w.sum.Write(header)
	return w, nil
}

// Output records data sent to the terminal t after the start. A multi-byte
// UTF-8 character cut at the end of data is held back and written with the
// next Output call, so a character the network split stays whole; other
// invalid bytes become U+FFFD. Output of nothing writes nothing.
func (w *Writer) Output(t time.Duration, data []byte) error {
	return w.write(&w.out, t, data)
}

// Input records data typed at the terminal t after the start, with
// Output's UTF-8 handling (input has its own held-back bytes).
func (w *Writer) Input(t time.Duration, data []byte) error {
	return w.write(&w.in, t, data)
}

func (w *Writer) write(s *stream, t time.Duration, data []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if len(s.carry) > 0 {
		data = append(s.carry[:len(s.carry):len(s.carry)], data...) // a copy
		s.carry = s.carry[:0]
	}
	cut := incompleteTail(data)
	s.carry = append(s.carry, data[cut:]...)
	t = w.stamp(t)
	s.last = t
	return w.event(t, s.code, data[:cut])
}

// Resize records that the terminal became cols x rows t after the start.
// A size outside 1..65535 wraps ErrInvalid and records nothing.
func (w *Writer) Resize(t time.Duration, cols, rows int) error {
	if !validDim(cols) || !validDim(rows) {
		return fmt.Errorf("recording resize: %w: size %dx%d", ErrInvalid, cols, rows)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	var data [16]byte
	d := strconv.AppendInt(data[:0], int64(cols), 10)
	d = append(d, 'x')
	d = strconv.AppendInt(d, int64(rows), 10)
	return w.event(w.stamp(t), CodeResize, d)
}

// Marker records a marker named label t after the start; players use
// markers as chapters.
func (w *Writer) Marker(t time.Duration, label string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	// A label is one event however long: it comes from interlock, not the
	// terminal, but it must not produce a line the Reader refuses.
	if len(label) > maxChunk {
		n := maxChunk
		for n > maxChunk-utf8.UTFMax && !utf8.RuneStart(label[n]) {
			n--
		}
		label = label[:n]
	}
	return w.event(w.stamp(t), CodeMarker, []byte(label))
}

// stamp returns t, or the time of the previous event if t is earlier: two
// goroutines may take their times in one order and the lock in the other.
// w.mu is held.
func (w *Writer) stamp(t time.Duration) time.Duration {
	if t < w.last {
		t = w.last
	}
	w.last = t
	return t
}

// event buffers data as one or more events at t, splitting it at character
// boundaries into lines the Reader accepts. w.mu is held.
func (w *Writer) event(t time.Duration, code string, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	wasEmpty := len(w.buf) == 0
	before := len(w.buf)
	for len(data) > 0 {
		n := min(len(data), maxChunk)
		for i := n; i > n-utf8.UTFMax && i > 0 && i < len(data); i-- {
			if utf8.RuneStart(data[i]) {
				n = i
				break
			}
		}
		w.buf = appendEvent(w.buf, t, code, data[:n])
		data = data[n:]
	}
	w.size += int64(len(w.buf) - before)
	if len(w.buf) >= flushSize {
		return w.flushLocked()
	}
	if wasEmpty {
		w.armTimer()
	}
	return nil
}

// appendEvent appends the line [T, "code", "data"], T in seconds with
// microseconds, as asciinema writes it.
func appendEvent(dst []byte, t time.Duration, code string, data []byte) []byte {
	us := int64(t / time.Microsecond)
	dst = append(dst, '[')
	dst = strconv.AppendInt(dst, us/1e6, 10)
	dst = append(dst, '.')
	frac := us % 1e6
	for d := int64(1e5); d > 1 && frac < d; d /= 10 {
		dst = append(dst, '0')
	}
	dst = strconv.AppendInt(dst, frac, 10)
	dst = append(dst, ", "...)
	dst = appendString(dst, []byte(code))
	dst = append(dst, ", "...)
	dst = appendString(dst, data)
	return append(dst, ']', '\n')
}

// armTimer schedules a flush of what is buffered now. w.mu is held.
func (w *Writer) armTimer() {
	if w.timer == nil {
		w.timer = time.AfterFunc(flushInterval, w.timedFlush)
		return
	}
	w.timer.Reset(flushInterval)
}

func (w *Writer) stopTimer() {
	if w.timer != nil {
		w.timer.Stop()
	}
}

func (w *Writer) timedFlush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.err != nil {
		return
	}
	w.flushLocked() // a failure is kept in w.err and signalled by w.failed
}

// Flush writes the buffered events now.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	return w.flushLocked()
}

// Size is the length of the recording so far in bytes, buffered events
// included. The Writer does not bound it; a caller that must, stops
// recording (or ends the session) when Size passes its limit.
func (w *Writer) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// Digest is the SHA-256 and length of everything the Writer wrote to its
// file, header included: what the file holds once [Writer.Close] has
// returned. It is an error before Close, and for a Writer whose write
// failed (the file may then hold part of a write the digest cannot
// vouch for).
func (w *Writer) Digest() (Digest, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.err != nil:
		return Digest{}, fmt.Errorf("recording failed: %w", w.err)
	case !w.closed:
		return Digest{}, errors.New("recording not closed yet")
	}
	return Digest{SHA256: hex.EncodeToString(w.sum.Sum(nil)), Bytes: w.sumLen}, nil
}

// Failed is closed when a write or fsync of the recording fails; the next
// call's error says why. A handler that must not run a session unrecorded
// ends the session when it is closed.
func (w *Writer) Failed() <-chan struct{} { return w.failed }

// Close writes what is buffered, held-back bytes of a cut character as
// U+FFFD, fsyncs and closes the file. Close is idempotent: calls after the
// first return nil. A Writer whose earlier write failed closes the file and
// returns that failure.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.err != nil {
		w.stopTimer()
		return errors.Join(w.err, w.f.Close())
	}
	for _, s := range []*stream{&w.out, &w.in} {
		if len(s.carry) > 0 {
			// The character's rest never came: write what came, as the
			// replacement characters that invalid bytes always become.
			w.event(s.last, s.code, s.carry)
			s.carry = nil
		}
	}
	w.stopTimer() // after the events above, which may have armed it
	err := w.flushLocked()
	if err == nil {
		if err = w.f.Sync(); err != nil {
			err = fmt.Errorf("syncing %s: %w", w.f.Name(), err)
		}
	}
	if cerr := w.f.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("closing recording: %w", err)
	}
	return nil
}

// usable reports why no event can be recorded, if so. w.mu is held.
func (w *Writer) usable() error {
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return fmt.Errorf("recording failed earlier: %w", w.err)
	}
	return nil
}

// flushLocked writes the buffered lines in one call. w.mu is held. A
// failure is kept: a recording missing events, or ending in a partial line,
// must not grow further.
func (w *Writer) flushLocked() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.f.Write(w.buf)
	if err == nil {
		w.sum.Write(w.buf)
		w.sumLen += int64(len(w.buf))
	}
	if cap(w.buf) <= maxBufKeep {
		w.buf = w.buf[:0]
	} else {
		w.buf = nil
	}
	if err != nil {
		w.err = fmt.Errorf("writing %s: %w", w.f.Name(), err)
		close(w.failed)
		return w.err
	}
	return nil
}
