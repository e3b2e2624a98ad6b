package record

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// FuzzVerify feeds arbitrary log content to the readers of untrusted files:
// none may panic, and they must agree with each other.
func FuzzVerify(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "session.jsonl"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add(golden[:len(golden)/2])
	f.Add([]byte{})
	f.Add([]byte("\n\n"))
	f.Add([]byte(`{"type":"session_start","start":{},"seq":1}` + "\n"))
	f.Add([]byte(`{"type":"command","command":null,"time":"99999-01-01T00:00:00Z"}` + "\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := verify(bytes.NewReader(data), testID)
		if err != nil {
			t.Fatalf("verify of in-memory bytes failed: %v", err)
		}
		if res.Complete && !res.OK {
			t.Fatalf("complete but not OK: %+v", res)
		}
		if !(res.OK && res.Complete) && res.Problem == "" {
			t.Fatalf("no problem named: %+v", res)
		}
		events, err := readEvents(bytes.NewReader(data))
		if res.OK && err != nil {
			t.Fatalf("verified OK but Events fails: %v", err)
		}
		if err == nil && res.Events > len(events) {
			t.Fatalf("verified %d events, Events read %d", res.Events, len(events))
		}
		if err := WriteText(io.Discard, events); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzWireText: storing free text is one-to-one and its stored form is
// UTF-8 that JSON keeps as it is.
func FuzzWireText(f *testing.F) {
	for _, s := range []string{"", "SELECT 1", "caf\xe9", "\x00", "\x00caf\\xe9", "\xff\xfe", "\xe2\x82", "\u2028\ufffd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w := wireText(s)
		if !utf8.ValidString(w) {
			t.Fatalf("stored form %q of %q is not UTF-8", w, s)
		}
		if back, err := unwireText(w); err != nil || back != s {
			t.Fatalf("%q stored as %q reads back as %q, %v", s, w, back, err)
		}
	})
}
