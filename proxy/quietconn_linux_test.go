package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tcpPair is a connected loopback pair: the accepted side and the dialled
// side.
func tcpPair(t *testing.T) (accepted, dialled *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); d.Close() })
	return a.(*net.TCPConn), d.(*net.TCPConn)
}

func TestQuietConnOnlyWrapsTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := QuietConn(a); got != a {
		t.Errorf("QuietConn(net.Pipe) = %T, want the connection itself", got)
	}
	tc, _ := tcpPair(t)
	if _, ok := QuietConn(tc).(*quietConn); !ok {
		t.Errorf("QuietConn(*net.TCPConn) = %T, want *quietConn", QuietConn(tc))
	}
}

// TestQuietConnRelaysBothWays sends more than a socket buffer holds each
// way at once, so both the read and the write side have to wait in the
// poller (EAGAIN) and resume, and checks every byte.
func TestQuietConnRelaysBothWays(t *testing.T) {
	ac, dc := tcpPair(t)
	a, d := QuietConn(ac), QuietConn(dc)
	const size = 8 << 20
	payload := func(seed byte) []byte {
		b := make([]byte, size)
		for i := range b {
			b[i] = seed + byte(i*7)
		}
		return b
	}
	send := map[net.Conn][]byte{a: payload(1), d: payload(2)}
	var wg sync.WaitGroup
	got := map[net.Conn][]byte{}
	var mu sync.Mutex
	for _, c := range []net.Conn{a, d} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			// Odd-sized writes, so a write can stop mid-slice.
			p := send[c]
			for len(p) > 0 {
				n := min(len(p), 300_001)
				if w, err := c.Write(p[:n]); err != nil || w != n {
					t.Errorf("write: %d of %d, %v", w, n, err)
					return
				}
				p = p[n:]
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, size)
			chunk := make([]byte, 4093)
			for len(buf) < size {
				n, err := c.Read(chunk)
				if err != nil {
					t.Errorf("read after %d bytes: %v", len(buf), err)
					return
				}
				buf = append(buf, chunk[:n]...)
			}
			mu.Lock()
			got[c] = buf
			mu.Unlock()
		}()
	}
	wg.Wait()
	if !bytes.Equal(got[a], send[d]) || !bytes.Equal(got[d], send[a]) {
		t.Fatal("bytes changed on the way")
	}
}

func TestQuietConnEnds(t *testing.T) {
	t.Run("EOF after the peer closes", func(t *testing.T) {
		ac, dc := tcpPair(t)
		a := QuietConn(ac)
		if _, err := dc.Write([]byte("last")); err != nil {
			t.Fatal(err)
		}
		dc.Close()
		got, err := io.ReadAll(a)
		if err != nil || string(got) != "last" {
			t.Fatalf("ReadAll = %q, %v; want \"last\", nil", got, err)
		}
		n, err := a.Read(make([]byte, 1))
		if n != 0 || err != io.EOF {
			t.Errorf("Read after EOF = %d, %v; want 0, io.EOF", n, err)
		}
	})
	t.Run("read deadline", func(t *testing.T) {
		ac, _ := tcpPair(t)
		a := QuietConn(ac)
		a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := a.Read(make([]byte, 1))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past the deadline = %v; want a timeout wrapping os.ErrDeadlineExceeded", err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" {
			t.Errorf("error %v: want a *net.OpError with Op read", err)
		}
		// The deadline lifted, the connection reads again.
		a.SetReadDeadline(time.Time{})
	})
	t.Run("write deadline with a peer that does not read", func(t *testing.T) {
		ac, dc := tcpPair(t)
		a := QuietConn(ac)
		a.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := a.Write(make([]byte, 64<<20))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write = %d, %v; want os.ErrDeadlineExceeded", n, err)
		}
		// The count is what went out: exactly what the peer receives.
		a.Close()
		got, err := io.Copy(io.Discard, dc)
		if err != nil || got != int64(n) {
			t.Errorf("Write reported %d bytes written, the peer received %d (%v)", n, got, err)
		}
	})
	t.Run("Close ends a blocked Read", func(t *testing.T) {
		ac, _ := tcpPair(t)
		a := QuietConn(ac)
		errc := make(chan error, 1)
		go func() {
			_, err := a.Read(make([]byte, 1))
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond)
		a.Close()
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Read on a closed connection = %v; want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Read still blocked after Close")
		}
	})
	t.Run("write to a reset connection", func(t *testing.T) {
		ac, dc := tcpPair(t)
		a := QuietConn(ac)
		dc.SetLinger(0) // Close sends RST
		dc.Close()
		var err error
		for i := 0; i < 100 && err == nil; i++ {
			_, err = a.Write([]byte("x"))
			time.Sleep(time.Millisecond)
		}
		if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("Write to a reset peer = %v; want EPIPE or ECONNRESET (and no SIGPIPE)", err)
		}
		var se *os.SyscallError
		if !errors.As(err, &se) || se.Syscall != "write" {
			t.Errorf("error %v: want an *os.SyscallError of write", err)
		}
	})
	t.Run("zero-length calls", func(t *testing.T) {
		ac, _ := tcpPair(t)
		a := QuietConn(ac)
		if n, err := a.Read(nil); n != 0 || err != nil {
			t.Errorf("Read(nil) = %d, %v", n, err)
		}
		if n, err := a.Write(nil); n != 0 || err != nil {
			t.Errorf("Write(nil) = %d, %v", n, err)
		}
	})
}

// TestQuietConnAllocations: the steady state of a relay reads and writes
// without allocating.
func TestQuietConnAllocations(t *testing.T) {
	ac, dc := tcpPair(t)
	a, d := QuietConn(ac), QuietConn(dc)
	msg, buf := []byte("ping"), make([]byte, 16)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := a.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(d, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per write and read; want 0", allocs)
	}
}
