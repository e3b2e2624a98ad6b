package asciicast

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/interlock-dev/interlock/record"
)

// Sentinel errors.
var (
	// ErrMalformed: a line of a recording is not what the format allows.
	ErrMalformed = errors.New("malformed asciicast")
	// ErrVersion: the header names a version other than 2.
	ErrVersion = errors.New("unsupported asciicast version")
	// ErrLineTooLong: a line is longer than MaxLine.
	ErrLineTooLong = errors.New("asciicast line too long")
	// ErrInvalid: an argument the Writer cannot record, such as a size of 0.
	ErrInvalid = errors.New("invalid asciicast value")
	// ErrClosed: the Writer was closed.
	ErrClosed = errors.New("asciicast writer closed")
)

// Version is the asciicast version this package reads and writes.
const Version = 2

// FileExt is the extension of a recording in the recording store.
const FileExt = ".cast"

// MaxLine bounds the length of one line the Reader accepts, newline not
// counted.
const MaxLine = 1 << 20

// maxDim bounds terminal widths and heights: larger values are not terminal
// sizes but garbage, and would only feed huge numbers to a player.
const maxDim = 65535

// Event codes.
const (
	CodeOutput = "o" // Data is what the terminal was sent
	CodeInput  = "i" // Data is what was typed
	CodeResize = "r" // Data is "COLSxROWS"
	CodeMarker = "m" // Data is the marker's label
)

// Header is the first line of a recording. JSON names follow the asciicast
// v2 format.
type Header struct {
	Version int `json:"version"` // 2; Create fills 0 in
	Width   int `json:"width"`   // columns at the start
	Height  int `json:"height"`  // rows at the start
	// Timestamp is the start of the session in Unix seconds; 0 leaves it out.
	Timestamp int64 `json:"timestamp,omitempty"`
	// Duration is the length of the recording in seconds. The Writer cannot
	// know it when it writes the header; it is here for files that have it.
	Duration float64 `json:"duration,omitempty"`
	// IdleTimeLimit, in seconds, is the longest pause a player should show;
	// Play uses it when PlayOptions.MaxIdle is 0.
	IdleTimeLimit float64           `json:"idle_time_limit,omitempty"`
	Command       string            `json:"command,omitempty"` // what was run, for an exec session
	Title         string            `json:"title,omitempty"`
	Env           map[string]string `json:"env,omitempty"` // e.g. TERM and SHELL
}

// check reports what in h cannot be in a version 2 header.
func (h *Header) check() error {
	if h.Version != Version {
		return fmt.Errorf("%w %d (want %d)", ErrVersion, h.Version, Version)
	}
	if !validDim(h.Width) || !validDim(h.Height) {
		return fmt.Errorf("terminal size %dx%d not in 1..%d", h.Width, h.Height, maxDim)
	}
	if !(h.Duration >= 0) || !(h.IdleTimeLimit >= 0) { // also false for NaN
		return fmt.Errorf("negative or NaN duration %v or idle_time_limit %v", h.Duration, h.IdleTimeLimit)
	}
	return nil
}

func validDim(n int) bool { return n >= 1 && n <= maxDim }

// Event is one event of a recording.
type Event struct {
	Time float64 // seconds since the start of the recording
	Code string  // CodeOutput, CodeInput, CodeResize, CodeMarker, or another
	Data string
}

// Size returns the new size of a resize event; ok is false for other events.
// The Reader rejects resize events whose data is not a valid size.
func (e Event) Size() (cols, rows int, ok bool) {
	if e.Code != CodeResize {
		return 0, 0, false
	}
	return parseSize(e.Data)
}

// parseSize parses "COLSxROWS", each plain decimal in 1..maxDim.
func parseSize(s string) (cols, rows int, ok bool) {
	c, r, found := strings.Cut(s, "x")
	if !found {
		return 0, 0, false
	}
	cols, ok1 := parseDim(c)
	rows, ok2 := parseDim(r)
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	return cols, rows, true
}

func parseDim(s string) (int, bool) {
	// Digits only: Atoi would also take "+80" and "-0".
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && validDim(n)
}

// Path is the file of session id's recording in the recording store dir:
// dir/<id>.cast. It wraps record.ErrInvalidID for an id the store would
// refuse, so a recording can never be named outside dir.
func Path(dir, id string) (string, error) {
	if !record.ValidID(id) {
		return "", fmt.Errorf("naming recording: %w: %q", record.ErrInvalidID, id)
	}
	return filepath.Join(dir, id+FileExt), nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, one
// per invalid byte; control characters are escaped, everything else is kept
// as it is (asciinema's files keep non-ASCII text readable, so do these).
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != 0x7f {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// incompleteTail returns the index where a trailing incomplete UTF-8
// sequence of p starts (one that more bytes could complete), or len(p) when
// p does not end in one.
func incompleteTail(p []byte) int {
	for i := len(p) - 1; i >= 0 && i >= len(p)-(utf8.UTFMax-1); i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				return i
			}
			break
		}
	}
	return len(p)
}
