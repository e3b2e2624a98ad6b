package asciicast

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// fakeSleep records the pauses Play asks for without waiting.
type fakeSleep struct{ pauses []time.Duration }

func (f *fakeSleep) sleep(ctx context.Context, d time.Duration) error {
	f.pauses = append(f.pauses, d)
	return nil
}

func TestPlay(t *testing.T) {
	const rec = hdr +
		"[0.5, \"o\", \"a\"]\n" +
		"[1.0, \"i\", \"typed\"]\n" +
		"[1.5, \"o\", \"b\"]\n" +
		"[1.5, \"m\", \"mark\"]\n" +
		"[2.0, \"r\", \"100x30\"]\n" +
		"[12.0, \"o\", \"c\"]\n" +
		"[11.0, \"o\", \"d\"]\n" + // out of order: no pause, and no double pause after
		"[12.25, \"o\", \"\"]\n" + // nothing to write: no pause
		"[12.5, \"o\", \"e\"]\n"
	s := time.Second
	tests := []struct {
		name   string
		file   string
		opts   PlayOptions
		out    string
		pauses []time.Duration
	}{
		{"defaults", rec, PlayOptions{}, "abcde",
			[]time.Duration{s / 2, s, 2 * s, s / 2}},
		{"speed 2", rec, PlayOptions{Speed: 2}, "abcde",
			[]time.Duration{s / 4, s / 2, s, s / 4}},
		{"no cap", rec, PlayOptions{MaxIdle: -1}, "abcde",
			[]time.Duration{s / 2, s, 10500 * ms, s / 2}},
		{"cap 300ms", rec, PlayOptions{MaxIdle: 300 * ms}, "abcde",
			[]time.Duration{300 * ms, 300 * ms, 300 * ms, 300 * ms}},
		{"cap then speed", rec, PlayOptions{MaxIdle: 800 * ms, Speed: 4}, "abcde",
			[]time.Duration{125 * ms, 200 * ms, 200 * ms, 125 * ms}},
		{"resize", rec, PlayOptions{Resize: true}, "ab\x1b[8;30;100tcde",
			[]time.Duration{s / 2, s, s / 2, 2 * s, s / 2}},
		{"header idle limit", `{"version":2,"width":80,"height":24,"idle_time_limit":0.75}` + "\n" +
			"[0.1, \"o\", \"a\"]\n[100, \"o\", \"b\"]\n", PlayOptions{}, "ab",
			[]time.Duration{100 * ms, 750 * ms}},
		{"option beats header", `{"version":2,"width":80,"height":24,"idle_time_limit":0.75}` + "\n" +
			"[0.1, \"o\", \"a\"]\n[100, \"o\", \"b\"]\n", PlayOptions{MaxIdle: 5 * s}, "ab",
			[]time.Duration{100 * ms, 5 * s}},
		{"huge times", hdr + "[1e300, \"o\", \"a\"]\n", PlayOptions{MaxIdle: -1}, "a",
			[]time.Duration{1<<63 - 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			fs := &fakeSleep{}
			tt.opts.Sleep = fs.sleep
			if err := Play(context.Background(), &out, strings.NewReader(tt.file), tt.opts); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.out {
				t.Errorf("output %q, want %q", out.String(), tt.out)
			}
			if fmt.Sprint(fs.pauses) != fmt.Sprint(tt.pauses) {
				t.Errorf("pauses %v, want %v", fs.pauses, tt.pauses)
			}
		})
	}
}

func TestPlayErrors(t *testing.T) {
	errSleep := errors.New("sleep failed")
	tests := []struct {
		name string
		file string
		opts PlayOptions
		out  string // written before the error
		want error
	}{
		{"negative speed", hdr, PlayOptions{Speed: -1}, "", ErrInvalid},
		{"no header", "", PlayOptions{}, "", ErrMalformed},
		{"malformed", hdr + "[0, \"o\", \"a\"]\n[1, \"o\"]\n", PlayOptions{}, "a", ErrMalformed},
		{"sleep fails", hdr + "[0, \"o\", \"a\"]\n[1, \"o\", \"b\"]\n", PlayOptions{
			Sleep: func(context.Context, time.Duration) error { return errSleep },
		}, "a", errSleep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Sleep == nil {
				tt.opts.Sleep = (&fakeSleep{}).sleep
			}
			var out bytes.Buffer
			err := Play(context.Background(), &out, strings.NewReader(tt.file), tt.opts)
			if !errors.Is(err, tt.want) {
				t.Errorf("Play = %v, want %v", err, tt.want)
			}
			if out.String() != tt.out {
				t.Errorf("output %q, want %q", out.String(), tt.out)
			}
		})
	}
}

