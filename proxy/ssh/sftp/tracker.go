package sftp

import (
	"errors"
	"fmt"
	"sort"
)

// Limits on what a Tracker holds for one session.
const (
	// MaxHandles is how many open handles a Tracker follows. OpenSSH's
	// server allows far fewer open files by default (its fd limit).
	MaxHandles = 4096
	// MaxPending is how many requests may await their replies.
	MaxPending = 4096
	// MaxTrackedBytes bounds the paths and handles a Tracker holds in all.
	MaxTrackedBytes = 16 << 20
)

var (
	// ErrTrackerFull: a request or reply would take the Tracker over
	// MaxHandles, MaxPending or MaxTrackedBytes.
	ErrTrackerFull = errors.New("sftp tracker full")
	// ErrDuplicateID: a request reuses the id of a request still awaiting
	// its reply.
	ErrDuplicateID = errors.New("sftp request id already pending")
	// ErrUnexpectedResponse: a reply answers no pending request.
	ErrUnexpectedResponse = errors.New("sftp response to no pending request")
	// ErrUnknownHandle: a request names a handle that is not open as far
	// as the Tracker knows: one the server never gave out, or whose HANDLE
	// reply has not come through yet, or that was closed or is being
	// closed. Such a request cannot be decided on its file's path.
	ErrUnknownHandle = errors.New("sftp handle not open (a request must name a handle the server's reply gave out, and not one being closed)")
)

// Completed is a request together with its reply.
type Completed struct {
	// Request is the request as Tracker.Request returned it, with the
	// path of its handle filled in.
	Request  Request
	Response Response
	// Status is the reply's status code for a STATUS reply, and StatusOK
	// for any other reply (HANDLE, DATA, NAME, ATTRS, EXTENDED_REPLY,
	// VERSION).
	Status Status
	// Internal: the reply is to a request the handler sent the server
	// itself (CloseUntracked, InternalRealpath), not to the client's; it
	// must not be forwarded.
	Internal bool
	// BytesRead and BytesWritten: for a read, the bytes its DATA reply
	// carries; for a write, its length once the server answered OK; for
	// a close, the totals of all reads and writes answered on that handle
	// since it was opened, so a session record can say "read /etc/passwd,
	// 1234 bytes" once.
	BytesRead, BytesWritten uint64
}

// OpenHandle is a handle the server gave out and the client has not
// closed (or whose close has not been answered).
type OpenHandle struct {
	Handle, Path string
	// Dir is true for a directory handle (OPENDIR).
	Dir bool
	// Flags are the file's open flags.
	Flags                   OpenFlags
	BytesRead, BytesWritten uint64
}

// Tracker follows one SFTP session's requests and replies, so that a
// request on a handle can be reported with the path the handle was opened
// with, and each finished operation with its outcome. Call Request for
// every client packet before it is forwarded and Response for every server
// packet; when the gateway answers a request itself (a denial built with
// StatusPacket), pass that answer, parsed, to Response too, so the request
// does not stay pending. A Tracker is not safe for concurrent use.
//
// A Tracker knows a handle from the HANDLE reply that gave it out until a
// CLOSE of it is sent, and refuses a request on any other handle
// ([ErrUnknownHandle]): the server may have given that handle to a file
// the Tracker has not seen (OpenSSH's handles are small predictable
// numbers, the lowest free one next). A client never needs one, as long
// as the handler gives it a HANDLE reply only after Response has seen it.
type Tracker struct {
	pending     map[uint32]Request
	initPending *Request
	handles     map[string]*OpenHandle
	// closing are the handles of handles whose CLOSE awaits its reply.
	closing map[string]bool
	// internal are the ids of pending requests the handler sent itself
	// (CloseUntracked, InternalRealpath); nextInternal is where the next one's id is looked
	// for, down from the top.
	internal     map[uint32]bool
	nextInternal uint32
	// stored is the bytes of paths and handles held.
	stored int
}

// NewTracker returns an empty Tracker.
func NewTracker() *Tracker {
	return &Tracker{pending: map[uint32]Request{}, handles: map[string]*OpenHandle{},
		closing: map[string]bool{}, internal: map[uint32]bool{}, nextInternal: ^uint32(0)}
}

func requestSize(r Request) int {
	return len(r.Path) + len(r.Path2) + len(r.Handle) + len(r.Handle2) + len(r.Extension)
}

