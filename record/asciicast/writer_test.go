package asciicast

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/record"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const ms = time.Millisecond

var testHeader = Header{
	Width:     80,
	Height:    24,
	Timestamp: 1764400500,
	Env:       map[string]string{"TERM": "xterm-256color", "SHELL": "/bin/bash"},
	Title:     "alice@orders-db",
}

// writeSession records the session the golden file holds.
func writeSession(t *testing.T, w *Writer) {
	t.Helper()
	steps := []error{
		w.Output(0, []byte("\x1b[?2004h$ ")),
		w.Input(1200*ms, []byte("l")),
		w.Output(1201*ms, []byte("l")),
		w.Input(1350*ms, []byte("s\r")),
		w.Output(1351*ms, []byte("s\r\n")),
		w.Marker(1400*ms, "command: ls"),
		// "café" with the é cut by the network.
		w.Output(1500*ms, []byte("caf\xc3")),
		w.Output(1502*ms, []byte("\xa9  \"notes\\today\".txt\r\n")),
		w.Output(1503*ms, []byte("bin\xff\tdata\r\n$ ")),
		w.Resize(2500*ms, 120, 40),
		w.Input(4*time.Second+250*time.Microsecond, []byte("exit\r")),
		w.Output(4*time.Second+251*time.Microsecond, []byte("exit\r\nlogout\r\n")),
	}
	if err := errors.Join(steps...); err != nil {
		t.Fatal(err)
	}
}

func createTemp(t *testing.T, h Header) (*Writer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s"+FileExt)
	w, err := Create(path, h)
	if err != nil {
		t.Fatal(err)
	}
	return w, path
}

func TestGolden(t *testing.T) {
	w, path := createTemp(t, testHeader)
	writeSession(t, w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "session.cast", got)
	if w.Size() != int64(len(got)) {
		t.Errorf("Size = %d, the file has %d bytes", w.Size(), len(got))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestRoundTrip(t *testing.T) {
	w, path := createTemp(t, testHeader)
	writeSession(t, w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	h, events := readAll(t, path)
	want := testHeader
	want.Version = 2
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Errorf("header %+v, want %+v", h, want)
	}
	wantEvents := []Event{
		{0, "o", "\x1b[?2004h$ "},
		{1.2, "i", "l"},
		{1.201, "o", "l"},
		{1.35, "i", "s\r"},
		{1.351, "o", "s\r\n"},
		{1.4, "m", "command: ls"},
		{1.5, "o", "caf"},
		{1.502, "o", "é  \"notes\\today\".txt\r\n"},
		{1.503, "o", "bin\ufffd\tdata\r\n$ "},
		{2.5, "r", "120x40"},
		{4.00025, "i", "exit\r"},
		{4.000251, "o", "exit\r\nlogout\r\n"},
	}
	if len(events) != len(wantEvents) {
		t.Fatalf("read %d events, want %d: %s", len(events), len(wantEvents), show(events...))
	}
	for i, ev := range events {
		if ev != wantEvents[i] {
			t.Errorf("event %d = %s, want %s", i, show(ev), show(wantEvents[i]))
		}
	}
	if cols, rows, ok := events[9].Size(); !ok || cols != 120 || rows != 40 {
		t.Errorf("Size of the resize = %d, %d, %v", cols, rows, ok)
	}
	if _, _, ok := events[0].Size(); ok {
		t.Error("Size of an output event is ok")
	}
}

func readAll(t *testing.T, path string) (Header, []Event) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := Open(f)
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return rd.Header(), events
		}
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
}

// outputs returns the data of the output events in path.
func outputs(t *testing.T, path string) []string {
	t.Helper()
	_, events := readAll(t, path)
	var out []string
	for _, ev := range events {
		if ev.Code == CodeOutput {
			out = append(out, ev.Data)
		}
	}
	return out
}

