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
type Tracker struct {
	pending     map[uint32]Request
	initPending *Request
	handles     map[string]*OpenHandle
	// stored is the bytes of paths and handles held.
	stored int
}

// NewTracker returns an empty Tracker.
func NewTracker() *Tracker {
	return &Tracker{pending: map[uint32]Request{}, handles: map[string]*OpenHandle{}}
}

func requestSize(r Request) int {
	return len(r.Path) + len(r.Path2) + len(r.Handle) + len(r.Handle2) + len(r.Extension)
}

// Request fills in the paths of req's handles (Path for Handle, and Path2
// for copy-data's Handle2) from the handles the server gave out, records
// req as awaiting its reply, and returns it. A handle the Tracker does not
// know (one the server never gave out) leaves the path empty.
func (t *Tracker) Request(req Request) (Request, error) {
	if req.Type == TypeInit {
		req.Extensions = nil
		t.initPending = &req
		return req, nil
	}
	if req.Handle != "" {
		if h, ok := t.handles[req.Handle]; ok {
			req.Path = h.Path
		}
	}
	if req.Handle2 != "" {
		if h, ok := t.handles[req.Handle2]; ok {
			req.Path2 = h.Path
		}
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
	return req, nil
}

// Response matches resp to its pending request and returns the two as a
// Completed operation. A HANDLE reply to an OPEN or OPENDIR teaches the
// Tracker the handle's path; the reply to a CLOSE makes it forget the
// handle, whatever the status (OpenSSH's server frees a handle even when
// closing the file fails).
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
	switch req.Type {
	case TypeOpen, TypeOpendir:
		if resp.Type == TypeHandle {
			if err := t.open(req, resp.Handle); err != nil {
				return Completed{}, err
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
		if h, ok := t.handles[req.Handle]; ok {
			c.BytesRead, c.BytesWritten = h.BytesRead, h.BytesWritten
			t.forget(req.Handle)
		}
	}
	return c, nil
}

func (t *Tracker) open(req Request, handle string) error {
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