// Request fills in the paths of req's handles (Path for Handle, and Path2
// for copy-data's Handle2) from the handles the server gave out, records
// req as awaiting its reply, and returns it. A request on a handle the
// Tracker does not know as open (see [ErrUnknownHandle]) is an error, and
// is not tracked: the handler should refuse it. A CLOSE makes its handle
// unknown at once, before its reply.
func (t *Tracker) Request(req Request) (Request, error) {
	if req.Type == TypeInit {
		req.Extensions = nil
		t.initPending = &req
		return req, nil
	}
	first, second := req.namesHandles()
	if first {
		h, ok := t.open(req.Handle)
		if !ok {
			return Request{}, fmt.Errorf("%s request %d on handle %x: %w", req.Op, req.ID, req.Handle, ErrUnknownHandle)
		}
		req.Path = h.Path
	}
	if second {
		h, ok := t.open(req.Handle2)
		if !ok {
			return Request{}, fmt.Errorf("%s request %d on handle %x: %w", req.Op, req.ID, req.Handle2, ErrUnknownHandle)
		}
		req.Path2 = h.Path
	}
	if _, ok := t.pending[req.ID]; ok {
		return Request{}, fmt.Errorf("tracking %s request %d: %w", req.Op, req.ID, ErrDuplicateID)
	}
	if len(t.pending) >= MaxPending {
		return Request{}, fmt.Errorf("tracking %s request %d with %d pending: %w", req.Op, req.ID, len(t.pending), ErrTrackerFull)
	}
	size := requestSize(req)
	if t.stored+size > MaxTrackedBytes {
		return Request{}, fmt.Errorf("tracking %s request %d of %d bytes: %w", req.Op, req.ID, size, ErrTrackerFull)
	}
	t.pending[req.ID] = req
	t.stored += size
	if req.Type == TypeClose {
		t.closing[req.Handle] = true
	}
	return req, nil
}

// open returns the handle, if it is open and not being closed.
func (t *Tracker) open(handle string) (*OpenHandle, bool) {
	h, ok := t.handles[handle]
	if !ok || t.closing[handle] {
		return nil, false
	}
	return h, true
}

// CloseUntracked records a CLOSE of handle that the handler sends the
// server itself, and returns the packet: for a handle Response could not
// track (ErrTrackerFull), which must not reach the client but should not
// stay open on the server either. Its id is one no pending request has,
// taken from the top of the range (clients count up from 0); a client
// request reusing it while it is pending gets ErrDuplicateID. Its reply
// completes with Internal set. It returns ErrTrackerFull when the request
// cannot be tracked: the handle then stays open on the server, unknown to
// the Tracker and so refused to the client.
func (t *Tracker) CloseUntracked(handle string) ([]byte, error) {
	req := Request{Type: TypeClose, Op: TypeClose.String(), Handle: handle}
	id, err := t.internalRequest(req)
	if err != nil {
		return nil, fmt.Errorf("closing handle %x: %w", handle, err)
	}
	return closePacket(id, handle), nil
}

// InternalRealpath records a REALPATH of path that the handler sends the
// server itself, and returns the packet: how the handler learns, whatever
// the client asks, the directory relative paths start from (the REALPATH
// of "."). Its id is taken as CloseUntracked's is, and its reply
// completes with Internal set, the server's answer in the Response (a
// NAME, or a STATUS when the server refuses). It returns ErrTrackerFull
// when the request cannot be tracked.
func (t *Tracker) InternalRealpath(path string) ([]byte, error) {
	req := Request{Type: TypeRealpath, Op: TypeRealpath.String(), Path: path}
	id, err := t.internalRequest(req)
	if err != nil {
		return nil, fmt.Errorf("asking the realpath of %q: %w", path, err)
	}
	return realpathPacket(id, path), nil
}

// internalRequest tracks req, a request of the handler's own, under an id
// no pending request has, counted down from the top of the range, and
// returns the id.
func (t *Tracker) internalRequest(req Request) (uint32, error) {
	size := requestSize(req)
	if len(t.pending) >= MaxPending || t.stored+size > MaxTrackedBytes {
		return 0, ErrTrackerFull
	}
	id := t.nextInternal
	for _, ok := t.pending[id]; ok; _, ok = t.pending[id] {
		id--
	}
	t.nextInternal = id - 1
	req.ID = id
	t.pending[id] = req
	t.internal[id] = true
	t.stored += size
	return id, nil
}

