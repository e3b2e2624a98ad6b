package postgres

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Wire constants of the start-up phase (not exported by pgproto3).
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102

	// maxStartupPacket is PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
	maxStartupPacket = 10000
	// maxMessage is PostgreSQL's limit for one frontend message (1 GB - 1).
	maxMessage = 1<<30 - 1
	// maxStatement bounds one Query or Parse message (its SQL text and the
	// few bytes around it). PostgreSQL
	// takes up to maxMessage, but the gateway parses, classifies and
	// records each statement, which costs several times its size in
	// memory: one client must not be able to take gigabytes of a gateway
	// that every agent of the host shares.
	maxStatement = 16 << 20
	// maxBufferedCopyData: a client's CopyData longer than this is not
	// read into memory but streamed to upstream (see copyDataStream).
	maxBufferedCopyData = 1 << 20
	// directAllocLimit: bodies up to this size are read into a buffer of
	// the announced size; larger ones grow with the data that actually
	// arrives, so a client cannot make the gateway allocate a gigabyte by
	// announcing one.
	directAllocLimit = 64 << 10
	// maxKeptBody: a message buffer larger than this is not kept for the
	// next message.
	maxKeptBody = 16 << 10
	// flushThreshold: buffered output beyond this is written even when
	// more input is waiting.
	flushThreshold = 64 << 10
)

// errProtocol marks a client that broke the protocol; the session ends with
// a FATAL 08P01.
var errProtocol = errors.New("protocol violation")

// clientReader frames the client's messages itself, rather than through
// pgproto3.Backend, for two reasons: it must know whether more input is
// already buffered (to flush upstream only when the client pauses), and in
// the start-up phase it must not read past an SSLRequest (bytes read ahead
// of a TLS handshake would be plaintext injected into the TLS session).
//
// A message read by message is valid until the next read: its struct is
// one of the reader's own, and byte slices in it (a Bind's parameters,
// CopyData) point into the reader's buffer. The relay forwards, answers or
// copies each message before it reads the next, so the steady state of a
// session reads without allocating.
type clientReader struct {
	br     *bufio.Reader
	frames frameReader
	msgs   frontendMessages
}

// frontendMessages holds one message of each normal-phase type.
type frontendMessages struct {
	bind         pgproto3.Bind
	close        pgproto3.Close
	describe     pgproto3.Describe
	execute      pgproto3.Execute
	functionCall pgproto3.FunctionCall
	copyFail     pgproto3.CopyFail
	copyData     pgproto3.CopyData
	copyDone     pgproto3.CopyDone
	flush        pgproto3.Flush
	parse        pgproto3.Parse
	query        pgproto3.Query
	sync         pgproto3.Sync
	terminate    pgproto3.Terminate
}

// of returns the message for a type byte of the normal phase, or nil.
func (m *frontendMessages) of(t byte) pgproto3.FrontendMessage {
	switch t {
	case 'B':
		return &m.bind
	case 'C':
		return &m.close
	case 'D':
		return &m.describe
	case 'E':
		return &m.execute
	case 'F':
		return &m.functionCall
	case 'f':
		return &m.copyFail
	case 'd':
		return &m.copyData
	case 'c':
		return &m.copyDone
	case 'H':
		return &m.flush
	case 'P':
		return &m.parse
	case 'Q':
		return &m.query
	case 'S':
		return &m.sync
	case 'X':
		return &m.terminate
	}
	return nil
}

func newClientReader(r io.Reader) *clientReader {
	br := bufio.NewReaderSize(r, 16<<10)
	return &clientReader{br: br, frames: frameReader{br: br}}
}

// buffered is how many bytes have arrived and are not yet consumed.
func (r *clientReader) buffered() int { return r.br.Buffered() }

// release gives back what the last message held of the handler's memory
// for large messages, and drops the decoded message (a Bind's parameters,
// a CopyData's data point into its frame): the relay has forwarded it.
func (r *clientReader) release() {
	if r.frames.held > 0 {
		r.frames.release()
		r.msgs = frontendMessages{}
	}
}

