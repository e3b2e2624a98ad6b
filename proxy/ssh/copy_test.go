package ssh

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

// chunkReader returns its chunks one per Read (as much as fits), noting
// the buffer size of every Read, then err.
type chunkReader struct {
	chunks [][]byte
	err    error
	sizes  []int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	r.sizes = append(r.sizes, len(p))
	if len(r.chunks) == 0 {
		return 0, r.err
	}
	n := copy(p, r.chunks[0])
	if n == len(r.chunks[0]) {
		r.chunks = r.chunks[1:]
	} else {
		r.chunks[0] = r.chunks[0][n:]
	}
	return n, nil
}

// relayCopy copies everything in order, reads into the small buffer while
// little flows and into the large one while reads fill it, and returns
// io.Copy's results.
func TestRelayCopy(t *testing.T) {
	fill := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	r := &chunkReader{err: io.EOF, chunks: [][]byte{
		[]byte("ls\n"),              // a keystroke: small buffer
		fill(100<<10, 'a'),          // bulk: fills the small one, then large reads
		[]byte("$ "),                // a prompt: back to the small buffer
		fill(idleCopyBuffer, 'b'),   // exactly full: large from the next read
		fill(busyCopyBuffer/8, 'c'), // small for the large buffer: back
		[]byte("exit\n"),
	}}
	var want bytes.Buffer
	for _, c := range r.chunks {
		want.Write(c)
	}
	var got bytes.Buffer
	n, err := relayCopy(&got, r)
	if err != nil || n != int64(want.Len()) || !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("relayCopy = %d, %v; %d bytes arrived, want %d intact", n, err, got.Len(), want.Len())
	}
	wantSizes := []int{
		idleCopyBuffer,                 // "ls\n"
		idleCopyBuffer,                 // the first KiB of a: full
		busyCopyBuffer, busyCopyBuffer, // a: 32 KiB each,
		busyCopyBuffer, busyCopyBuffer, // then 32 KiB and the last 3 KiB, under a quarter
		idleCopyBuffer,                 // "$ "
		idleCopyBuffer,                 // b: exactly full
		busyCopyBuffer,                 // c: 4 KiB, under a quarter
		idleCopyBuffer, idleCopyBuffer, // "exit\n", then EOF
	}
	if !slices.Equal(r.sizes, wantSizes) {
		t.Errorf("read buffer sizes %v, want %v", r.sizes, wantSizes)
	}
}

type failingWriter struct {
	n   int // bytes accepted per Write
	err error
}

func (w failingWriter) Write(p []byte) (int, error) { return min(w.n, len(p)), w.err }

func TestRelayCopyErrors(t *testing.T) {
	boom := errors.New("boom")
	for _, c := range []struct {
		name    string
		r       io.Reader
		w       io.Writer
		written int64
		err     error
	}{
		{"read error", &chunkReader{chunks: [][]byte{[]byte("abc")}, err: boom}, io.Discard, 3, boom},
		{"write error", &chunkReader{chunks: [][]byte{[]byte("abc")}, err: io.EOF}, failingWriter{n: 1, err: boom}, 1, boom},
		{"short write", &chunkReader{chunks: [][]byte{[]byte("abc")}, err: io.EOF}, failingWriter{n: 2}, 2, io.ErrShortWrite},
		{"EOF", &chunkReader{err: io.EOF}, io.Discard, 0, nil},
	} {
		n, err := relayCopy(c.w, c.r)
		if n != c.written || !errors.Is(err, c.err) || (c.err == nil && err != nil) {
			t.Errorf("%s: relayCopy = %d, %v; want %d, %v", c.name, n, err, c.written, c.err)
		}
	}
}