// cancelOnWrite cancels a context at the first output Play writes.
// Not an embedded Buffer: Play would call its WriteString instead.
type cancelOnWrite struct {
	buf    bytes.Buffer
	cancel context.CancelCauseFunc
}

func (w *cancelOnWrite) Write(p []byte) (int, error) {
	w.cancel(errStop)
	return w.buf.Write(p)
}

var errStop = errors.New("viewer left")

// Play with the real timer stops in the middle of an hour's pause when the
// context ends, and says why.
func TestPlayCancel(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	w := &cancelOnWrite{cancel: cancel}
	file := hdr + "[0, \"o\", \"a\"]\n[3600, \"o\", \"b\"]\n"
	done := make(chan error, 1)
	go func() { done <- Play(ctx, w, strings.NewReader(file), PlayOptions{MaxIdle: -1}) }()
	select {
	case err := <-done:
		if !errors.Is(err, errStop) {
			t.Errorf("Play = %v, want the cancel cause", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Play did not return after its context ended")
	}
	if w.buf.String() != "a" {
		t.Errorf("output %q, want %q", w.buf.String(), "a")
	}

	// Cancelled during the pause before the first output.
	ctx, cancel = context.WithCancelCause(context.Background())
	var out bytes.Buffer
	go func() {
		time.Sleep(20 * ms)
		cancel(errStop)
	}()
	go func() {
		done <- Play(ctx, &out, strings.NewReader(hdr+"[3600, \"o\", \"a\"]\n"), PlayOptions{MaxIdle: -1})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errStop) || out.Len() != 0 {
			t.Errorf("Play = %v, wrote %q; want the cancel cause and nothing written", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Play did not return after its context ended")
	}

	// Already cancelled: nothing is written.
	out.Reset()
	ctx, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := Play(ctx, &out, strings.NewReader(file), PlayOptions{}); !errors.Is(err, context.Canceled) || out.Len() != 0 {
		t.Errorf("Play with a cancelled context = %v, wrote %q", err, out.String())
	}
}

// The real timer, briefly: the pauses of a short recording pass.
func TestPlayRealSleep(t *testing.T) {
	var out bytes.Buffer
	file := hdr + "[0.01, \"o\", \"a\"]\n[0.02, \"o\", \"b\"]\n"
	if err := Play(context.Background(), &out, strings.NewReader(file), PlayOptions{}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "ab" {
		t.Errorf("output %q", out.String())
	}
}

func TestDump(t *testing.T) {
	f, err := os.Open("testdata/session.cast")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	if err := Dump(&out, f, DumpOptions{Raw: true}); err != nil {
		t.Fatal(err)
	}
	want := "\x1b[?2004h$ ls\r\ncafé  \"notes\\today\".txt\r\nbin\ufffd\tdata\r\n$ exit\r\nlogout\r\n"
	if out.String() != want {
		t.Errorf("Dump wrote %q, want %q", out.String(), want)
	}

	out.Reset()
	err = Dump(&out, strings.NewReader(hdr+"[0, \"o\", \"a\"]\n[1, \"o\", \"b\"]\n[x]\n"), DumpOptions{})
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("Dump of a malformed file = %v, want ErrMalformed naming line 4", err)
	}
	if out.String() != "ab" {
		t.Errorf("Dump wrote %q before the error, want %q", out.String(), "ab")
	}
}

// asciinema itself agrees with the golden file, when it is installed.
func TestAsciinemaCat(t *testing.T) {
	bin, err := exec.LookPath("asciinema")
	if err != nil {
		t.Skip("asciinema is not installed")
	}
	got, err := exec.Command(bin, "cat", "testdata/session.cast").Output()
	if err != nil {
		t.Fatalf("asciinema cat: %v", err)
	}
	var want bytes.Buffer
	f, err := os.Open("testdata/session.cast")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Dump(&want, f, DumpOptions{Raw: true}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("asciinema cat: %q, Dump: %q", got, want.Bytes())
	}
}
