package record

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Sentinel errors.
var (
	// ErrNotFound: the store has no log for the session.
	ErrNotFound = errors.New("no such session")
	// ErrInvalidID: a session id that cannot be used as a file name.
	ErrInvalidID = errors.New("invalid session id")
	// ErrClosed: the Recorder was closed.
	ErrClosed = errors.New("recorder closed")
)

// fileExt is the extension of a session's log.
const fileExt = ".jsonl"

// maxIDLen bounds a session id; ids look like 20261129T071500Z-1a2b3c4d.
const maxIDLen = 128

// Store is a folder of session logs, one <id>.jsonl per session.
type Store struct {
	dir string

	// Strict makes every Recorder created afterwards fsync each event before
	// Command returns, so that a command forwarded after Command returned
	// nil is on disk even if the host crashes right after; it costs an fsync
	// per command. Set it before the Store is shared.
	Strict bool

	// FlushInterval bounds how long a command event waits in memory before
	// it is written (without Strict): events are written in batches, once
	// the oldest has waited this long or 256 are queued, and at the
	// session's end. Zero means [DefaultFlushInterval]. A gateway that
	// crashes loses at most this much of each session's most recent
	// events; a host crash may lose what the OS had not yet written.
	FlushInterval time.Duration

	now      func() time.Time // test seam for the time of command and end events
	readOnly bool             // from OpenStoreReadOnly
	// openLog creates a new log file; a test seam for a failing disk.
	openLog func(path string) (*os.File, error)
}

func createLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
}

// OpenStore opens the store in dir, creating dir (0700) when it is missing.
func OpenStore(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("opening recording store: no folder given")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening recording store: %w", err)
	}
	return &Store{dir: dir, now: time.Now, openLog: createLog}, nil
}

// OpenStoreReadOnly opens the store in dir for reading: it does not create
// dir, a missing dir is a store without sessions, and Create fails.
func OpenStoreReadOnly(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("opening recording store: no folder given")
	}
	return &Store{dir: dir, now: time.Now, readOnly: true}, nil
}

// Dir is the store's folder.
func (s *Store) Dir() string { return s.dir }

// ValidID reports whether id can name a session in a store: 1 to 128 of
// A-Z a-z 0-9 . _ -, not starting with a dot and without "..".
func ValidID(id string) bool {
	return len(id) <= maxIDLen && plainFileName(id)
}

func (s *Store) path(id string) (string, error) {
	if !ValidID(id) {
		return "", fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	return filepath.Join(s.dir, id+fileExt), nil
}

// Create starts the log of session id (mode 0600; an existing log is never
// overwritten) and writes its session_start event, stamped now. When that
// event cannot be written (a full disk), Create removes the file again: a
// session that failed to start leaves no log.
func (s *Store) Create(id string, start Start, now time.Time) (*Recorder, error) {
	path, err := s.path(id)
	if err != nil {
		return nil, fmt.Errorf("creating recording: %w", err)
	}
	if s.readOnly {
		return nil, fmt.Errorf("creating recording: the store in %s is open read-only", s.dir)
	}
	openLog := s.openLog
	if openLog == nil {
		openLog = createLog
	}
	f, err := openLog(path)
	if err != nil {
		return nil, fmt.Errorf("creating recording: %w", err)
	}
	r := &Recorder{
		f:          f,
		id:         id,
		strict:     s.Strict,
		flushEvery: s.FlushInterval,
		now:        s.now,
		started:    now,
		failed:     make(chan struct{}),
		hash:       sha256.New(),
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.flushEvery <= 0 {
		r.flushEvery = DefaultFlushInterval
	}
	// The start event is written at once: a session's log exists, with who
	// opened it, before anything of the session is relayed.
	r.enqueue(Event{Type: EventStart, Time: now.UTC(), Start: &start, Truncated: capStrings("start", &start)})
	err = r.flushLocked()
	if err == nil && r.strict {
		// Make the new file's name durable too, not only its content.
		err = syncDir(s.dir)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("recording session start: %w", err), f.Close(), os.Remove(path))
	}
	return r, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

func (s *Store) open(id string) (*os.File, error) {
	path, err := s.path(id)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return f, err
}

// Events returns every event of session id's log in order. A malformed line
// is an error naming its line number; a partial last line (a write cut
// short) is left out.
func (s *Store) Events(id string) ([]Event, error) {
	f, err := s.open(id)
	if err != nil {
		return nil, fmt.Errorf("reading recording: %w", err)
	}
	defer f.Close()
	events, err := readEvents(f)
	if err != nil {
		return nil, fmt.Errorf("reading recording %s: %w", id, err)
	}
	return events, nil
}

// Verify checks the hash chain of session id's log, and every terminal
// recording its verified events name against the length and SHA-256 the
// log holds for it (see [VerifyResult.Recordings]). It returns an error
// only when the log or a recording cannot be read; tampering is reported
// in the result.
func (s *Store) Verify(id string) (VerifyResult, error) {
	f, err := s.open(id)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verifying recording: %w", err)
	}
	defer f.Close()
	res, err := verify(f, id)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verifying recording %s: %w", id, err)
	}
	for i := range res.Recordings {
		rc := &res.Recordings[i]
		if err := s.checkRecording(rc); err != nil {
			return VerifyResult{}, fmt.Errorf("verifying recording %s: %w", id, err)
		}
		if res.OK && (rc.Status == RecordingMissing || rc.Status == RecordingAltered) {
			res.OK, res.Complete = false, false
			res.Problem = fmt.Sprintf("line %d: terminal recording %q %s", rc.Line, rc.Name, rc.Problem)
		}
	}
	return res, nil
}

