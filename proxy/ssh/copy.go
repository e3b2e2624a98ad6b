package ssh

import (
	"errors"
	"io"
	"sync"
)

// A relay waits most of its life: a shell for the next keystroke, a command
// for its output. io.Copy's 32 KiB buffer, held through every wait, made
// three of them (input, output, errors) most of an idle session's memory.
const (
	// idleCopyBuffer is what a relay direction reads into while little
	// flows; it is held while the read waits.
	idleCopyBuffer = 1 << 10
	// busyCopyBuffer is what it reads into while a read fills the smaller
	// one: SSH's largest channel packet, so a bulk transfer moves as much
	// per read as io.Copy does.
	busyCopyBuffer = 32 << 10
)

// busyCopyBuffers are the relays' large buffers, used only while data
// flows.
var busyCopyBuffers = sync.Pool{New: func() any { b := make([]byte, busyCopyBuffer); return &b }}

// relayCopy copies from src to dst until src ends, like io.Copy (nil at
// EOF, the bytes written and the first error otherwise). It reads into a
// small buffer while reads return little, and into a pooled large one
// from the first read that fills the small one until a read returns less
// than a quarter of the large one.
func relayCopy(dst io.Writer, src io.Reader) (written int64, err error) {
	idle := make([]byte, idleCopyBuffer)
	buf := idle
	var busy *[]byte
	defer func() {
		if busy != nil {
			busyCopyBuffers.Put(busy)
		}
	}()
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			nw, werr := dst.Write(buf[:n])
			written += int64(nw)
			if werr == nil && nw != n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return written, werr
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return written, nil
			}
			return written, rerr
		}
		switch {
		case busy == nil && n == len(buf):
			busy = busyCopyBuffers.Get().(*[]byte)
			buf = *busy
		case busy != nil && n < len(buf)/4:
			busyCopyBuffers.Put(busy)
			busy, buf = nil, idle
		}
	}
}
