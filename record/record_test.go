package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const testID = "20261129T071500Z-1a2b3c4d"

var t0 = time.Date(2026, 11, 29, 7, 15, 0, 0, time.UTC)

// steppingClock returns t0+1s, t0+2s, ... on successive calls.
func steppingClock() func() time.Time {
	var mu sync.Mutex
	n := 0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		n++
		return t0.Add(time.Duration(n) * 1250 * time.Millisecond)
	}
}

func testStart() Start {
	return Start{
		Protocol:    "postgres",
		Target:      "orders-db",
		Destination: "10.0.0.5:5432",
		Client:      "127.0.0.1:40000",
		Workload:    "billing.service",
		Subject:     "alice@example.com",
		Groups:      []string{"dba", "ops"},
		Issuer:      "https://idp.example.com",
		PID:         4242,
		UID:         1000,
		Executable:  "/usr/bin/psql",
		CgroupID:    1234,
		Attributes:  map[string]string{"user": "app", "database": "orders"},
	}
}

func testCommands() []Command {
	return []Command{
		{Text: "SELECT id, email\n  FROM orders", Command: "SELECT", Kind: "read", Decision: "allow", Rule: "read-only",
			DurationMS: 12.5, Rows: 3, Tag: "SELECT 3", Masked: 2, MaskRules: []string{"email"}},
		{Text: "DROP TABLE orders", Command: "DROP TABLE", Kind: "ddl", Decision: "deny", Rule: "no-ddl",
			Message: "DDL is not allowed"},
		{Text: "SELECT 1/0", Command: "SELECT", Kind: "read", Decision: "allow", DurationMS: 0.8,
			Error: "division by zero"},
		{Text: "SELECT '\x1b[2J\x1b]0;pwned\x07' AS \"\u202etxt\"", Command: "SELECT", Kind: "read", Decision: "allow",
			Rule: "read-only", Tag: "SELECT 1", Rows: 1},
	}
}

