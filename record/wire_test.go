package record

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// setEveryString sets every string of the struct p points to (fields,
// slice elements, map keys and values) to a value made by text from the
// field's name, so that a field added later is covered too.
func setEveryString(p any, text func(name string) string) {
	v := reflect.ValueOf(p).Elem()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch {
		case f.Kind() == reflect.String:
			f.SetString(text(name))
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			f.Set(reflect.ValueOf([]string{text(name + "0"), text(name + "1")}))
		case f.Kind() == reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{text(name + "k"): text(name + "v"), "plain": text(name)}))
		}
	}
}

// notUTF8 are the kinds of text that are not valid UTF-8, or would be
// mistaken for a stored quoted form, that agents and targets can send.
var notUTF8 = map[string]func(name string) string{
	"latin-1":          func(n string) string { return n + " caf\xe9 na\xefve" },
	"0xff":             func(n string) string { return "\xff" + n + "\xfe" },
	"cut rune":         func(n string) string { return n + " \xe2\x82" },
	"surrogate":        func(n string) string { return n + " \xed\xa0\x80" },
	"leading NUL":      func(n string) string { return "\x00" + n },
	"mixed":            func(n string) string { return "\x00\xff\u2028\"\\<&\x1b[2J" + n + "\xc3\xa9\ufffd" },
	"quoted lookalike": func(n string) string { return "\x00" + `caf\xe9` + n },
}

func TestNotUTF8RoundTrips(t *testing.T) {
	for kind, text := range notUTF8 {
		t.Run(kind, func(t *testing.T) {
			for _, strict := range []bool{false, true} {
				s := newTestStore(t)
				s.Strict = strict
				var start Start
				setEveryString(&start, text)
				var cmd, begun Command
				setEveryString(&cmd, text)
				setEveryString(&begun, text)
				cmd.Rows, cmd.DurationMS = 3, 1.5
				var res Result
				setEveryString(&res, text)
				var end End
				setEveryString(&end, text)

				r, err := s.Create(testID, start, t0)
				if err != nil {
					t.Fatal(err)
				}
				if err := r.Command(cmd); err != nil {
					t.Fatal(err)
				}
				if strict {
					seq, err := r.Begin(begun)
					if err != nil {
						t.Fatal(err)
					}
					res.Of = seq
					if err := r.Result(res); err != nil {
						t.Fatal(err)
					}
				}
				if err := r.Close(end); err != nil {
					t.Fatal(err)
				}

				data, err := os.ReadFile(filepath.Join(s.Dir(), testID+".jsonl"))
				if err != nil {
					t.Fatal(err)
				}
				if !utf8.Valid(data) || bytes.Contains(data, []byte(`\ufffd`)) {
					t.Errorf("the log is not UTF-8 or lost bytes to U+FFFD:\n%s", data)
				}
				vr, err := verifyChain(s, testID)
				if err != nil || !vr.OK || !vr.Complete {
					t.Fatalf("untouched log: Verify = %+v, %v", vr, err)
				}
				events, err := s.Events(testID)
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]any{"start": *events[0].Start, "command": *events[1].Command}
				want := map[string]any{"start": start, "command": cmd}
				if strict {
					got["begun"], got["result"] = *events[2].Command, *events[3].Result
					want["begun"], want["result"] = begun, res
				}
				end.Commands, end.Seconds = events[len(events)-1].End.Commands, events[len(events)-1].End.Seconds
				end.Denied = events[len(events)-1].End.Denied
				got["end"], want["end"] = *events[len(events)-1].End, end
				for k := range want {
					if !reflect.DeepEqual(got[k], want[k]) {
						t.Errorf("strict=%v %s read back\n got %#v\nwant %#v", strict, k, got[k], want[k])
					}
				}

				var out bytes.Buffer
				if err := WriteText(&out, events); err != nil {
					t.Fatal(err)
				}
				if !utf8.Valid(out.Bytes()) || bytes.ContainsAny(out.Bytes(), "\x00\x1b") {
					t.Errorf("transcript passes raw bytes through:\n%q", out.String())
				}
				if kind == "latin-1" && !strings.Contains(out.String(), `> Text caf\xe9 na\xefve`) {
					t.Errorf("transcript does not show the statement's bytes:\n%s", out.String())
				}

				// An edit of a stored quoted string is still caught.
				tampered := bytes.Replace(data, []byte(`\\x`), []byte(`\\X`), 1)
				if !bytes.Equal(tampered, data) {
					if err := os.WriteFile(filepath.Join(s.Dir(), testID+".jsonl"), tampered, 0o600); err != nil {
						t.Fatal(err)
					}
					if vr, err := s.Verify(testID); err != nil || vr.OK {
						t.Errorf("edited quoted text: Verify = %+v, %v", vr, err)
					}
				}
			}
		})
	}
}

