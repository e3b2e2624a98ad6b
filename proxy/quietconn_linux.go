package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// QuietConn returns conn reading and writing its socket with direct system
// calls, for a relay that forwards small messages back and forth (a
// database protocol, a terminal); conn itself when it is not a
// *net.TCPConn. Everything else — deadlines, Close, addresses, CloseWrite —
// is conn's.
//
// Why: every read(2) and write(2) that net makes goes through the Go
// runtime's system-call bookkeeping, and the first such call after all of
// the process's threads went idle wakes the runtime's monitor thread
// (sysmon), which then runs a few 20 µs sleeps before it goes back to deep
// sleep. A request/response relay goes idle between every message, so that
// was a futex wake-up, a thread and a nanosleep per message — on a small
// virtual machine a cross-CPU wake-up that also moved the relay's threads
// between CPUs (measured: 1.7 futex calls, 1.0 nanosleep and 1.4 thread
// migrations per PostgreSQL transaction, and a 40–60% slower round trip;
// see docs/benchmarks.md). The socket is non-blocking, so its read and
// write return at once; such calls are what the runtime's raw system calls
// are for. When the socket is not ready the goroutine still parks in the
// runtime's network poller, as with net's own Read and Write, and deadlines
// work as they do there.
func QuietConn(conn net.Conn) net.Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return conn
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return conn
	}
	q := &quietConn{TCPConn: tc}
	// Bound once: a closure or method value made per call would be
	// allocated per call, since RawConn is an interface.
	q.r = quietCall{op: "read", wait: raw.Read}
	q.w = quietCall{op: "write", wait: raw.Write}
	q.r.fn, q.w.fn = q.readFD, q.writeFD
	return q
}

type quietConn struct {
	*net.TCPConn
	// One call in each direction at a time (net.Conn allows concurrent
	// callers).
	r, w quietCall
}

// quietCall is one direction: how it calls the socket, and the buffer,
// progress and errno of the call in progress.
type quietCall struct {
	op   string
	wait func(func(fd uintptr) bool) error // RawConn.Read or Write: fn until it returns true
	fn   func(fd uintptr) bool

	mu    sync.Mutex
	p     []byte
	n     int
	errno syscall.Errno
}

// Read reads like net.TCPConn.Read: at least one byte, or io.EOF at the
// peer's end of stream, or an error.
func (c *quietConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := c.r.run(c, p)
	if err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

// Write writes all of p, like net.TCPConn.Write, or returns how much went
// out before the error.
func (c *quietConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return c.w.run(c, p)
}

// run makes one call with p: how many bytes moved, and the error worded
// as net's own Read and Write word theirs.
func (q *quietCall) run(c *quietConn, p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.p, q.n, q.errno = p, 0, 0
	err := q.wait(q.fn)
	n, errno := q.n, q.errno
	q.p = nil
	switch {
	case err != nil:
		return n, c.opError(q.op, err)
	case errno != 0:
		return n, c.opError(q.op, os.NewSyscallError(q.op, errno))
	}
	return n, nil
}

// readFD is one attempt: false asks the poller to wait for the socket.
func (c *quietConn) readFD(fd uintptr) bool {
	r := &c.r
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.p[0])), uintptr(len(r.p)))
		switch errno {
		case 0:
			r.n = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.errno = errno
		return true
	}
}

// writeFD writes until done, an error, or a full socket buffer (false:
// wait until it drains). MSG_NOSIGNAL: a peer that went away is an EPIPE
// error, never a signal.
func (c *quietConn) writeFD(fd uintptr) bool {
	w := &c.w
	for w.n < len(w.p) {
		rest := w.p[w.n:]
		n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)),
			syscall.MSG_NOSIGNAL, 0, 0)
		switch errno {
		case 0:
			w.n += int(n)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		w.errno = errno
		return true
	}
	return true
}

// opError words err as net's own Read and Write do: a *net.OpError with the
// connection's addresses, wrapping os.ErrDeadlineExceeded, net.ErrClosed or
// the system call's error, whichever it was.
func (c *quietConn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err // RawConn's own wrapping says "raw-read"
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