// writeSession records the test session in s and returns the log's bytes.
func writeSession(t *testing.T, s *Store, id string) []byte {
	t.Helper()
	r, err := s.Create(id, testStart(), t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range testCommands() {
		if err := r.Command(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(End{Reason: "client closed"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(s.Dir(), id+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// verifyChain is Store.Verify without the check of the terminal
// recordings the log names: for tests whose commands name made-up ones.
func verifyChain(s *Store, id string) (VerifyResult, error) {
	f, err := s.open(id)
	if err != nil {
		return VerifyResult{}, err
	}
	defer f.Close()
	return verify(f, id)
}

func newTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := OpenStore(filepath.Join(t.TempDir(), "recordings"))
	if err != nil {
		t.Fatal(err)
	}
	s.now = steppingClock()
	return s
}

func TestRoundTrip(t *testing.T) {
	s := newTestStore(t)
	writeSession(t, s, testID)

	if fi, err := os.Stat(s.Dir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("store folder: %v, %v; want mode 0700", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(s.Dir(), testID+".jsonl")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("log file: %v, %v; want mode 0600", fi.Mode(), err)
	}

	events, err := s.Events(testID)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 6 {
		t.Fatalf("got %d events, want 6", len(events))
	}
	wantTypes := []string{EventStart, EventCommand, EventCommand, EventCommand, EventCommand, EventEnd}
	for i, ev := range events {
		if ev.Type != wantTypes[i] || ev.Seq != uint64(i+1) || ev.Session != testID {
			t.Errorf("event %d: type %s seq %d session %s", i, ev.Type, ev.Seq, ev.Session)
		}
		if i > 0 && ev.Prev != events[i-1].Hash {
			t.Errorf("event %d: prev %s, want %s", i, ev.Prev, events[i-1].Hash)
		}
	}
	if got := events[0].Start.Attributes["database"]; got != "orders" {
		t.Errorf("start attributes: database=%q", got)
	}
	if got := events[2].Command.Message; got != "DDL is not allowed" {
		t.Errorf("command message %q", got)
	}
	end := events[5].End
	if end.Commands != 4 || end.Denied != 1 || end.Seconds != 6.25 || end.Reason != "client closed" {
		t.Errorf("end %+v: want 4 commands, 1 denied, 6.25s filled in", *end)
	}

	res, err := s.Verify(testID)
	if err != nil {
		t.Fatal(err)
	}
	if want := (VerifyResult{Events: 6, OK: true, Complete: true}); !reflect.DeepEqual(res, want) {
		t.Errorf("Verify = %+v, want %+v", res, want)
	}

	sums, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 {
		t.Fatalf("List: %d sessions, want 1", len(sums))
	}
	got := sums[0]
	if got.ID != testID || !got.Started.Equal(t0) || !got.Ended.Equal(events[5].Time) ||
		got.Commands != 4 || got.Denied != 1 || got.Incomplete || got.Reason != "client closed" ||
		got.Start.Subject != "alice@example.com" {
		t.Errorf("List: %+v", got)
	}
}

func TestList(t *testing.T) {
	s := newTestStore(t)
	ids := []string{"20261129T071500Z-aaaaaaaa", "20261129T081500Z-bbbbbbbb", "20261129T091500Z-cccccccc"}
	for i, id := range ids {
		r, err := s.Create(id, Start{Protocol: "ssh"}, t0.Add(time.Duration(i)*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Command(Command{Text: "ls", Decision: "deny"}); err != nil {
			t.Fatal(err)
		}
		if i != 1 { // the second stays open
			if err := r.Close(End{}); err != nil {
				t.Fatal(err)
			}
		} else if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// Not session logs: skipped.
	for _, name := range []string{"notes.txt", ".hidden.jsonl", "x..y.jsonl"} {
		if err := os.WriteFile(filepath.Join(s.Dir(), name), []byte("junk\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A damaged log is listed as incomplete, not an error.
	if err := os.WriteFile(filepath.Join(s.Dir(), "20251129T071500Z-dddddddd.jsonl"), []byte("{not json\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	sums, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, sum := range sums {
		gotIDs = append(gotIDs, sum.ID)
	}
	want := []string{ids[2], ids[1], ids[0], "20251129T071500Z-dddddddd"}
	if strings.Join(gotIDs, " ") != strings.Join(want, " ") {
		t.Fatalf("List order %v, want %v", gotIDs, want)
	}
	for _, sum := range sums {
		wantIncomplete := sum.ID == ids[1] || sum.ID == want[3]
		if sum.Incomplete != wantIncomplete || sum.Ended.IsZero() != wantIncomplete {
			t.Errorf("%s: incomplete %v, ended %v", sum.ID, sum.Incomplete, sum.Ended)
		}
		if sum.ID != want[3] && (sum.Commands != 1 || sum.Denied != 1) {
			t.Errorf("%s: commands %d denied %d, want 1 1", sum.ID, sum.Commands, sum.Denied)
		}
	}
}

// lines splits a log into its lines, newlines kept.
func lines(b []byte) [][]byte {
	ls := bytes.SplitAfter(b, []byte("\n"))
	if len(ls[len(ls)-1]) == 0 {
		ls = ls[:len(ls)-1]
	}
	return ls
}

func TestVerifyTampering(t *testing.T) {
	orig := writeSession(t, newTestStore(t), testID)
	if n := len(lines(orig)); n != 6 {
		t.Fatalf("session has %d lines, want 6", n)
	}
	join := func(ls ...[]byte) []byte { return bytes.Join(ls, nil) }
	tests := []struct {
		name   string
		tamper func(ls [][]byte) []byte
		want   VerifyResult
	}{
		{
			name:   "intact",
			tamper: func(ls [][]byte) []byte { return join(ls...) },
			want:   VerifyResult{Events: 6, OK: true, Complete: true},
		},
		{
			name: "byte of a command's text edited",
			tamper: func(ls [][]byte) []byte {
				ls[2] = bytes.Replace(ls[2], []byte("DROP TABLE orders"), []byte("DROP TABLE orderz"), 1)
				return join(ls...)
			},
			want: VerifyResult{Events: 2, Problem: "line 3: hash mismatch"},
		},
		{
			name: "decision edited",
			tamper: func(ls [][]byte) []byte {
				ls[2] = bytes.Replace(ls[2], []byte(`"decision":"deny"`), []byte(`"decision":"allow"`), 1)
				return join(ls...)
			},
			want: VerifyResult{Events: 2, Problem: "line 3: hash mismatch"},
		},
		{
			name:   "line deleted",
			tamper: func(ls [][]byte) []byte { return join(ls[0], ls[1], ls[3], ls[4], ls[5]) },
			want:   VerifyResult{Events: 2, Problem: "line 3: seq 4 after 2"},
		},
		{
			name:   "first line deleted",
			tamper: func(ls [][]byte) []byte { return join(ls[1:]...) },
			want:   VerifyResult{Events: 0, Problem: "line 1: first seq is 2, want 1"},
		},
		{
			name:   "two lines swapped",
			tamper: func(ls [][]byte) []byte { return join(ls[0], ls[2], ls[1], ls[3], ls[4], ls[5]) },
			want:   VerifyResult{Events: 1, Problem: "line 2: seq 3 after 1"},
		},
		{
			name:   "end cut off",
			tamper: func(ls [][]byte) []byte { return join(ls[:5]...) },
			want:   VerifyResult{Events: 5, OK: true, Problem: "no session_end after line 5"},
		},
		{
			name:   "cut in the middle of the last line",
			tamper: func(ls [][]byte) []byte { return join(join(ls[:5]...), ls[5][:40]) },
			want:   VerifyResult{Events: 5, OK: true, Problem: "line 6: partial last line left out"},
		},
		{
			name: "line replaced by a resealed forgery",
			tamper: func(ls [][]byte) []byte {
				ev, err := parseEvent(bytes.TrimSuffix(ls[2], []byte("\n")))
				if err != nil {
					t.Fatal(err)
				}
				ev.Command.Decision = "allow"
				forged, err := seal(&ev)
				if err != nil {
					t.Fatal(err)
				}
				ls[2] = forged
				return join(ls...)
			},
			want: VerifyResult{Events: 3, Problem: "line 4: prev does not match line 3"},
		},
		{
			name: "field added",
			tamper: func(ls [][]byte) []byte {
				ls[1] = bytes.Replace(ls[1], []byte(`{"type"`), []byte(`{"note":"x","type"`), 1)
				return join(ls...)
			},
			want: VerifyResult{Events: 1, Problem: "line 2: not in canonical form"},
		},
		{
			name:   "line after the end",
			tamper: func(ls [][]byte) []byte { return join(join(ls...), ls[1]) },
			want:   VerifyResult{Events: 6, Problem: "line 7: command after session_end"},
		},
		{
			name:   "garbage line",
			tamper: func(ls [][]byte) []byte { return join(ls[0], []byte("hello\n"), ls[1]) },
			want:   VerifyResult{Events: 1, Problem: "line 2: malformed event: invalid character 'h' looking for beginning of value"},
		},
		{
			name:   "empty",
			tamper: func(ls [][]byte) []byte { return nil },
			want:   VerifyResult{OK: true, Problem: "empty log: its session_start was never written"},
		},
		{
			name:   "cut in the middle of the first line",
			tamper: func(ls [][]byte) []byte { return ls[0][:40] },
			want:   VerifyResult{OK: true, Problem: "line 1: partial last line left out"},
		},
		{
			name:   "first line cut, the rest kept",
			tamper: func(ls [][]byte) []byte { return join(ls[0][:40], ls[1]) },
			want:   VerifyResult{Problem: "line 1: malformed event: invalid character 't' after object key:value pair"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t)
			data := tt.tamper(lines(bytes.Clone(orig)))
			if err := os.WriteFile(filepath.Join(s.Dir(), testID+".jsonl"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := s.Verify(testID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Verify = %+v\n           want %+v", got, tt.want)
			}
		})
	}
}

func TestVerifyOtherSession(t *testing.T) {
	s := newTestStore(t)
	data := writeSession(t, s, testID)
	other := "20261129T071500Z-ffffffff"
	if err := os.WriteFile(filepath.Join(s.Dir(), other+".jsonl"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := s.Verify(other)
	if err != nil {
		t.Fatal(err)
	}
	want := `line 1: session "20261129T071500Z-1a2b3c4d" in the log of "20261129T071500Z-ffffffff"`
	if got.OK || got.Problem != want {
		t.Errorf("Verify = %+v, want problem %s", got, want)
	}
}

func TestEventsMalformed(t *testing.T) {
	s := newTestStore(t)
	orig := writeSession(t, s, testID)
	ls := lines(orig)
	tests := []struct {
		name    string
		data    []byte
		wantErr string // "" for no error
		events  int
	}{
		{"bad json", bytes.Join([][]byte{ls[0], ls[1], []byte("{\"type\":\n")}, nil), "line 3: malformed event", 0},
		{"unknown type", bytes.Join([][]byte{ls[0], []byte(`{"type":"x"}` + "\n")}, nil), `line 2: malformed event: unknown type "x"`, 0},
		{"command without command", bytes.Join([][]byte{ls[0], []byte(`{"type":"command"}` + "\n")}, nil), "line 2: malformed event: command event", 0},
		{"empty line", bytes.Join([][]byte{ls[0], []byte("\n"), ls[1]}, nil), "line 2: malformed event", 0},
		{"partial last line left out", bytes.Join([][]byte{ls[0], ls[1], ls[2][:10]}, nil), "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(s.Dir(), testID+".jsonl"), tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			events, err := s.Events(testID)
			if tt.wantErr == "" {
				if err != nil || len(events) != tt.events {
					t.Fatalf("Events: %d events, %v; want %d", len(events), err, tt.events)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Events error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestStrict(t *testing.T) {
	s := newTestStore(t)
	s.Strict = true
	r, err := s.Create(testID, testStart(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if !r.strict {
		t.Fatal("recorder of a strict store is not strict")
	}
	// In strict mode each event is in the file when Command returns.
	for i, c := range testCommands() {
		if err := r.Command(c); err != nil {
			t.Fatal(err)
		}
		events, err := s.Events(testID)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != i+2 || events[i+1].Command.Text != c.Text {
			t.Fatalf("after command %d: %d events in the file", i+1, len(events))
		}
	}
	if err := r.Close(End{Reason: "done"}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Verify(testID)
	if err != nil || !res.OK || !res.Complete || res.Events != 6 {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}

func TestConcurrentCommands(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Create(testID, testStart(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := r.Command(Command{Text: strings.Repeat("x", w*100+i), Decision: "allow"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := r.Close(End{}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Verify(testID)
	if err != nil {
		t.Fatal(err)
	}
	if want := (VerifyResult{Events: workers*each + 2, OK: true, Complete: true}); !reflect.DeepEqual(res, want) {
		t.Fatalf("Verify = %+v, want %+v", res, want)
	}
	events, err := s.Events(testID)
	if err != nil {
		t.Fatal(err)
	}
	if end := events[len(events)-1].End; end.Commands != workers*each {
		t.Errorf("end counts %d commands, want %d", end.Commands, workers*each)
	}
}

func TestInvalidIDs(t *testing.T) {
	s := newTestStore(t)
	for _, id := range []string{
		"", ".", "..", "../x", "a/b", `a\b`, "/abs", "x..y", ".hidden", "a b", "a\x00b",
		"é", strings.Repeat("a", 129),
	} {
		if _, err := s.Create(id, Start{}, t0); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Create(%q) = %v, want ErrInvalidID", id, err)
		}
		if _, err := s.Events(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Events(%q) = %v, want ErrInvalidID", id, err)
		}
		if _, err := s.Verify(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Verify(%q) = %v, want ErrInvalidID", id, err)
		}
	}
	for _, id := range []string{testID, "a", "A.b_c-1", strings.Repeat("a", 128)} {
		if !ValidID(id) {
			t.Errorf("ValidID(%q) = false", id)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(s.Dir()))
	if len(entries) != 1 {
		t.Errorf("files created outside the store: %v", entries)
	}
}

func TestCreateExisting(t *testing.T) {
	s := newTestStore(t)
	orig := writeSession(t, s, testID)
	if _, err := s.Create(testID, Start{}, t0); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create = %v, want fs.ErrExist", err)
	}
	now, _ := os.ReadFile(filepath.Join(s.Dir(), testID+".jsonl"))
	if !bytes.Equal(now, orig) {
		t.Fatal("second Create changed the log")
	}
}

func TestNotFound(t *testing.T) {
	s := newTestStore(t)
	if _, err := s.Events(testID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Events = %v, want ErrNotFound", err)
	}
	if _, err := s.Verify(testID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Verify = %v, want ErrNotFound", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	s := newTestStore(t)
	r, err := s.Create(testID, Start{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := r.Close(End{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Command(Command{Text: "late"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Command after Close = %v, want ErrClosed", err)
	}
	res, err := s.Verify(testID)
	if err != nil || !reflect.DeepEqual(res, VerifyResult{Events: 2, OK: true, Complete: true}) {
		t.Errorf("Verify = %+v, %v", res, err)
	}
}

func TestWriteFailureSticky(t *testing.T) {
	s := newTestStore(t)
	r, err := s.Create(testID, Start{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Command(Command{Text: "one"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	r.f.Close() // the next write fails as a full or vanished disk would
	if err := r.Command(Command{Text: "two"}); err != nil {
		t.Fatalf("queueing a command = %v; the write comes later", err)
	}
	select {
	case <-r.Failed():
		t.Fatal("Failed before anything failed")
	default:
	}
	// The batch is written by the flush timer: the failure shows in
	// Failed and Err, and in every later call.
	select {
	case <-r.Failed():
	case <-time.After(10 * time.Second):
		t.Fatal("the failed background write was not signalled")
	}
	if err := r.Err(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Err = %v, want the write failure", err)
	}
	if err := r.Command(Command{Text: "three"}); err == nil || !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Command after a failure = %v, want the first failure again", err)
	}
	if err := r.Flush(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Flush after a failure = %v, want the first failure again", err)
	}
	if err := r.Close(End{}); err == nil {
		t.Error("Close after a failure returned nil")
	}
	if err := r.Close(End{}); err != nil {
		t.Errorf("second Close = %v", err)
	}
	res, err := s.Verify(testID)
	if err != nil || !res.OK || res.Complete || res.Events != 2 {
		t.Errorf("Verify = %+v, %v; want the 2 events before the failure, incomplete", res, err)
	}
}

func TestNonFiniteDuration(t *testing.T) {
	s := newTestStore(t)
	r, err := s.Create(testID, Start{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	var zero float64
	if err := r.Command(Command{Text: "x", DurationMS: 1 / zero}); err != nil {
		t.Fatalf("Command with an infinite duration: %v", err)
	}
	if err := r.Close(End{}); err != nil {
		t.Fatal(err)
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestGolden(t *testing.T) {
	s := newTestStore(t)
	log := writeSession(t, s, testID)
	// The log itself is a wire format: its hashes pin the chain's definition.
	checkGolden(t, "session.jsonl", log)

	events, err := s.Events(testID)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := WriteText(&text, events); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "session.txt", text.Bytes())
	if bytes.ContainsAny(text.Bytes(), "\x1b\x07") || strings.Contains(text.String(), "\u202e") {
		t.Error("transcript passes control characters through")
	}

	r, err := s.Create("20261129T081500Z-0badc0de", Start{Protocol: "ssh", Target: "bastion", Subject: "bob"}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Command(Command{Text: "id", Decision: "allow"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	sums, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := WriteSummaryTable(&table, sums); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "sessions.txt", table.Bytes())
	r.Close(End{})
}

// TestGoldenVerifies keeps the committed log verifiable: a change to Event or
// to the chain that breaks old logs fails here.
func TestGoldenVerifies(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "session.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := verify(bytes.NewReader(data), testID)
	if err != nil || !reflect.DeepEqual(res, VerifyResult{Events: 6, OK: true, Complete: true}) {
		t.Fatalf("verify(testdata/session.jsonl) = %+v, %v", res, err)
	}
}

// TestSealIsCanonical: the single-encoding seal writes exactly what
// json.Marshal of the sealed event gives, which Verify requires.
func TestSealIsCanonical(t *testing.T) {
	ev := &Event{Type: EventCommand, Session: "s", Seq: 2, Prev: "abc",
		Command: &Command{Text: `SELECT '"\u2028<>&'`, Decision: "allow", Rows: 3}}
	line, err := seal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if string(line) != string(want)+"\n" {
		t.Errorf("sealed line\n%s\nwant\n%s", line, want)
	}
	h, err := chainHash(ev)
	if err != nil || h != ev.Hash {
		t.Errorf("hash %q, chainHash %q (%v)", ev.Hash, h, err)
	}
}

func TestBatching(t *testing.T) {
	s := newTestStore(t)
	s.FlushInterval = time.Hour // only size, Flush and Close write
	r, err := s.Create(testID, testStart(), t0)
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		t.Helper()
		events, err := s.Events(testID)
		if err != nil {
			t.Fatal(err)
		}
		return len(events)
	}
	if n := count(); n != 1 {
		t.Fatalf("after Create: %d events in the file, want session_start", n)
	}
	for i := range maxQueued - 1 {
		if err := r.Command(Command{Text: fmt.Sprintf("SELECT %d", i), Decision: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 1 {
		t.Fatalf("%d queued commands: %d events in the file, want them still queued", maxQueued-1, n)
	}
	if err := r.Command(Command{Text: "SELECT last", Decision: "allow"}); err != nil {
		t.Fatal(err)
	}
	// A full batch is written in the background, soon.
	waitEvents(t, count, 1+maxQueued)
	if err := r.Command(Command{Text: "DROP TABLE t", Decision: "deny"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2+maxQueued {
		t.Fatalf("after Flush: %d events, want %d", n, 2+maxQueued)
	}
	if err := r.Close(End{}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Verify(testID)
	if err != nil || !res.OK || !res.Complete || res.Events != 3+maxQueued {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	events, err := s.Events(testID)
	if err != nil {
		t.Fatal(err)
	}
	if end := events[len(events)-1].End; end.Commands != maxQueued+1 || end.Denied != 1 {
		t.Errorf("session_end counts %+v", end)
	}
}

// waitEvents waits until count says the file holds want events.
func waitEvents(t *testing.T, count func() int, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n := count(); n != want; n = count() {
		if time.Now().After(deadline) {
			t.Fatalf("%d events in the file, want %d", n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFlushInterval(t *testing.T) {
	s := newTestStore(t)
	s.FlushInterval = 20 * time.Millisecond
	r, err := s.Create(testID, testStart(), t0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(End{})
	if err := r.Command(Command{Text: "SELECT 1", Decision: "allow"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		events, err := s.Events(testID)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queued command was not written by the flush timer (%d events)", len(events))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConcurrentBatches(t *testing.T) {
	s := newTestStore(t)
	s.now = time.Now
	s.FlushInterval = time.Millisecond
	r, err := s.Create(testID, testStart(), t0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 300 {
				if err := r.Command(Command{Text: fmt.Sprintf("SELECT %d, %d", g, i), Decision: "allow"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := r.Close(End{}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Verify(testID)
	if err != nil || !res.OK || !res.Complete || res.Events != 2+4*300 {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}

func BenchmarkRecorderCommand(b *testing.B) {
	s, err := OpenStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	r, err := s.Create(testID, testStart(), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	c := Command{Text: "SELECT abalance FROM pgbench_accounts WHERE aid = 4242", Command: "SELECT", Kind: "read",
		Decision: "allow", DurationMS: 0.042, Rows: 1, Tag: "SELECT 1"}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Command(c); err != nil {
			b.Fatal(err)
		}
	}
	if err := r.Close(End{}); err != nil {
		b.Fatal(err)
	}
}

func TestStrictBeginResult(t *testing.T) {
	s := newTestStore(t)
	s.Strict = true
	r, err := s.Create(testID, testStart(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Strict() {
		t.Fatal("not strict")
	}
	seq, err := r.Begin(Command{Text: "UPDATE t SET x = 1", Command: "UPDATE", Decision: "allow"})
	if err != nil || seq != 2 {
		t.Fatalf("Begin = %d, %v", seq, err)
	}
	// On disk before anything ran.
	events, err := s.Events(testID)
	if err != nil || len(events) != 2 || events[1].Command == nil || events[1].Command.Tag != "" {
		t.Fatalf("after Begin: %+v %v", events, err)
	}
	if err := r.Result(Result{Of: seq, Tag: "UPDATE 1", Rows: 1, DurationMS: 1.5}); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(End{}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Verify(testID)
	if err != nil || !res.OK || !res.Complete || res.Events != 4 {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	events, _ = s.Events(testID)
	if ev := events[2]; ev.Type != EventResult || ev.Result.Of != 2 || ev.Result.Tag != "UPDATE 1" {
		t.Errorf("result event %+v", ev)
	}
	if end := events[3].End; end.Commands != 1 {
		t.Errorf("a result counted as a command: %+v", end)
	}
	var text bytes.Buffer
	WriteText(&text, events)
	if !strings.Contains(text.String(), "result of #2\n    UPDATE 1, rows=1, 1.5ms") {
		t.Errorf("transcript:\n%s", text.String())
	}
	// Begin needs strict recording.
	s2 := newTestStore(t)
	r2, _ := s2.Create(testID, testStart(), t0)
	if _, err := r2.Begin(Command{Text: "x"}); err == nil {
		t.Error("Begin without strict recording")
	}
	r2.Close(End{})
}

// A Recorder holds its queue only while events wait: once they are written
// an idle session pins nothing, however large the burst before was.
func TestRecorderHoldsNoQueueWhenIdle(t *testing.T) {
	s := newTestStore(t)
	r, err := s.Create(testID, testStart(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if r.queue != nil || r.queuep != nil {
		t.Errorf("after the start event: a queue of %d", cap(r.queue))
	}
	for range maxQueued * 2 {
		if err := r.Command(Command{Text: "SELECT 1", Decision: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	held := r.queue != nil || r.queuep != nil
	r.mu.Unlock()
	if held {
		t.Error("after the flush the Recorder still holds its queue")
	}
	if err := r.Close(End{}); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Verify(testID); err != nil || !res.OK || res.Events != 2+2*maxQueued {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}

// TestCreateStartNotWritten: a session whose start cannot be written (a
// full disk) leaves no log behind, rather than an empty one.
func TestCreateStartNotWritten(t *testing.T) {
	s := newTestStore(t)
	s.openLog = func(path string) (*os.File, error) {
		// Created, but every write fails, as on a full disk.
		return os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if _, err := s.Create(testID, testStart(), t0); err == nil {
		t.Fatal("Create succeeded without writing the start")
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), testID+".jsonl")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("log left behind: %v", err)
	}
	if _, err := s.Verify(testID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Verify = %v, want ErrNotFound", err)
	}
}

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r *bytes.Reader
	n int
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.n += len(p)
	return c.r.ReadAt(p, off)
}

// TestListReadsEnds: a session that ended is summarised from its first and
// last lines, exactly as reading every line would summarise it.
func TestListReadsEnds(t *testing.T) {
	s := newTestStore(t)
	r, err := s.Create(testID, testStart(), t0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		c := testCommands()[i%4]
		if err := r.Command(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(End{Reason: "client closed"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(s.Dir(), testID+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	all, err := summariseAll(bytes.NewReader(data), testID)
	if err != nil {
		t.Fatal(err)
	}
	cr := &countingReaderAt{r: bytes.NewReader(data)}
	got, ok, err := summariseEnds(cr, int64(len(data)), testID)
	if err != nil || !ok {
		t.Fatalf("summariseEnds: %v, %v", ok, err)
	}
	if !reflect.DeepEqual(got, all) || got.Commands != 3000 || got.Denied != 750 {
		t.Errorf("from the ends: %+v\nline by line: %+v", got, all)
	}
	if cr.n > 64<<10 || len(data) < 1<<20 {
		t.Errorf("read %d of the log's %d bytes", cr.n, len(data))
	}

	// Every other shape of log: the same summary as reading every line.
	ls := lines(writeSession(t, s, "20261129T081500Z-0badc0de"))
	join := func(ls ...[]byte) []byte { return bytes.Join(ls, nil) }
	for name, data := range map[string][]byte{
		"complete":            join(ls...),
		"no end":              join(ls[:5]...),
		"end cut":             join(join(ls[:5]...), ls[5][:30]),
		"partial after end":   join(join(ls...), ls[1][:30]),
		"only start":          ls[0],
		"start cut":           ls[0][:30],
		"empty":               nil,
		"first line damaged":  join([]byte("{not json\n"), join(ls[1:]...)),
		"last line not event": join(join(ls...), []byte("junk\n")),
		"end without newline": bytes.TrimSuffix(join(ls...), []byte("\n")),
	} {
		all, err := summariseAll(bytes.NewReader(data), testID)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(s.Dir(), testID+".jsonl")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := s.summarise(testID)
		if err != nil || !reflect.DeepEqual(got, all) {
			t.Errorf("%s: summarise = %+v, %v\nline by line: %+v", name, got, err, all)
		}
	}
	// List does not verify: with the lines between start and end removed,
	// the counts are still session_end's (sessions verify finds the gap).
	if err := os.WriteFile(filepath.Join(s.Dir(), testID+".jsonl"), join(ls[0], ls[5]), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := s.summarise(testID); err != nil || got.Commands != 4 || got.Denied != 1 || got.Incomplete {
		t.Errorf("start and end only: %+v, %v", got, err)
	}
}

// TestReadOnlyStore: reading a store whose folder does not exist creates
// nothing and finds no sessions.
func TestReadOnlyStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "recordings")
	s, err := OpenStoreReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	if sums, err := s.List(); err != nil || len(sums) != 0 {
		t.Errorf("List = %v, %v; want no sessions", sums, err)
	}
	if _, err := s.Verify(testID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Verify = %v, want ErrNotFound", err)
	}
	if _, err := s.Events(testID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Events = %v, want ErrNotFound", err)
	}
	if _, err := s.Create(testID, Start{}, t0); err == nil {
		t.Error("Create on a read-only store succeeded")
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the folder was created: %v", err)
	}
}