// TestShowJSONKeepsBytes: the events' JSON (sessions show -o json) stores
// text as the log does, so no byte is lost there either.
func TestShowJSONKeepsBytes(t *testing.T) {
	ev := Event{Type: EventCommand, Command: &Command{Text: "caf\xe9", Decision: "allow"}}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"text":"\u0000caf\\xe9"`)) {
		t.Errorf("JSON %s does not keep the byte", b)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil || back.Command.Text != "caf\xe9" {
		t.Errorf("read back %q, %v", back.Command.Text, err)
	}
}

// TestLegacyReplacementVerifies: a log written before free text was stored
// reversibly has \ufffd where a byte was not UTF-8; untouched, it verifies.
func TestLegacyReplacementVerifies(t *testing.T) {
	var log []byte
	prev := ""
	for i, line := range []string{
		`{"type":"session_start","time":"2026-11-29T07:15:00Z","session":"` + testID + `","seq":1,"start":{"protocol":"postgres","target":"t","destination":"d","client":"c","workload":"w","subject":"s","uid":0,"executable":"/tmp/\ufffdx","attributes":{"application_name":"\ufffd"}},PREV"hash":""}`,
		`{"type":"command","time":"2026-11-29T07:15:01Z","session":"` + testID + `","seq":2,"command":{"text":"SELECT 'caf\ufffd' -- \\ufffd is not one, \ufffd is","decision":"allow"},PREV"hash":""}`,
		`{"type":"session_end","time":"2026-11-29T07:15:02Z","session":"` + testID + `","seq":3,"end":{"commands":1,"denied":0,"seconds":2},PREV"hash":""}`,
	} {
		p := ""
		if i > 0 {
			p = `"prev":"` + prev + `",`
		}
		line = strings.Replace(line, "PREV", p, 1)
		sum := sha256.Sum256([]byte(prev + line))
		prev = hex.EncodeToString(sum[:])
		log = append(log, strings.Replace(line, `"hash":""`, `"hash":"`+prev+`"`, 1)+"\n"...)
	}
	res, err := verify(bytes.NewReader(log), testID)
	if err != nil || !res.OK || !res.Complete || res.Events != 3 {
		t.Fatalf("legacy log: %+v, %v\n%s", res, err, log)
	}
	// The escape and the character it stands for are not interchangeable.
	edited := bytes.Replace(log, []byte(`, \ufffd is`), []byte(", \ufffd is"), 1)
	if res, err := verify(bytes.NewReader(edited), testID); err != nil || res.OK {
		t.Errorf("legacy log with an escape spelt out: %+v, %v", res, err)
	}
}

func TestWireTextBadQuoted(t *testing.T) {
	line := []byte(`{"type":"command","time":"2026-11-29T07:15:01Z","session":"s","seq":2,"command":{"text":"\u0000\"","decision":"allow"},"hash":""}`)
	if _, err := parseEvent(line); err == nil {
		t.Error("a text starting with NUL that is no quoted form parsed")
	}
	// A quoted form of text that needs none is not what the writer writes.
	ev := Event{Type: EventCommand, Session: testID, Seq: 1, Command: &Command{Text: "x"}}
	b, err := seal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`"text":"x"`), []byte(`"text":"\u0000x"`), 1)
	if res, _ := verify(bytes.NewReader(b), testID); res.OK || !strings.Contains(res.Problem, "canonical") {
		t.Errorf("needless quoted form: %+v", res)
	}
}