// startupPacket reads one length-prefixed start-up packet and returns its
// body (from the version or request code on).
func (r *clientReader) startupPacket() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[:]))) - 4
	if n < 4 || n > maxStartupPacket {
		return nil, fmt.Errorf("%w: invalid length of startup packet", errProtocol)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r.br, body); err != nil {
		return nil, unexpectedEOF(err)
	}
	return body, nil
}

// message reads and decodes one frontend message of the normal phase. A
// Query or Parse longer than maxStatement is read past without being kept,
// and reported as a *statementTooLong error, and a message the handler's
// memory for large messages had no room for as a *tooLarge; the session
// goes on.
func (r *clientReader) message() (pgproto3.FrontendMessage, error) {
	msg, err := r.read(r.msgs.of, maxMessage)
	skip := 0
	switch e := err.(type) {
	case *statementTooLong:
		skip = e.size
	case *tooLarge:
		skip = e.size
	}
	if skip > 0 {
		if _, derr := io.CopyN(io.Discard, r.br, int64(skip)); derr != nil {
			return nil, unexpectedEOF(derr)
		}
	}
	return msg, err
}

// copyDataStream is a client's CopyData longer than maxBufferedCopyData,
// returned by clientReader.message as an error before its body is read:
// the relay passes the body on (or discards it) as it arrives, so that a
// client cannot make the gateway, which every agent of the host shares,
// hold a message of up to a gigabyte. The body must be consumed before
// the next read.
type copyDataStream struct {
	size int // of the body
}

func (e *copyDataStream) Error() string { return fmt.Sprintf("CopyData of %d bytes", e.size) }

// statementTooLong is a Query ('Q') or Parse ('P') whose SQL is longer
// than maxStatement.
type statementTooLong struct {
	kind byte
	size int
}

func (e *statementTooLong) Error() string {
	return fmt.Sprintf("a statement's message of %d bytes is longer than interlock's limit of %d MiB", e.size, maxStatement>>20)
}

// password reads the client's PasswordMessage, the answer to an
// authentication request.
func (r *clientReader) password() (string, error) {
	msg, err := r.read(func(t byte) pgproto3.FrontendMessage {
		if t != 'p' {
			return nil
		}
		return &pgproto3.PasswordMessage{}
	}, maxStartupPacket)
	if err != nil {
		return "", err
	}
	return msg.(*pgproto3.PasswordMessage).Password, nil
}

// read reads one message whose type byte newMsg accepts (nil: a protocol
// violation, found before the body is read) and whose body is at most
// limit bytes, and decodes it.
func (r *clientReader) read(newMsg func(byte) pgproto3.FrontendMessage, limit int) (pgproto3.FrontendMessage, error) {
	msg, _, err := readMessage(&r.frames, limit, newMsg, errProtocol, "frontend")
	return msg, err
}

// readMessage reads the next message from f, into the message of(type)
// returns (nil: a protocol violation, found before the body is read), and
// decodes it; it returns the message and its frame. violation is what
// the errors of a bad message wrap (the side that broke the protocol).
func readMessage[M pgproto3.Message](f *frameReader, limit int, of func(byte) M, violation error, side string) (M, []byte, error) {
	var msg, none M
	frame, err := f.next(limit, func(t byte, n int) error {
		if msg = of(t); any(msg) == nil {
			return fmt.Errorf("%w: invalid %s message type %d", violation, side, t)
		}
		if (t == 'Q' || t == 'P') && n > maxStatement && side == "frontend" {
			return &statementTooLong{kind: t, size: n}
		}
		if t == 'd' && n > maxBufferedCopyData && side == "frontend" {
			return &copyDataStream{size: n}
		}
		return nil
	})
	if errors.Is(err, errFrameLength) {
		return none, nil, fmt.Errorf("%w: invalid message length", violation)
	}
	if err != nil {
		return none, nil, err
	}
	if err := msg.Decode(frame[5:]); err != nil {
		return none, nil, fmt.Errorf("%w: invalid %c message: %w", violation, frame[0], err)
	}
	return msg, frame, nil
}

