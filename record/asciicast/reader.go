package asciicast

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Reader reads the events of a recording.
type Reader struct {
	br     *bufio.Reader
	header Header
	line   int    // number of the last line read
	buf    []byte // the line being read; reused
	err    error  // returned from every later Next
}

// Open reads the header of the recording in r. It wraps ErrVersion when the
// header's version is not 2 and ErrMalformed when the first line is not a
// header.
func Open(r io.Reader) (*Reader, error) {
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10)}
	text, _, err := rd.readLine()
	if err == io.EOF {
		return nil, fmt.Errorf("reading asciicast: %w: empty file, no header", ErrMalformed)
	}
	if err != nil {
		return nil, fmt.Errorf("reading asciicast: %w", err)
	}
	if err := parseHeader(text, &rd.header); err != nil {
		return nil, fmt.Errorf("reading asciicast: line 1: %w", err)
	}
	return rd, nil
}

func parseHeader(text []byte, h *Header) error {
	if string(bytes.TrimSpace(text)) == "{" {
		// Version 1 is one JSON document, usually indented; its first line
		// is a lone brace.
		return fmt.Errorf("%w: a multi-line JSON document (asciicast version 1?)", ErrVersion)
	}
	if err := json.Unmarshal(text, h); err != nil {
		return fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if h.Version != Version {
		return fmt.Errorf("%w %d (want %d)", ErrVersion, h.Version, Version)
	}
	if err := h.check(); err != nil {
		return fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	return nil
}

// Header is the recording's header.
func (r *Reader) Header() Header { return r.header }

// Line is the number of the last line read, counting the header as line 1:
// after Next returned an event, that event's line.
func (r *Reader) Line() int { return r.line }

// Next returns the next event. It returns io.EOF after the last one, also
// when the last line has no newline and does not parse (a write cut short).
// A malformed line is an error wrapping ErrMalformed or ErrLineTooLong and
// naming the line; Next returns the same error from then on.
func (r *Reader) Next() (Event, error) {
	if r.err != nil {
		return Event{}, r.err
	}
	for {
		text, partial, err := r.readLine()
		if err == io.EOF {
			r.err = io.EOF
			return Event{}, io.EOF
		}
		if err != nil {
			r.err = fmt.Errorf("reading asciicast: %w", err)
			return Event{}, r.err
		}
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		ev, err := parseEvent(text)
		if err != nil {
			if partial {
				r.err = io.EOF
			} else {
				r.err = fmt.Errorf("reading asciicast: line %d: %w", r.line, err)
			}
			return Event{}, r.err
		}
		return ev, nil
	}
}

// readLine returns the next line without its newline; partial is set for a
// last line that has none. The line is valid until the next call.
func (r *Reader) readLine() (text []byte, partial bool, err error) {
	r.line++
	r.buf = r.buf[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		r.buf = append(r.buf, chunk...)
		switch {
		case err == nil:
			text = r.buf[:len(r.buf)-1]
		case errors.Is(err, bufio.ErrBufferFull):
		case err == io.EOF && len(r.buf) > 0:
			text, partial = r.buf, true
		case err == io.EOF:
			return nil, false, io.EOF
		default:
			return nil, false, fmt.Errorf("reading line %d: %w", r.line, err)
		}
		if len(text) > MaxLine || len(r.buf) > MaxLine+1 {
			// Stop here: reading on to the newline would let one line of an
			// untrusted file take any amount of memory.
			return nil, false, fmt.Errorf("line %d: %w (more than %d bytes)", r.line, ErrLineTooLong, MaxLine)
		}
		if text != nil || partial {
			return text, partial, nil
		}
	}
}

// parseEvent decodes one event line: [number >= 0, string, string].
func parseEvent(text []byte) (Event, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(text, &parts); err != nil {
		return Event{}, fmt.Errorf("%w: event: %w", ErrMalformed, err)
	}
	if len(parts) != 3 {
		return Event{}, fmt.Errorf("%w: event has %d elements, want [time, code, data]", ErrMalformed, len(parts))
	}
	var ev Event
	// Unmarshal leaves a number or string untouched for null; the format
	// has no null, so a null is refused rather than read as 0 or "".
	if isNull(parts[0]) || json.Unmarshal(parts[0], &ev.Time) != nil || ev.Time < 0 {
		return Event{}, fmt.Errorf("%w: event time %.40q is not a number >= 0", ErrMalformed, parts[0])
	}
	if isNull(parts[1]) || json.Unmarshal(parts[1], &ev.Code) != nil || ev.Code == "" {
		return Event{}, fmt.Errorf("%w: event code %.40q is not a non-empty string", ErrMalformed, parts[1])
	}
	if isNull(parts[2]) || json.Unmarshal(parts[2], &ev.Data) != nil {
		return Event{}, fmt.Errorf("%w: event data %.40q is not a string", ErrMalformed, parts[2])
	}
	if ev.Code == CodeResize {
		if _, _, ok := parseSize(ev.Data); !ok {
			return Event{}, fmt.Errorf("%w: resize to %.40q, want COLSxROWS", ErrMalformed, ev.Data)
		}
	}
	return ev, nil
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}
