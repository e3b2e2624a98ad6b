package record

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// encodeCases are command events whose hand encoding must equal
// json.Marshal's.
func encodeCases() []Event {
	tm := time.Date(2026, 11, 29, 7, 15, 0, 123456789, time.UTC)
	cmd := func(c Command) Event {
		return Event{Type: EventCommand, Time: tm, Session: testID, Seq: 7, Command: &c, Prev: "ab12"}
	}
	return []Event{
		cmd(Command{Text: "SELECT 1", Decision: "allow"}),
		cmd(Command{Text: "SELECT 1", Command: "SELECT", Kind: "read", Decision: "allow", Rule: "r", Message: "m",
			DurationMS: 0.042, Rows: 3, Tag: "SELECT 3", Error: "e", Masked: 2, MaskRules: []string{"pii", "cards"}, Recording: "x.1.cast",
			RecordingSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", RecordingBytes: 1 << 40,
			Review: "ab2cd3ef4g", Decider: "alice"}),
		cmd(Command{Text: "(shell)", Decision: "allow", Recording: "x.2.cast", RecordingBytes: -1}),
		cmd(Command{Text: "<script>&\"\\'\x00\x01\x1f\x7f\b\f\n\r\t", Decision: "deny"}),
		cmd(Command{Text: "caf\xc3\xa9 \xff\xfe bad \xe2\x80\xa8 \xe2\x80\xa9 \xf0\x9f\x98\x80 \xe2\x82", Decision: "allow"}),
		cmd(Command{Text: "", Decision: "", MaskRules: []string{}}),
		cmd(Command{Text: "x", DurationMS: 1e-7, Rows: -1, Masked: math.MaxInt64}),
		cmd(Command{Text: "x", DurationMS: 1e21}),
		cmd(Command{Text: "x", DurationMS: 123456789.125}),
		cmd(Command{Text: "x", DurationMS: -0.5}),
		{Type: EventCommand, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Session: "s", Seq: 1, Command: &Command{Text: "t"}, Hash: "ff"},
		{Type: EventCommand, Time: tm, Session: "s", Seq: 2, Command: &Command{Text: "t", Error: "e"}, Prev: "ab",
			Truncated: []Truncation{{Field: "command.text", Bytes: 70000, SHA256: "00ff"}, {Field: "command.error<>", Bytes: 1 << 40}}},
	}
}

func TestAppendEventMatchesJSON(t *testing.T) {
	for i, ev := range encodeCases() {
		checkEncoding(t, i, &ev)
	}
}

func checkEncoding(t *testing.T, i int, ev *Event) {
	t.Helper()
	want, werr := json.Marshal(ev)
	got, gerr := appendEvent([]byte("prefix"), ev)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("case %d: json.Marshal error %v, appendEvent error %v", i, werr, gerr)
	}
	if werr != nil {
		return
	}
	if !bytes.Equal(got[len("prefix"):], want) {
		t.Fatalf("case %d:\n got %s\nwant %s", i, got[len("prefix"):], want)
	}
}

func FuzzAppendEvent(f *testing.F) {
	for _, ev := range encodeCases() {
		c := ev.Command
		f.Add(c.Text, c.Decision, c.Rule, c.Error, c.DurationMS, c.Rows, ev.Time.UnixNano(), ev.Prev)
	}
	f.Fuzz(func(t *testing.T, text, decision, rule, errText string, dur float64, rows int64, unixNano int64, prev string) {
		ev := Event{
			Type: EventCommand, Time: time.Unix(0, unixNano).UTC(), Session: testID, Seq: uint64(rows),
			Command: &Command{Text: text, Command: rule, Kind: decision, Decision: decision, Rule: rule, Message: errText,
				DurationMS: dur, Rows: rows, Tag: text, Error: errText, Masked: rows / 3, MaskRules: []string{rule, text}, Recording: prev, RecordingSHA256: text, RecordingBytes: rows * 7, Review: rule, Decider: errText},
			Prev: prev,
		}
		checkEncoding(t, 0, &ev)
	})
}
