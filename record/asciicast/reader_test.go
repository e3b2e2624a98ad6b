package asciicast

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

const hdr = `{"version":2,"width":80,"height":24}` + "\n"

// readString reads every event of a recording held in s.
func readString(s string) ([]Event, error) {
	rd, err := Open(strings.NewReader(s))
	if err != nil {
		return nil, err
	}
	var events []Event
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return events, nil
		}
		if err != nil {
			return events, err
		}
		events = append(events, ev)
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name, file string
		want       error
		msg        string // in the error
	}{
		{"empty", "", ErrMalformed, "no header"},
		{"version 1", "{\n  \"version\": 1,\n  \"stdout\": []\n}\n", ErrVersion, "version 1"},
		{"version 1 compact", `{"version":1,"width":80,"height":24,"stdout":[[0.5,"hi"]]}`, ErrVersion, "version 1"},
		{"version 3", `{"version":3,"term":{"cols":80,"rows":24}}` + "\n", ErrVersion, "version 3"},
		{"no version", `{"width":80,"height":24}` + "\n", ErrVersion, "version 0"},
		{"not json", "hello\n", ErrMalformed, "line 1"},
		{"array", `[0, "o", "x"]` + "\n", ErrMalformed, "line 1"},
		{"string version", `{"version":"2","width":80,"height":24}` + "\n", ErrMalformed, "line 1"},
		{"no size", `{"version":2}` + "\n", ErrMalformed, "terminal size"},
		{"negative idle", `{"version":2,"width":80,"height":24,"idle_time_limit":-1}` + "\n", ErrMalformed, "idle_time_limit"},
		{"huge header", `{"version":2,"title":"` + strings.Repeat("x", MaxLine) + `"}`, ErrLineTooLong, "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(strings.NewReader(tt.file))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Open = %v, want %v mentioning %q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestHeaderFields(t *testing.T) {
	rd, err := Open(strings.NewReader(`{"version": 2, "width": 132, "height": 43, "timestamp": 1504467315, ` +
		`"duration": 7.5, "idle_time_limit": 1.5, "command": "/bin/bash -l", "title": "Demo", ` +
		`"env": {"TERM": "xterm-256color", "SHELL": null}, "theme": {"fg": "#d0d0d0", "bg": "#212121"}}` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := rd.Header()
	if h.Width != 132 || h.Height != 43 || h.Timestamp != 1504467315 || h.Duration != 7.5 ||
		h.IdleTimeLimit != 1.5 || h.Command != "/bin/bash -l" || h.Title != "Demo" ||
		h.Env["TERM"] != "xterm-256color" {
		t.Errorf("header %+v", h)
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Errorf("Next of a recording without events = %v, want io.EOF", err)
	}
}

func TestMalformedEvents(t *testing.T) {
	tests := []struct {
		name  string
		lines string // after the header
		good  int    // events read before the error
		want  error
		line  string // "line N" in the error
	}{
		{"not json", "[0.1, \"o\", \"a\"]\nnot json\n", 1, ErrMalformed, "line 3"},
		{"object", `{"time": 1}` + "\n", 0, ErrMalformed, "line 2"},
		{"two elements", `[1.0, "o"]` + "\n", 0, ErrMalformed, "line 2"},
		{"four elements", `[1.0, "o", "a", "b"]` + "\n", 0, ErrMalformed, "line 2"},
		{"string time", `["1.0", "o", "a"]` + "\n", 0, ErrMalformed, "line 2"},
		{"null time", `[null, "o", "a"]` + "\n", 0, ErrMalformed, "line 2"},
		{"negative time", `[-1, "o", "a"]` + "\n", 0, ErrMalformed, "line 2"},
		{"huge time", `[1e999, "o", "a"]` + "\n", 0, ErrMalformed, "line 2"},
		{"empty code", `[1, "", "a"]` + "\n", 0, ErrMalformed, "line 2"},
		{"numeric code", `[1, 111, "a"]` + "\n", 0, ErrMalformed, "line 2"},
		{"null data", `[1, "o", null]` + "\n", 0, ErrMalformed, "line 2"},
		{"bytes data", `[1, "o", [104, 105]]` + "\n", 0, ErrMalformed, "line 2"},
		{"bad resize", "[1, \"o\", \"a\"]\n\n[2, \"r\", \"80 x 24\"]\n", 1, ErrMalformed, "line 4"},
		{"zero resize", `[1, "r", "0x24"]` + "\n", 0, ErrMalformed, "line 2"},
		{"signed resize", `[1, "r", "+80x24"]` + "\n", 0, ErrMalformed, "line 2"},
		{"malformed then partial", "[1, \"o\"\n[2, \"o\", ", 0, ErrMalformed, "line 2"},
		{"too long", `[1, "o", "` + strings.Repeat("a", MaxLine) + "\"]\n[2, \"o\", \"b\"]\n", 0, ErrLineTooLong, "line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd, err := Open(strings.NewReader(hdr + tt.lines))
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.good {
				if _, err := rd.Next(); err != nil {
					t.Fatalf("event %d: %v", i+1, err)
				}
			}
			_, err = rd.Next()
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.line+":") {
				t.Fatalf("Next = %v, want %v naming %s", err, tt.want, tt.line)
			}
			if _, again := rd.Next(); again != err {
				t.Errorf("Next after the error = %v, want the same error", again)
			}
		})
	}
}

func TestTolerated(t *testing.T) {
	tests := []struct {
		name  string
		lines string
		want  []Event
	}{
		{"partial last line", "[0.5, \"o\", \"a\"]\n[1.0, \"o\", \"tru", []Event{{0.5, "o", "a"}}},
		{"partial last line, one byte", "[0.5, \"o\", \"a\"]\n[", []Event{{0.5, "o", "a"}}},
		{"partial last line, broken escape", "[0.5, \"o\", \"\\u00", nil},
		{"complete last line without newline", "[0.5, \"o\", \"a\"]", []Event{{0.5, "o", "a"}}},
		{"blank lines", "\n[0.5, \"o\", \"a\"]\n  \r\n\n", []Event{{0.5, "o", "a"}}},
		{"crlf", "[0.5, \"o\", \"a\"]\r\n", []Event{{0.5, "o", "a"}}},
		{"unknown code", "[0.5, \"x\", \"a\"]\n", []Event{{0.5, "x", "a"}}},
		{"integer time", "[3, \"o\", \"a\"]\n", []Event{{3, "o", "a"}}},
		{"time going back", "[3, \"o\", \"a\"]\n[2, \"o\", \"b\"]\n", []Event{{3, "o", "a"}, {2, "o", "b"}}},
		{"escapes", `[0, "o", "\u001b[1m\ud83d\ude00\ud800"]` + "\n", []Event{{0, "o", "\x1b[1m😀\ufffd"}}},
		{"invalid utf-8 in file", "[0, \"o\", \"\xff\"]\n", []Event{{0, "o", "\ufffd"}}},
		{"longest line", `[0, "o", "` + strings.Repeat("a", MaxLine-12) + "\"]\n",
			[]Event{{0, "o", strings.Repeat("a", MaxLine-12)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := readString(hdr + tt.lines)
			if err != nil {
				t.Fatal(err)
			}
			if show(events...) != show(tt.want...) {
				t.Errorf("events %.200s, want %.200s", show(events...), show(tt.want...))
			}
		})
	}
}

// A reader that hands out one byte at a time, and one that fails, exercise
// the line assembly and I/O errors.
func TestReaderIO(t *testing.T) {
	rd, err := Open(iotest.OneByteReader(strings.NewReader(hdr + "[0.5, \"o\", \"é\"]\n")))
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := rd.Next(); err != nil || ev.Data != "é" {
		t.Errorf("Next = %s, %v", show(ev), err)
	}

	errBroken := errors.New("broken pipe")
	rd, err = Open(io.MultiReader(strings.NewReader(hdr+"[0.5, \"o\", \"a\"]\n[1"), iotest.ErrReader(errBroken)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Next(); !errors.Is(err, errBroken) {
		t.Errorf("Next = %v, want the read error", err)
	}
	if rd.Line() != 3 {
		t.Errorf("Line = %d, want 3", rd.Line())
	}
}
