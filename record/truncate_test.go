package record

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestLongTextCapped: every string of every part is cut to MaxTextBytes,
// and the event says which, how long it was and its SHA-256.
func TestLongTextCapped(t *testing.T) {
	// "é" straddles the cut: the cut text stays UTF-8.
	long := func(name string) string { return name + strings.Repeat("x", MaxTextBytes-len(name)-1) + "é" + "tail" }
	s := newTestStore(t)
	s.Strict = true
	var start Start
	setEveryString(&start, long)
	var cmd Command
	setEveryString(&cmd, long)
	var res Result
	setEveryString(&res, long)
	var end End
	setEveryString(&end, long)
	orig := map[string]any{"start": start, "command": cmd, "result": res, "end": end}
	shared := cmd.MaskRules[0]

	r, err := s.Create(testID, start, t0)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := r.Begin(cmd)
	if err != nil {
		t.Fatal(err)
	}
	res.Of = seq
	if err := r.Result(res); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(end); err != nil {
		t.Fatal(err)
	}
	if cmd.MaskRules[0] != shared {
		t.Error("the caller's slice was written to")
	}
	if vr, err := verifyChain(s, testID); err != nil || !vr.OK || !vr.Complete {
		t.Fatalf("Verify = %+v, %v", vr, err)
	}
	events, err := s.Events(testID)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]any{"start": events[0].Start, "command": events[1].Command, "result": events[2].Result, "end": events[3].End}
	for i, ev := range events {
		part := []string{"start", "command", "result", "end"}[i]
		cuts := map[string]Truncation{}
		for _, c := range ev.Truncated {
			cuts[c.Field] = c
		}
		// Every string read back is a cut prefix of the original, named in
		// Truncated with the original's length and hash.
		want := map[string]string{}
		collect(reflect.ValueOf(orig[part]), part, MaxTextBytes+1, want)
		got := map[string]string{}
		collect(reflect.ValueOf(parts[part]).Elem(), part, 0, got)
		for field, full := range want {
			g, c := got[field], cuts[field]
			sum := sha256.Sum256([]byte(full))
			if len(g) > MaxTextBytes || !strings.HasPrefix(full, g) || !utf8.ValidString(g) || len(g) < MaxTextBytes-3 {
				t.Errorf("%s: %d bytes read back, want a UTF-8 prefix of at most %d", field, len(g), MaxTextBytes)
			}
			if c.Bytes != len(full) || c.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("%s: truncation %+v, want %d bytes and the full text's hash", field, c, len(full))
			}
			delete(cuts, field)
		}
		if len(cuts) > 0 {
			t.Errorf("%s: truncations of nothing cut: %v", part, cuts)
		}
	}
	var out bytes.Buffer
	if err := WriteText(&out, events); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), fmt.Sprintf("command.text truncated: %d bytes in full, sha256 ", len(long("Text")))) {
		t.Errorf("transcript does not say the text was cut:\n%.2000s", out.String())
	}
}

// collect maps "part.json_name[.index|.key]" to every string of v at
// least min bytes long.
func collect(v reflect.Value, part string, min int, into map[string]string) {
	for i := range v.NumField() {
		f := v.Field(i)
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		switch f.Kind() {
		case reflect.String:
			if f.Len() >= min {
				into[part+"."+name] = f.String()
			}
		case reflect.Slice:
			for j := range f.Len() {
				if s := f.Index(j).String(); len(s) >= min {
					into[part+"."+name+"."+string(rune('0'+j))] = s
				}
			}
		case reflect.Map:
			for it := f.MapRange(); it.Next(); {
				if s := it.Value().String(); len(s) >= min {
					into[part+"."+name+"."+it.Key().String()] = s
				}
			}
		}
	}
}

// TestHugeStatementLine: a 20 MB statement of control bytes, which JSON
// writes six bytes each, no longer makes a 120 MB line.
func TestHugeStatementLine(t *testing.T) {
	s := newTestStore(t)
	r, err := s.Create(testID, Start{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("\x01", 20<<20)
	if err := r.Command(Command{Text: huge, Decision: "allow"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(End{}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(s.Dir(), testID+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 7*MaxTextBytes {
		t.Errorf("log of %d bytes", len(data))
	}
	sum := sha256.Sum256([]byte(huge))
	if !bytes.Contains(data, []byte(`"truncated":[{"field":"command.text","bytes":20971520,"sha256":"`+hex.EncodeToString(sum[:])+`"}]`)) {
		t.Error("the log does not identify the full statement")
	}
}