// Response matches resp to its pending request and returns the two as a
// Completed operation. A HANDLE reply to an OPEN or OPENDIR teaches the
// Tracker the handle's path; the reply to a CLOSE makes it forget the
// handle, whatever the status (OpenSSH's server frees a handle even when
// closing the file fails).
//
// A HANDLE reply the Tracker cannot hold (past MaxHandles or
// MaxTrackedBytes) completes with an error wrapping ErrTrackerFull, and
// the Completed open with it: the handler must not give that handle to
// the client, since any request on it would be refused, but answer the
// open with a failure and close the handle on the server
// (CloseUntracked).
func (t *Tracker) Response(resp Response) (Completed, error) {
	if resp.Type == TypeVersion {
		if t.initPending == nil {
			return Completed{}, fmt.Errorf("tracking a version response: %w", ErrUnexpectedResponse)
		}
		c := Completed{Request: *t.initPending, Response: resp, Status: StatusOK}
		t.initPending = nil
		return c, nil
	}
	req, ok := t.pending[resp.ID]
	if !ok {
		return Completed{}, fmt.Errorf("tracking a %s response to request %d: %w", resp.Type, resp.ID, ErrUnexpectedResponse)
	}
	delete(t.pending, resp.ID)
	t.stored -= requestSize(req)

	c := Completed{Request: req, Response: resp, Status: StatusOK}
	if resp.Type == TypeStatus {
		c.Status = resp.Status
	}
	if t.internal[resp.ID] {
		delete(t.internal, resp.ID)
		c.Internal = true
		return c, nil
	}
	switch req.Type {
	case TypeOpen, TypeOpendir:
		if resp.Type == TypeHandle {
			if err := t.track(req, resp.Handle); err != nil {
				return c, err
			}
		}
	case TypeRead:
		if resp.Type == TypeData {
			c.BytesRead = resp.Length
			if h, ok := t.handles[req.Handle]; ok {
				h.BytesRead += resp.Length
			}
		}
	case TypeWrite:
		if c.Status == StatusOK && resp.Type == TypeStatus {
			c.BytesWritten = req.Length
			if h, ok := t.handles[req.Handle]; ok {
				h.BytesWritten += req.Length
			}
		}
	case TypeClose:
		// Only the handle this CLOSE was sent for: one the server gave
		// out again meanwhile (it should not) is a new file's.
		if h, ok := t.handles[req.Handle]; ok && t.closing[req.Handle] {
			c.BytesRead, c.BytesWritten = h.BytesRead, h.BytesWritten
			t.forget(req.Handle)
		}
	}
	return c, nil
}

func (t *Tracker) track(req Request, handle string) error {
	if _, ok := t.handles[handle]; ok {
		// The server gave out a handle it did not get back: trust the
		// server, the handle now means the new file.
		t.forget(handle)
	}
	if len(t.handles) >= MaxHandles {
		return fmt.Errorf("tracking handle %q of %s with %d open: %w", handle, req.Path, len(t.handles), ErrTrackerFull)
	}
	size := len(handle) + len(req.Path)
	if t.stored+size > MaxTrackedBytes {
		return fmt.Errorf("tracking handle %q of %d bytes: %w", handle, size, ErrTrackerFull)
	}
	t.handles[handle] = &OpenHandle{Handle: handle, Path: req.Path, Dir: req.Type == TypeOpendir, Flags: req.Flags}
	t.stored += size
	return nil
}

func (t *Tracker) forget(handle string) {
	if h, ok := t.handles[handle]; ok {
		t.stored -= len(h.Handle) + len(h.Path)
		delete(t.handles, handle)
	}
	delete(t.closing, handle)
}

// Open returns the handles still open, by path then handle: at the end of
// a session, what the client never closed, with its totals.
func (t *Tracker) Open() []OpenHandle {
	out := make([]OpenHandle, 0, len(t.handles))
	for _, h := range t.handles {
		out = append(out, *h)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Handle < out[j].Handle
	})
	return out
}

// Pending returns how many requests await their replies.
func (t *Tracker) Pending() int { return len(t.pending) }