// errFrameLength: a message announced a length below 4 or above the limit.
var errFrameLength = errors.New("invalid message length")

// frameReader reads the length-prefixed messages of both directions (a
// type byte, then a 32-bit length that counts itself) into one buffer, so
// that a message is at hand as the bytes it arrived in: its frame.
type frameReader struct {
	br    *bufio.Reader
	frame []byte // frames up to directAllocLimit; reused up to maxKeptBody
	// mem, when set, must have room for a body over largeMessage before
	// it is read (asked with ctx); held is what the last frame holds of
	// it, given back at the next read or by release.
	mem  *messageMemory
	ctx  context.Context
	held int
}

// release gives back what the last frame held of the handler's memory for
// large messages; the frame is not used after.
func (r *frameReader) release() {
	if r.held > 0 {
		r.mem.release(r.held)
		r.held = 0
	}
}

// next reads one message whose body is at most limit bytes and returns its
// frame, valid until the next call. accept sees the type byte and the
// body's length before the body is read; its error is returned as is.
func (r *frameReader) next(limit int, accept func(t byte, n int) error) ([]byte, error) {
	r.release() // the last frame is done with
	if cap(r.frame) < 5 {
		r.frame = make([]byte, 5, 512)
	}
	hdr := r.frame[:5]
	if _, err := io.ReadFull(r.br, hdr); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[1:]))) - 4
	if n < 0 || n > limit {
		return nil, errFrameLength
	}
	if err := accept(hdr[0], n); err != nil {
		return nil, err
	}
	if n > largeMessage && r.mem != nil {
		if err := r.mem.hold(r.ctx, n); err != nil {
			if tl, ok := err.(*tooLarge); ok {
				tl.kind = hdr[0]
			}
			return nil, err
		}
		r.held = n
	}
	var frame []byte
	if n <= directAllocLimit {
		if cap(r.frame) < 5+n {
			grown := make([]byte, 5+n)
			copy(grown, hdr)
			r.frame = grown
		}
		frame = r.frame[:5+n]
		if _, err := io.ReadFull(r.br, frame[5:]); err != nil {
			return nil, unexpectedEOF(err)
		}
	} else {
		var buf bytes.Buffer
		buf.Write(hdr)
		if _, err := io.CopyN(&buf, r.br, int64(n)); err != nil {
			return nil, unexpectedEOF(err)
		}
		frame = buf.Bytes()
	}
	if cap(r.frame) > maxKeptBody {
		// Not kept for the next message: an idle session must not pin
		// what one large message needed. The frame returned still holds
		// it.
		r.frame = nil
	}
	return frame, nil
}

// serverReader reads upstream's messages through a frameReader, as
// clientReader does the client's, rather than through pgproto3.Frontend:
// a message the relay passes on unchanged (most of them) is then written
// to the client as the bytes it arrived in, not decoded and encoded again.
// A message read, and its frame, are valid until the next read, like
// clientReader's.
type serverReader struct {
	br     *bufio.Reader
	frames frameReader
	msgs   backendMessages
}

