package tcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/interlock-dev/interlock/proxy"
)

// chunk is how many bytes one io.CopyN moves before the byte counter is
// updated. CopyN keeps splice(2) (net unwraps the io.LimitedReader), and the
// counter of a long session moves while it runs instead of at its end.
const chunk = 256 << 10

// messageBuf is the buffer of a direction's message mode (see copy): a
// read that fills it means bytes are queueing up, and the direction
// switches to splice(2).
const messageBuf = 8 << 10

// Handler forwards bytes between the client and the original destination.
// The zero value works and counts nothing; New counts bytes.
type Handler struct {
	metrics *metrics
}

var _ proxy.Handler = (*Handler)(nil)

// New returns a Handler whose byte counter is registered on reg; reg may be
// nil. Handlers made with the same registry share one counter.
func New(reg prometheus.Registerer) *Handler {
	return &Handler{metrics: newMetrics(reg)}
}

// Serve dials s.Destination and copies bytes both ways until both directions
// end, either fails, or ctx is done.
func (h *Handler) Serve(ctx context.Context, s *proxy.Session) error {
	up, err := s.Dial(ctx, "tcp", s.Destination.String())
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return fmt.Errorf("dialing %s: %w", s.Destination, err)
	}

	var closeOnce sync.Once
	closeBoth := func() {
		closeOnce.Do(func() {
			s.Client.Close()
			up.Close()
		})
	}
	stopWatching := context.AfterFunc(ctx, closeBoth)

	type result struct {
		direction string
		err       error
	}
	results := make(chan result, 2)
	go func() { results <- result{upstream, h.copy(up, s.Client, s.Target.Name, upstream)} }()
	go func() { results <- result{downstream, h.copy(s.Client, up, s.Target.Name, downstream)} }()

	var first error
	for range 2 {
		r := <-results
		if r.err != nil {
			// Closing both unblocks the other direction; its error is
			// only a consequence of this one.
			closeBoth()
			if first == nil {
				first = fmt.Errorf("copying %s: %w", r.direction, r.err)
			}
		}
	}
	cancelled := !stopWatching()
	closeBoth()
	if cancelled {
		return context.Cause(ctx)
	}
	return first
}

// copy moves bytes from src to dst until src's EOF, then shuts down dst's
// write half so the peer sees the EOF too.
//
// A direction starts in message mode: each read is written on at once
// through proxy.QuietConn, which suits request/response traffic (a
// database or cache protocol, a terminal) — the relay goes idle between
// messages, and net's own calls would wake the runtime's monitor thread
// after every idle moment. The first read that fills the buffer shows a
// bulk transfer, and the direction moves the rest with splice(2), which
// copies less per byte, until its end.
func (h *Handler) copy(dst, src net.Conn, target, direction string) error {
	var counter prometheus.Counter
	if h.metrics != nil {
		counter = h.metrics.bytes.WithLabelValues(target, direction)
	}
	qdst, qsrc := proxy.QuietConn(dst), proxy.QuietConn(src)
	buf := make([]byte, messageBuf)
	for {
		n, err := qsrc.Read(buf)
		if n > 0 {
			if _, werr := qdst.Write(buf[:n]); werr != nil {
				return werr
			}
			if counter != nil {
				counter.Add(float64(n))
			}
		}
		if errors.Is(err, io.EOF) {
			return closeWrite(dst)
		}
		if err != nil {
			return err
		}
		if n == len(buf) {
			break
		}
	}
	for {
		n, err := io.CopyN(dst, src, chunk)
		if counter != nil && n > 0 {
			counter.Add(float64(n))
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	return closeWrite(dst)
}

// closeWrite shuts down c's write half if it has one; a connection without
// half-close is left for the session's end to close.
func closeWrite(c net.Conn) error {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return nil
	}
	if err := cw.CloseWrite(); err != nil {
		return fmt.Errorf("closing write half: %w", err)
	}
	return nil
}
