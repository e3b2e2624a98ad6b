package record

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
)

// seal sets ev.Hash from ev.Prev and the rest of the event and returns the
// event's line, newline included: exactly json.Marshal of the sealed event.
func seal(ev *Event) ([]byte, error) { return sealAppend(nil, ev, sha256.New()) }

// sealAppend is seal appending the line to dst, hashing with h (a SHA-256,
// reset here: a Recorder reuses one). Hash is the event's last field, so
// the line is the hashed body with its empty hash filled in: one encoding
// per event instead of two, which matters on the gateway's hot path.
func sealAppend(dst []byte, ev *Event, h hash.Hash) ([]byte, error) {
	ev.Hash = ""
	start := len(dst)
	dst, err := appendEvent(dst, ev)
	if err != nil {
		return dst[:start], fmt.Errorf("encoding event: %w", err)
	}
	// Prev, and then the sum, go through dst too: a string or an array
	// handed to a hash.Hash would be copied to the heap.
	end := len(dst)
	dst = append(dst, ev.Prev...)
	h.Reset()
	h.Write(dst[end:])
	h.Write(dst[start:end])
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(dst[:end])[end:])
	dst = dst[:end]
	const emptyHash = `"hash":""}`
	if !bytes.HasSuffix(dst[start:], []byte(emptyHash)) {
		ev.Hash = hex.EncodeToString(sum[:])
		line, err := json.Marshal(ev)
		if err != nil {
			return dst[:start], fmt.Errorf("encoding event: %w", err)
		}
		return append(append(dst[:start], line...), '\n'), nil
	}
	dst = dst[:len(dst)-2] // up to `"hash":"`
	at := len(dst)
	dst = hex.AppendEncode(dst, sum[:])
	ev.Hash = string(dst[at:])
	return append(dst, '"', '}', '\n'), nil
}