// checkRecording sets rc's Status (and Problem) from the file it names.
func (s *Store) checkRecording(rc *RecordingCheck) error {
	if !plainFileName(rc.Name) {
		rc.Status, rc.Problem = RecordingAltered, "is not a file name the gateway writes"
		return nil
	}
	f, size, problem, err := s.openRecording(rc.Name)
	switch {
	case err != nil:
		return err
	case problem != "":
		rc.Status, rc.Problem = RecordingMissing, problem
		return nil
	}
	defer f.Close()
	switch {
	case rc.SHA256 == "":
		rc.Status = RecordingUncovered
		return nil
	case size != rc.Bytes:
		rc.Status = RecordingAltered
		rc.Problem = fmt.Sprintf("was altered: it has %d bytes, the log says %d", size, rc.Bytes)
		return nil
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, rc.Bytes+1))
	if err != nil {
		return fmt.Errorf("checking %s: %w", rc.Name, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != rc.Bytes || sum != rc.SHA256 {
		rc.Status = RecordingAltered
		rc.Problem = fmt.Sprintf("was altered: its sha256 is %s, the log says %s", sum, rc.SHA256)
		return nil
	}
	rc.Status = RecordingIntact
	return nil
}

// openRecording opens the terminal recording name (a plain file name) in
// the store without following a link, which would point outside it, and
// without blocking on a FIFO, and checks once it is open that it is a
// regular file: a name swapped for something else is not read. problem
// says why it is not a recording to read (f nil); err is any other
// failure.
func (s *Store) openRecording(name string) (f *os.File, size int64, problem string, err error) {
	f, err = os.OpenFile(filepath.Join(s.dir, name), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, 0, "is missing (deleted or renamed)", nil
	case errors.Is(err, syscall.ELOOP):
		return nil, 0, "is not a regular file but a symbolic link", nil
	case err != nil:
		return nil, 0, "", fmt.Errorf("opening %s: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, "", fmt.Errorf("opening %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Sprintf("is not a regular file but %s", fi.Mode().Type()), nil
	}
	return f, fi.Size(), "", nil
}

// ReadRecording reads the terminal recording rc names (from Verify), as
// Verify checked it: a regular file in the store and, when the log holds
// its hash, with that length and SHA-256. It reads the file once, so what
// it returns is what it checked, whatever happens to the file after.
func (s *Store) ReadRecording(rc RecordingCheck) ([]byte, error) {
	if !plainFileName(rc.Name) {
		return nil, fmt.Errorf("terminal recording %q is not a file name the gateway writes", rc.Name)
	}
	f, _, problem, err := s.openRecording(rc.Name)
	switch {
	case err != nil:
		return nil, err
	case problem != "":
		return nil, fmt.Errorf("terminal recording %s %s, so it is not read", rc.Name, problem)
	}
	defer f.Close()
	r := io.Reader(f)
	if rc.SHA256 != "" {
		r = io.LimitReader(f, rc.Bytes+1) // one byte more shows a longer file
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading terminal recording %s: %w", rc.Name, err)
	}
	if rc.SHA256 == "" {
		return data, nil
	}
	if sum := sha256.Sum256(data); int64(len(data)) != rc.Bytes || hex.EncodeToString(sum[:]) != rc.SHA256 {
		return nil, fmt.Errorf("terminal recording %s changed since it was verified: it does not have the length and sha256 its log holds", rc.Name)
	}
	return data, nil
}

// plainFileName reports a name of a file in the store's folder itself:
// 1 to 255 of A-Z a-z 0-9 . _ -, not starting with a dot and without
// "..", as the gateway names recordings (<session id>.<n>.cast).
func plainFileName(name string) bool {
	if name == "" || len(name) > 255 || name[0] == '.' || strings.Contains(name, "..") {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Summary is one session as [Store.List] shows it.
type Summary struct {
	ID      string
	Started time.Time // the session_start event's time
	Start   Start     // who opened the session and where it goes
	// Ended is the session_end event's time; zero when the log has none.
	Ended  time.Time
	Reason string // why the session ended, from session_end
	// Commands is the number of command events in the log, Denied of those
	// the ones with decision "deny": for a session that ended, as its
	// session_end says (List reads only a log's first and last lines then).
	Commands int64
	Denied   int64
	// Incomplete is set when the log has no session_end: the session is
	// still running, or its gateway stopped before it ended, or the log is
	// unreadable from some line on. List does not verify the chain; see
	// [Store.Verify].
	Incomplete bool
}

// List summarises every session in the store, newest first; none when the
// store's folder does not exist. Files that are not session logs are
// skipped. A log ending in a whole session_end line is summarised from its
// first and last lines (the counts are session_end's), so listing costs
// two short reads per session, not a read of every line. Any other log is
// read line by line; one that stops parsing at some line is summarised up
// to that line and marked Incomplete, so one damaged log does not hide the
// others.
func (s *Store) List() ([]Summary, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []Summary{}, nil // no session recorded yet
	}
	if err != nil {
		return nil, fmt.Errorf("listing recordings: %w", err)
	}
	sums := []Summary{}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), fileExt)
		if !ok || !ValidID(id) || !e.Type().IsRegular() {
			continue
		}
		sum, err := s.summarise(id)
		if errors.Is(err, ErrNotFound) {
			continue // removed since ReadDir
		}
		if err != nil {
			return nil, fmt.Errorf("listing recordings: %w", err)
		}
		sums = append(sums, sum)
	}
	slices.SortFunc(sums, func(a, b Summary) int {
		return cmp.Or(b.Started.Compare(a.Started), cmp.Compare(b.ID, a.ID))
	})
	return sums, nil
}