// backendMessages holds one message of each type upstream may send once
// logged in (and a few it must not, to name them in the error).
type backendMessages struct {
	parseComplete            pgproto3.ParseComplete
	bindComplete             pgproto3.BindComplete
	closeComplete            pgproto3.CloseComplete
	notificationResponse     pgproto3.NotificationResponse
	copyDone                 pgproto3.CopyDone
	commandComplete          pgproto3.CommandComplete
	copyData                 pgproto3.CopyData
	dataRow                  pgproto3.DataRow
	errorResponse            pgproto3.ErrorResponse
	copyInResponse           pgproto3.CopyInResponse
	copyOutResponse          pgproto3.CopyOutResponse
	emptyQueryResponse       pgproto3.EmptyQueryResponse
	backendKeyData           pgproto3.BackendKeyData
	noData                   pgproto3.NoData
	noticeResponse           pgproto3.NoticeResponse
	portalSuspended          pgproto3.PortalSuspended
	parameterStatus          pgproto3.ParameterStatus
	parameterDescription     pgproto3.ParameterDescription
	rowDescription           pgproto3.RowDescription
	functionCallResponse     pgproto3.FunctionCallResponse
	copyBothResponse         pgproto3.CopyBothResponse
	readyForQuery            pgproto3.ReadyForQuery
	negotiateProtocolVersion pgproto3.NegotiateProtocolVersion
}

// of returns the message for a type byte, or nil.
func (m *backendMessages) of(t byte) pgproto3.BackendMessage {
	switch t {
	case '1':
		return &m.parseComplete
	case '2':
		return &m.bindComplete
	case '3':
		return &m.closeComplete
	case 'A':
		return &m.notificationResponse
	case 'c':
		return &m.copyDone
	case 'C':
		return &m.commandComplete
	case 'd':
		return &m.copyData
	case 'D':
		return &m.dataRow
	case 'E':
		return &m.errorResponse
	case 'G':
		return &m.copyInResponse
	case 'H':
		return &m.copyOutResponse
	case 'I':
		return &m.emptyQueryResponse
	case 'K':
		return &m.backendKeyData
	case 'n':
		return &m.noData
	case 'N':
		return &m.noticeResponse
	case 's':
		return &m.portalSuspended
	case 'S':
		return &m.parameterStatus
	case 't':
		return &m.parameterDescription
	case 'T':
		return &m.rowDescription
	case 'V':
		return &m.functionCallResponse
	case 'W':
		return &m.copyBothResponse
	case 'Z':
		return &m.readyForQuery
	case 'v':
		return &m.negotiateProtocolVersion
	}
	return nil
}

func newServerReader(r io.Reader) *serverReader {
	br := bufio.NewReaderSize(r, 8<<10)
	return &serverReader{br: br, frames: frameReader{br: br}}
}

// buffered is how many bytes have arrived and are not yet consumed.
func (r *serverReader) buffered() int { return r.br.Buffered() }

// message reads and decodes one backend message, and returns it with the
// bytes it arrived in.
func (r *serverReader) message() (pgproto3.BackendMessage, []byte, error) {
	return readMessage(&r.frames, maxMessage, r.msgs.of, errUpstreamProtocol, "backend")
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// encoder is what both directions' messages share.
type encoder interface {
	Encode(dst []byte) ([]byte, error)
}

// msgWriter buffers encoded messages for one connection. Both relay
// goroutines write to the client through one msgWriter: since every
// message is appended to one buffer under one lock, messages reach the
// client in the order they were queued, whichever goroutine queued them.
type msgWriter struct {
	mu   sync.Mutex
	conn net.Conn
	side error // wrapped by every error, to tell whose connection failed
	// buf is what is queued; bufp, the pooled slice it came from, is nil
	// while nothing is (see writeBuffers).
	buf  []byte
	bufp *[]byte
	err  error // the first write failure; sticky
}

// writeBuffers are the msgWriters' buffers. A writer takes one when it
// queues and gives it back when it has written it out, so that a session
// waiting for its next statement holds none: a gateway keeps many agents'
// sessions open, and one large result must not pin its buffer in each.
var writeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// maxPooledBuffer: a buffer grown beyond this (a large result) is left to
// the garbage collector instead of the pool.
const maxPooledBuffer = 4 * flushThreshold

func newMsgWriter(conn net.Conn, side error) *msgWriter {
	return &msgWriter{conn: conn, side: side}
}

// queue appends msgs to the buffer.
func (w *msgWriter) queue(msgs ...encoder) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queueLocked(msgs...)
}