func TestUTF8(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   []string // output events read back
	}{
		{"whole", []string{"é"}, []string{"é"}},
		{"two-byte split", []string{"\xc3", "\xa9"}, []string{"é"}},
		{"split after text", []string{"caf\xc3", "\xa9!"}, []string{"caf", "é!"}},
		{"four-byte split thrice", []string{"\xf0", "\x9f", "\x98", "\x80"}, []string{"😀"}},
		{"three-byte split", []string{"\xe2\x82", "\xac"}, []string{"€"}},
		{"lone continuation", []string{"a\xa9b"}, []string{"a\ufffdb"}},
		{"invalid bytes", []string{"\xff\xfe ok"}, []string{"\ufffd\ufffd ok"}},
		{"cut lead then ascii", []string{"\xc3", "A"}, []string{"\ufffdA"}},
		{"surrogate", []string{"\xed\xa0\x80"}, []string{"\ufffd\ufffd\ufffd"}},
		{"cut at close", []string{"x\xe2\x82"}, []string{"x", "\ufffd\ufffd"}},
		{"only cut at close", []string{"\xc3"}, []string{"\ufffd"}},
		{"controls", []string{"\x00\x07\x1b[0m\x7f\b\f"}, []string{"\x00\x07\x1b[0m\x7f\b\f"}},
		{"empty", []string{""}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, path := createTemp(t, testHeader)
			for i, c := range tt.chunks {
				if err := w.Output(time.Duration(i)*ms, []byte(c)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got := outputs(t, path)
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
				t.Errorf("outputs %q, want %q", got, tt.want)
			}
		})
	}
}

// Input keeps its own cut character: output in between does not break it.
func TestInputCarry(t *testing.T) {
	w, path := createTemp(t, testHeader)
	err := errors.Join(
		w.Input(0, []byte("\xc3")),
		w.Output(1*ms, []byte("\xe2\x82")),
		w.Input(2*ms, []byte("\xa9")),
		w.Output(3*ms, []byte("\xac")),
		w.Close(),
	)
	if err != nil {
		t.Fatal(err)
	}
	_, events := readAll(t, path)
	want := []Event{{0.002, "i", "é"}, {0.003, "o", "€"}}
	if show(events...) != show(want...) {
		t.Errorf("events %s, want %s", show(events...), show(want...))
	}
}

// Large output is split into several events at character boundaries, all
// lines within what the Reader accepts, and nothing is lost.
func TestLargeOutput(t *testing.T) {
	var data bytes.Buffer
	for data.Len() < 3*maxChunk {
		data.WriteString("\x1b€x") // escaping makes ESC six bytes; € is three
	}
	w, path := createTemp(t, testHeader)
	if err := w.Output(time.Second, data.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := outputs(t, path)
	if len(got) < 3 {
		t.Errorf("%d events, want the output split", len(got))
	}
	if strings.Join(got, "") != data.String() {
		t.Error("output read back differs from what was written")
	}
}

func TestTimes(t *testing.T) {
	w, path := createTemp(t, testHeader)
	err := errors.Join(
		w.Output(-time.Second, []byte("a")), // before the start: 0
		w.Output(2*time.Second, []byte("b")),
		w.Resize(time.Second, 100, 30), // took the lock late: stays at 2 s
		w.Output(2*time.Second+999999*time.Nanosecond, []byte("c")),
		w.Output(123*time.Hour+7*time.Microsecond, []byte("d")),
		w.Close(),
	)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	want := []string{
		`[0.000000, "o", "a"]`,
		`[2.000000, "o", "b"]`,
		`[2.000000, "r", "100x30"]`,
		`[2.000999, "o", "c"]`,
		`[442800.000007, "o", "d"]`,
		``,
	}
	if fmt.Sprint(lines[1:]) != fmt.Sprint(want) {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(lines[1:], "\n"), strings.Join(want, "\n"))
	}
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		h    Header
		want error
	}{
		{"version 1", Header{Version: 1, Width: 80, Height: 24}, ErrVersion},
		{"version 3", Header{Version: 3, Width: 80, Height: 24}, ErrInvalid},
		{"no width", Header{Height: 24}, ErrInvalid},
		{"no height", Header{Width: 80}, ErrInvalid},
		{"huge", Header{Width: 1 << 20, Height: 24}, ErrInvalid},
		{"negative idle", Header{Width: 80, Height: 24, IdleTimeLimit: -1}, ErrInvalid},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprint(i))
			w, err := Create(path, tt.h)
			if !errors.Is(err, tt.want) {
				t.Errorf("Create = %v, want %v", err, tt.want)
			}
			if w != nil {
				t.Error("non-nil Writer with an error")
			}
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused header left a file: %v", err)
			}
		})
	}

	path := filepath.Join(dir, "exists")
	if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(path, testHeader); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over an existing file = %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep" {
		t.Errorf("existing file changed to %q", b)
	}
}