func (s *Store) summarise(id string) (Summary, error) {
	f, err := s.open(id)
	if err != nil {
		return Summary{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Summary{}, fmt.Errorf("reading %s: %w", id, err)
	}
	sum, ok, err := summariseEnds(f, fi.Size(), id)
	if err != nil || ok {
		return sum, err
	}
	return summariseAll(io.NewSectionReader(f, 0, fi.Size()), id)
}

// summariseEnds summarises a log from its first and last lines alone, the
// common case of a session that ended: session_end carries the counts of
// commands and denials. ok is false when the log does not end with a whole
// session_end line after a session_start one (a session still open, a
// crash, a damaged log); summariseAll then reads every line.
func summariseEnds(r io.ReaderAt, size int64, id string) (sum Summary, ok bool, err error) {
	first, err := bufio.NewReader(io.NewSectionReader(r, 0, size)).ReadBytes('\n')
	if err == io.EOF {
		return Summary{}, false, nil
	}
	if err != nil {
		return Summary{}, false, fmt.Errorf("reading %s: %w", id, err)
	}
	last, err := lastLine(r, size, int64(len(first)))
	if err != nil || last == nil {
		return Summary{}, false, err
	}
	start, err := parseEvent(first[:len(first)-1])
	if err != nil || start.Type != EventStart {
		return Summary{}, false, nil
	}
	end, err := parseEvent(last)
	if err != nil || end.Type != EventEnd {
		return Summary{}, false, nil
	}
	return Summary{
		ID: id, Started: start.Time, Start: *start.Start,
		Ended: end.Time, Reason: end.End.Reason, Commands: end.End.Commands, Denied: end.End.Denied,
	}, true, nil
}

// lastLine returns the last line of r (without its newline) when r ends
// with a newline and that line starts at from or later; else nil. It reads
// backwards from the end, a block at a time.
func lastLine(r io.ReaderAt, size, from int64) ([]byte, error) {
	const block = 16 << 10
	var tail []byte // the bytes from at to size
	at := size
	for {
		if i := bytes.LastIndexByte(tail[:max(len(tail)-1, 0)], '\n'); i >= 0 {
			return tail[i+1 : len(tail)-1], nil
		}
		if at <= from {
			break
		}
		n := min(block, at-from)
		buf := make([]byte, n, int(n)+len(tail))
		if _, err := r.ReadAt(buf, at-n); err != nil {
			return nil, fmt.Errorf("reading the last line: %w", err)
		}
		tail = append(buf, tail...)
		at -= n
		if len(tail) > 0 && tail[len(tail)-1] != '\n' {
			return nil, nil // a partial last line
		}
	}
	if len(tail) == 0 {
		return nil, nil
	}
	return tail[:len(tail)-1], nil // the line right after the first
}

// summariseAll summarises a log by reading every line.
func summariseAll(r io.Reader, id string) (Summary, error) {
	sum := Summary{ID: id, Incomplete: true}
	var broken bool
	err := eachLine(r, func(l line) error {
		if broken {
			return nil
		}
		ev, err := parseEvent(l.text)
		if err != nil {
			broken = true
			return nil
		}
		switch ev.Type {
		case EventStart:
			if sum.Started.IsZero() {
				sum.Started, sum.Start = ev.Time, *ev.Start
			}
		case EventCommand:
			sum.Commands++
			if ev.Command.Decision == "deny" {
				sum.Denied++
			}
		case EventEnd:
			sum.Ended, sum.Reason = ev.Time, ev.End.Reason
		}
		return nil
	})
	if err != nil {
		return Summary{}, fmt.Errorf("reading %s: %w", id, err)
	}
	if broken || sum.Ended.IsZero() {
		sum.Ended, sum.Reason = time.Time{}, ""
	} else {
		sum.Incomplete = false
	}
	return sum, nil
}