// queueFrame appends a message as it arrived, framing included: it is
// written as is. (A []byte passed as an encoder would be copied to the
// heap, once per relayed message.)
func (w *msgWriter) queueFrame(frame []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.take()
	w.buf = append(w.buf, frame...)
	return nil
}

// take gets a pooled buffer when none is held.
func (w *msgWriter) take() {
	if w.bufp == nil {
		w.bufp = writeBuffers.Get().(*[]byte)
		w.buf = (*w.bufp)[:0]
	}
}

func (w *msgWriter) queueLocked(msgs ...encoder) error {
	if w.err != nil {
		return w.err
	}
	w.take()
	for _, m := range msgs {
		b, err := m.Encode(w.buf)
		if err != nil {
			return fmt.Errorf("%w: encoding %T: %w", w.side, m, err)
		}
		w.buf = b
	}
	return nil
}

// flush writes what is buffered.
func (w *msgWriter) flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *msgWriter) flushLocked() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		w.release()
		return nil
	}
	_, err := w.conn.Write(w.buf)
	w.release()
	if err != nil {
		w.err = fmt.Errorf("%w: %w", w.side, err)
	}
	return w.err
}

// release gives the buffer back to writeBuffers (or, grown large, to
// the garbage collector). w.mu is held.
func (w *msgWriter) release() {
	if w.bufp != nil && cap(w.buf) <= maxPooledBuffer {
		*w.bufp = w.buf[:0]
		writeBuffers.Put(w.bufp)
	}
	w.buf, w.bufp = nil, nil
}

// stream writes what is buffered, then a message of type t whose body is
// the next n bytes of r, as they arrive.
func (w *msgWriter) stream(t byte, r io.Reader, n int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.flushLocked(); err != nil {
		return err
	}
	var hdr [5]byte
	hdr[0] = t
	binary.BigEndian.PutUint32(hdr[1:], uint32(n+4))
	if _, err := w.conn.Write(hdr[:]); err != nil {
		w.err = fmt.Errorf("%w: %w", w.side, err)
		return w.err
	}
	buf := make([]byte, 64<<10)
	for n > 0 {
		k, err := r.Read(buf[:min(n, len(buf))])
		if k > 0 {
			if _, werr := w.conn.Write(buf[:k]); werr != nil {
				w.err = fmt.Errorf("%w: %w", w.side, werr)
				return w.err
			}
			n -= k
		}
		if err != nil && n > 0 {
			// The client's failure: upstream is left mid-message, so the
			// session ends (the caller returns this error).
			w.err = fmt.Errorf("%w: the client stopped mid-CopyData: %w", w.side, unexpectedEOF(err))
			return unexpectedEOF(err)
		}
	}
	return nil
}

// send queues msgs and flushes.
func (w *msgWriter) send(msgs ...encoder) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.queueLocked(msgs...); err != nil {
		return err
	}
	return w.flushLocked()
}

// pending is how many bytes are buffered.
func (w *msgWriter) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.buf)
}

// errorResponse builds an ErrorResponse with the fields the handler sets.
func errorResponse(severity, code, message, detail string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{
		Severity:            severity,
		SeverityUnlocalized: severity,
		Code:                code,
		Message:             message,
		Detail:              detail,
	}
}

// SQLSTATEs the handler sends.
const (
	codeInsufficientPrivilege = "42501"
	codeSyntaxError           = "42601"
	codeProtocolViolation     = "08P01"
	codeConnectionFailure     = "08006"
	codeAdminShutdown         = "57P01"
	codeInvalidAuthorization  = "28000"
	codeInvalidPassword       = "28P01"
	codeFeatureNotSupported   = "0A000"
	codeQueryCanceled         = "57014"
	codeSystemError           = "58000"
	codeProgramLimitExceeded  = "54000"
	codeNameTooLong           = "42622"
	codeOutOfMemory           = "53200"
)
