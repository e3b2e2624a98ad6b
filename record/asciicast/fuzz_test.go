package asciicast

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzReader feeds arbitrary files to the parser of recordings, which reads
// files an attacker may have planted or damaged: it must not panic, must
// refuse what breaks the format with one of its sentinel errors, and what it
// accepts must survive being written again.
func FuzzReader(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "session.cast"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add(golden[:len(golden)-7])
	f.Add([]byte(hdr + "[0, \"r\", \"80x24\"]\n[1e308, \"o\", \"\\ud800\"]\n"))
	f.Add([]byte("{\n\"version\": 1\n}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := Open(strings.NewReader(string(data)))
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrLineTooLong) {
				t.Fatalf("Open error without a sentinel: %v", err)
			}
			return
		}
		if h := rd.Header(); h.Version != 2 || !validDim(h.Width) || !validDim(h.Height) {
			t.Fatalf("accepted header %+v", h)
		}
		var events []Event
		for {
			ev, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrLineTooLong) {
					t.Fatalf("Next error without a sentinel: %v", err)
				}
				if !strings.Contains(err.Error(), "line ") {
					t.Fatalf("error does not name a line: %v", err)
				}
				break
			}
			if !(ev.Time >= 0) || ev.Code == "" {
				t.Fatalf("accepted event %s", show(ev))
			}
			if _, _, ok := ev.Size(); ev.Code == CodeResize && !ok {
				t.Fatalf("accepted resize %q", ev.Data)
			}
			events = append(events, ev)
		}
		checkRewrite(t, events)

		maxPause := max(DefaultMaxIdle, seconds(rd.Header().IdleTimeLimit))
		err = Play(context.Background(), io.Discard, strings.NewReader(string(data)), PlayOptions{
			Resize: true,
			Sleep: func(_ context.Context, d time.Duration) error {
				if d <= 0 || d > maxPause {
					t.Fatalf("pause %v, cap %v", d, maxPause)
				}
				return nil
			},
		})
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrLineTooLong) {
			t.Fatalf("Play: %v", err)
		}
		if err := Dump(io.Discard, strings.NewReader(string(data)), DumpOptions{}); err != nil &&
			!errors.Is(err, ErrMalformed) && !errors.Is(err, ErrLineTooLong) {
			t.Fatalf("Dump: %v", err)
		}
	})
}

// checkRewrite writes events as the Writer encodes them and reads them back:
// the same codes and data, times to the microsecond.
func checkRewrite(t *testing.T, events []Event) {
	var file []byte
	file = append(file, hdr...)
	var want []Event
	for _, ev := range events {
		if ev.Time > 1e9 { // beyond what a Duration holds in microseconds
			continue
		}
		line := appendEvent(nil, time.Duration(ev.Time*float64(time.Second)), ev.Code, []byte(ev.Data))
		if len(line) > MaxLine { // the Writer would have split it
			continue
		}
		file = append(file, line...)
		want = append(want, ev)
	}
	got, err := readString(string(file))
	if err != nil {
		t.Fatalf("reading rewritten events: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("rewrote %d events, read %d", len(want), len(got))
	}
	for i := range got {
		if got[i].Code != want[i].Code || got[i].Data != want[i].Data || math.Abs(got[i].Time-want[i].Time) > 2e-6 {
			t.Fatalf("rewritten %s read back as %s", show(want[i]), show(got[i]))
		}
	}
}