func TestPath(t *testing.T) {
	p, err := Path("/state/recordings", "20261129T071500Z-1a2b3c4d")
	if err != nil || p != "/state/recordings/20261129T071500Z-1a2b3c4d.cast" {
		t.Errorf("Path = %q, %v", p, err)
	}
	for _, id := range []string{"", "../x", "a/b", ".hidden"} {
		if _, err := Path("/state/recordings", id); !errors.Is(err, record.ErrInvalidID) {
			t.Errorf("Path(%q) = %v, want record.ErrInvalidID", id, err)
		}
	}
}

func TestClose(t *testing.T) {
	w, _ := createTemp(t, testHeader)
	if err := w.Resize(0, 0, 24); !errors.Is(err, ErrInvalid) {
		t.Errorf("Resize to 0 columns = %v, want ErrInvalid", err)
	}
	if err := w.Output(0, []byte("still usable")); err != nil {
		t.Errorf("Output after a refused resize: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	for name, err := range map[string]error{
		"Output": w.Output(0, []byte("x")),
		"Input":  w.Input(0, []byte("x")),
		"Resize": w.Resize(0, 80, 24),
		"Marker": w.Marker(0, "x"),
		"Flush":  w.Flush(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// Digest is the SHA-256 and length of the file as closed, also after
// timed flushes and large output; not before Close, nor after a failure.
func TestDigest(t *testing.T) {
	w, path := createTemp(t, testHeader)
	writeSession(t, w)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := w.Output(5*time.Second, bytes.Repeat([]byte("large \x1b[1m"), 20000)); err != nil {
		t.Fatal(err)
	}
	w.Output(6*time.Second, []byte("cut \xe2\x82")) // held back until Close
	if _, err := w.Digest(); err == nil {
		t.Error("Digest before Close")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := w.Digest()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if want := (Digest{SHA256: hex.EncodeToString(sum[:]), Bytes: int64(len(data))}); got != want {
		t.Errorf("Digest = %+v, the file's is %+v", got, want)
	}

	line, _ := headerLine(testHeader)
	fw, err := newWriter(&failingFile{}, line)
	if err != nil {
		t.Fatal(err)
	}
	fw.Output(0, []byte("lost"))
	fw.Close()
	if d, err := fw.Digest(); !errors.Is(err, errDiskFull) {
		t.Errorf("Digest after a failed write = %+v, %v; want the failure", d, err)
	}
}

// failingFile accepts the header and fails every later write.
type failingFile struct {
	bytes.Buffer
	writes int
	closed bool
}

var errDiskFull = errors.New("disk full")

func (f *failingFile) Write(p []byte) (int, error) {
	f.writes++
	if f.writes > 1 {
		return 0, errDiskFull
	}
	return f.Buffer.Write(p)
}
func (f *failingFile) Sync() error  { return nil }
func (f *failingFile) Close() error { f.closed = true; return nil }
func (f *failingFile) Name() string { return "failing.cast" }

func TestWriteFailure(t *testing.T) {
	line, err := headerLine(testHeader)
	if err != nil {
		t.Fatal(err)
	}
	f := &failingFile{}
	w, err := newWriter(f, line)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Output(0, []byte("lost")); err != nil {
		t.Fatalf("buffered Output = %v", err)
	}
	if err := w.Flush(); !errors.Is(err, errDiskFull) {
		t.Errorf("Flush = %v, want the write failure", err)
	}
	select {
	case <-w.Failed():
	default:
		t.Error("Failed not closed after a write failure")
	}
	if err := w.Output(0, []byte("more")); !errors.Is(err, errDiskFull) {
		t.Errorf("Output after a failure = %v, want the failure again", err)
	}
	if err := w.Close(); !errors.Is(err, errDiskFull) {
		t.Errorf("Close after a failure = %v, want the failure", err)
	}
	if !f.closed {
		t.Error("file not closed")
	}
	if f.String() != string(line) {
		t.Errorf("file holds %q, want the header only", f.String())
	}
}

// Events reach the file without Close or Flush: a live recording can be
// followed, and a crash loses at most the last moments.
func TestTimedFlush(t *testing.T) {
	w, path := createTemp(t, testHeader)
	defer w.Close()
	if err := w.Output(0, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), `"hello"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("output not in the file after 10 s")
		}
		time.Sleep(10 * ms)
	}
}

// Output, input and resizes from several goroutines: no race, nothing lost,
// times never go back in the file.
func TestConcurrent(t *testing.T) {
	w, path := createTemp(t, testHeader)
	start := time.Now()
	const n = 500
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range n {
				var err error
				since := time.Since(start)
				switch g {
				case 0:
					err = w.Output(since, []byte(fmt.Sprintf("out %d é\r\n", i)))
				case 1:
					err = w.Input(since, []byte{"ab"[i%2]})
				case 2:
					err = w.Resize(since, 80+i%10, 24)
				case 3:
					if i%50 == 0 {
						err = w.Flush()
					} else {
						err = w.Output(since, []byte("\xc3\xa9"))
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, events := readAll(t, path)
	counts := map[string]int{}
	prev := 0.0
	for _, ev := range events {
		counts[ev.Code]++
		if ev.Time < prev {
			t.Fatalf("time went back: %v after %v", ev.Time, prev)
		}
		prev = ev.Time
		if ev.Code == CodeOutput && strings.ContainsRune(ev.Data, '\ufffd') {
			t.Fatalf("replacement character in %q", ev.Data)
		}
	}
	want := map[string]int{"o": n + n - n/50, "i": n, "r": n}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("events by code %v, want %v", counts, want)
	}
}

// show formats events for messages, data quoted.
func show(events ...Event) string {
	var b strings.Builder
	for _, ev := range events {
		fmt.Fprintf(&b, "[%v %s %q]", ev.Time, ev.Code, ev.Data)
	}
	return b.String()
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

func TestLongMarker(t *testing.T) {
	w, path := createTemp(t, testHeader)
	label := "x" + strings.Repeat("é", maxChunk)
	if err := errors.Join(w.Marker(0, label), w.Close()); err != nil {
		t.Fatal(err)
	}
	_, events := readAll(t, path)
	if len(events) != 1 || !strings.HasPrefix(label, events[0].Data) || len(events[0].Data) != maxChunk-1 {
		t.Errorf("marker of %d bytes read back as %d events, first %d bytes", len(label), len(events), len(events[0].Data))
	}
}

// BenchmarkOutput is the proxy's hot path: many small chunks of terminal
// output.
func BenchmarkOutput(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench"+FileExt)
	w, err := Create(path, testHeader)
	if err != nil {
		b.Fatal(err)
	}
	chunk := []byte("\x1b[32mtotal 48\x1b[0m\r\n-rw-r--r-- 1 alice alice 4096 café.txt\r\n")
	b.SetBytes(int64(len(chunk)))
	start := time.Now()
	for b.Loop() {
		if err := w.Output(time.Since(start), chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}