// chainHash is hex(sha256(Prev || JSON of ev with Hash "")). It leaves ev as
// it found it.
func chainHash(ev *Event) (string, error) {
	saved := ev.Hash
	ev.Hash = ""
	body, err := json.Marshal(ev)
	ev.Hash = saved
	if err != nil {
		return "", fmt.Errorf("encoding event: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(ev.Prev))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lineHash is the chain hash of a stored line whose hash value is hash:
// hex(sha256(prev || the line with that value emptied)). The bytes hashed
// are the bytes stored, so a line verifies exactly as it was written. ok is
// false when the line does not end with that hash.
func lineHash(prev string, text []byte, hash string) (sum string, ok bool) {
	body, ok := bytes.CutSuffix(text, []byte(hash+`"}`))
	if !ok || !bytes.HasSuffix(body, []byte(`,"hash":"`)) {
		return "", false
	}
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(body)
	h.Write([]byte(`"}`))
	return hex.EncodeToString(h.Sum(nil)), true
}

// legacyReplacement returns text with every \ufffd escape written out as
// the character itself. Logs written before free text was stored
// reversibly (see wireText) have \ufffd where the text had a byte that was
// not UTF-8; such a line is what that writer produced for the event it
// decodes to, and its hash covers the line as stored, so it still
// verifies.
func legacyReplacement(text []byte) []byte {
	const esc = `\ufffd`
	if !bytes.Contains(text, []byte(esc)) {
		return text
	}
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); {
		if text[i] != '\\' || i+1 == len(text) {
			out = append(out, text[i])
			i++
			continue
		}
		// A backslash always starts an escape in JSON: \ufffd, or two bytes
		// copied as they are (\u's hex digits follow as plain bytes).
		if bytes.HasPrefix(text[i:], []byte(esc)) {
			out = append(out, "\uFFFD"...)
			i += len(esc)
			continue
		}
		out = append(out, text[i], text[i+1])
		i += 2
	}
	return out
}

// line is one line of a log as read back.
type line struct {
	n    int    // 1-based
	text []byte // without the newline
	// partial is set for a last line that has no newline: the trace of a
	// write cut short by a crash or a full disk, since every event is written
	// with its newline in one call.
	partial bool
}

// eachLine calls fn for every line of r, without a length limit.
func eachLine(r io.Reader, fn func(line) error) error {
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		text, err := br.ReadBytes('\n')
		if len(text) > 0 {
			l := line{n: n, text: bytes.TrimSuffix(text, []byte("\n"))}
			l.partial = err == io.EOF
			if ferr := fn(l); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading line %d: %w", n, err)
		}
	}
}

// errMalformed marks a line that is not an event.
var errMalformed = errors.New("malformed event")

// parseEvent decodes one line and checks that it is an event of a known type
// with the part its type calls for.
func parseEvent(text []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(text, &ev); err != nil {
		return Event{}, fmt.Errorf("%w: %w", errMalformed, err)
	}
	var ok bool
	switch ev.Type {
	case EventStart:
		ok = ev.Start != nil && ev.Command == nil && ev.End == nil && ev.Result == nil
	case EventCommand:
		ok = ev.Command != nil && ev.Start == nil && ev.End == nil && ev.Result == nil
	case EventResult:
		ok = ev.Result != nil && ev.Start == nil && ev.Command == nil && ev.End == nil
	case EventEnd:
		ok = ev.End != nil && ev.Start == nil && ev.Command == nil && ev.Result == nil
	default:
		return Event{}, fmt.Errorf("%w: unknown type %q", errMalformed, ev.Type)
	}
	if !ok {
		return Event{}, fmt.Errorf("%w: %s event without exactly its own part", errMalformed, ev.Type)
	}
	return ev, nil
}

// readEvents parses every line of r. A partial last line that does not parse
// is left out: it is an event whose write was cut short, not a malformed one.
func readEvents(r io.Reader) ([]Event, error) {
	var events []Event
	err := eachLine(r, func(l line) error {
		ev, err := parseEvent(l.text)
		if err != nil {
			if l.partial {
				return nil
			}
			return fmt.Errorf("line %d: %w", l.n, err)
		}
		events = append(events, ev)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return events, nil
}

// VerifyResult is what [Store.Verify] found.
type VerifyResult struct {
	// Events is the number of events that verified, from the first line on.
	Events int
	// OK is true when those events are an unbroken chain and nothing follows
	// them but, at most, a partial last line. An empty log, or one holding
	// only a partial first line, is OK with no events: what a gateway that
	// stopped while creating it leaves (see the package comment).
	OK bool
	// Complete is true when the chain ends with session_end. A log that is OK
	// but not Complete belongs to a session that is still running, or to one
	// whose gateway stopped before its end, or was cut at the end.
	Complete bool
	// Problem names the line and what is wrong with it: "line 3: hash
	// mismatch", "line 4: seq 5 after 3", "line 2: prev does not match line
	// 1". When OK but not Complete it says why the log is incomplete. Empty
	// when OK and Complete.
	Problem string
	// Recordings are the terminal recordings (.cast files) that the
	// verified events name, in the order they are named, with what
	// [Store.Verify] found of each. One that is missing or does not match
	// the hash the log holds makes the result neither OK nor Complete, and
	// Problem names it.
	Recordings []RecordingCheck `json:",omitempty"`
}

// RecordingCheck is one terminal recording a log names, as [Store.Verify]
// found it.
type RecordingCheck struct {
	Name string // the file, in the store's folder
	Line int    // the line of the command event that names it
	// SHA256 and Bytes are what the log says the file holds (from the
	// command event or its result); empty and 0 when it does not say.
	SHA256 string `json:",omitempty"`
	Bytes  int64  `json:",omitempty"`
	// Status is RecordingIntact, RecordingUncovered, RecordingMissing or
	// RecordingAltered.
	Status string
	// Problem says what is wrong with a missing or altered recording.
	Problem string `json:",omitempty"`
}

// Statuses of a [RecordingCheck].
const (
	// RecordingIntact: the file is there and has the length and SHA-256
	// the log holds.
	RecordingIntact = "intact"
	// RecordingUncovered: the file is there but the log holds no hash of
	// it, so nothing shows whether it was altered: a log written before
	// recordings were hashed, a command still running (with strict
	// recording its command event is written before the recording
	// ends), or a recording whose writing failed.
	RecordingUncovered = "uncovered"
	// RecordingMissing: no such file, or one that is not a regular file
	// (a gateway names a recording only once it created the file).
	RecordingMissing = "missing"
	// RecordingAltered: the file does not have the length or SHA-256 the
	// log holds, or its name is not one the gateway writes.
	RecordingAltered = "altered"
)

// verify checks the chain of the log of session id read from r.
func verify(r io.Reader, id string) (VerifyResult, error) {
	var (
		res     VerifyResult
		prev    Event
		stopped bool // at the first problem
		// casts indexes res.Recordings by the Seq of the command event
		// naming each, for the result that holds its hash.
		casts map[uint64]int
	)
	fail := func(n int, format string, args ...any) {
		res.OK = false
		res.Complete = false
		res.Problem = fmt.Sprintf("line %d: ", n) + fmt.Sprintf(format, args...)
		stopped = true
	}
	err := eachLine(r, func(l line) error {
		if stopped {
			return nil
		}
		ev, err := parseEvent(l.text)
		if err != nil {
			if l.partial && !res.Complete {
				// A write cut short; on line 1, that of session_start.
				res.OK = true
				res.Problem = fmt.Sprintf("line %d: partial last line left out", l.n)
				stopped = true
				return nil
			}
			fail(l.n, "%s", err)
			return nil
		}
		if res.Complete {
			fail(l.n, "%s after session_end", ev.Type)
			return nil
		}
		canonical, err := json.Marshal(&ev)
		if err != nil {
			fail(l.n, "cannot encode event: %s", err)
			return nil
		}
		if !bytes.Equal(canonical, l.text) && !bytes.Equal(canonical, legacyReplacement(l.text)) {
			fail(l.n, "not in canonical form")
			return nil
		}
		if want, ok := lineHash(ev.Prev, l.text, ev.Hash); !ok || ev.Hash != want {
			fail(l.n, "hash mismatch")
			return nil
		}
		if res.Events == 0 {
			switch {
			case ev.Seq != 1:
				fail(l.n, "first seq is %d, want 1", ev.Seq)
			case ev.Prev != "":
				fail(l.n, "first event has a prev")
			case ev.Type != EventStart:
				fail(l.n, "first event is %s, want %s", ev.Type, EventStart)
			}
		} else {
			switch {
			case ev.Seq != prev.Seq+1:
				fail(l.n, "seq %d after %d", ev.Seq, prev.Seq)
			case ev.Prev != prev.Hash:
				fail(l.n, "prev does not match line %d", l.n-1)
			case ev.Type == EventStart:
				fail(l.n, "second %s", EventStart)
			}
		}
		if stopped {
			return nil
		}
		if ev.Session != id {
			fail(l.n, "session %q in the log of %q", ev.Session, id)
			return nil
		}
		res.Events++
		res.OK = true
		res.Complete = ev.Type == EventEnd
		prev = ev
		switch {
		case ev.Type == EventCommand && ev.Command.Recording != "":
			c := ev.Command
			if casts == nil {
				casts = make(map[uint64]int)
			}
			casts[ev.Seq] = len(res.Recordings)
			res.Recordings = append(res.Recordings, RecordingCheck{Name: c.Recording, Line: l.n,
				SHA256: c.RecordingSHA256, Bytes: c.RecordingBytes})
		case ev.Type == EventResult && ev.Result.RecordingSHA256 != "":
			// The first hash given for a recording is the one checked: a
			// writer gives one, in the command event or in its result.
			if i, ok := casts[ev.Result.Of]; ok && res.Recordings[i].SHA256 == "" {
				res.Recordings[i].SHA256, res.Recordings[i].Bytes = ev.Result.RecordingSHA256, ev.Result.RecordingBytes
			}
		}
		return nil
	})
	if err != nil {
		return VerifyResult{}, err
	}
	switch {
	case res.Events == 0 && !stopped:
		// The trace of a gateway that stopped between creating the log and
		// writing its first line. Emptying a log by hand looks the same,
		// but so does deleting it: neither is something the chain can show.
		res.OK = true
		res.Problem = "empty log: its session_start was never written"
	case res.OK && !res.Complete && res.Problem == "":
		res.Problem = fmt.Sprintf("no %s after line %d", EventEnd, res.Events)
	}
	return res, nil
}
