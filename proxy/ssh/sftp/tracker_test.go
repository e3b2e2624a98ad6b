package sftp

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// session feeds raw packets through the parsers and a Tracker, the way the
// SSH handler does.
type session struct {
	t  *testing.T
	tr *Tracker
}

func newSession(t *testing.T) *session { return &session{t: t, tr: NewTracker()} }

func (s *session) request(raw []byte) Request {
	s.t.Helper()
	req, err := ParseRequest(raw)
	if err != nil {
		s.t.Fatalf("ParseRequest: %v", err)
	}
	req, err = s.tr.Request(req)
	if err != nil {
		s.t.Fatalf("Tracker.Request: %v", err)
	}
	return req
}

func (s *session) response(raw []byte) Completed {
	s.t.Helper()
	resp, err := ParseResponse(raw)
	if err != nil {
		s.t.Fatalf("ParseResponse: %v", err)
	}
	c, err := s.tr.Response(resp)
	if err != nil {
		s.t.Fatalf("Tracker.Response: %v", err)
	}
	return c
}

func TestTrackerSession(t *testing.T) {
	s := newSession(t)
	s.request(pkt(TypeInit, uint32(3)))
	if c := s.response(pkt(TypeVersion, uint32(3))); c.Request.Op != "init" || c.Status != StatusOK {
		t.Fatalf("version completes %+v", c)
	}

	// Read a file in two reads, pipelined, and close it.
	s.request(pkt(TypeOpen, uint32(1), "/etc/passwd", uint32(FlagRead), Attrs{}))
	if c := s.response(pkt(TypeHandle, uint32(1), "h1")); c.Request.Path != "/etc/passwd" || c.Status != StatusOK {
		t.Fatalf("open completes %+v", c)
	}
	if r := s.request(pkt(TypeRead, uint32(2), "h1", uint64(0), uint32(1000))); r.Path != "/etc/passwd" {
		t.Fatalf("read on h1 has path %q", r.Path)
	}
	s.request(pkt(TypeRead, uint32(3), "h1", uint64(1000), uint32(1000)))
	if c := s.response(pkt(TypeData, uint32(2), strings.Repeat("x", 1000))); c.BytesRead != 1000 {
		t.Fatalf("read completes %+v", c)
	}
	if c := s.response(pkt(TypeData, uint32(3), strings.Repeat("x", 234))); c.BytesRead != 234 {
		t.Fatalf("read completes %+v", c)
	}
	s.request(pkt(TypeRead, uint32(4), "h1", uint64(1234), uint32(1000)))
	if c := s.response(pkt(TypeStatus, uint32(4), uint32(StatusEOF), "", "")); c.Status != StatusEOF || c.BytesRead != 0 {
		t.Fatalf("read at EOF completes %+v", c)
	}
	if r := s.request(pkt(TypeClose, uint32(5), "h1")); r.Path != "/etc/passwd" {
		t.Fatalf("close on h1 has path %q", r.Path)
	}
	c := s.response(pkt(TypeStatus, uint32(5), uint32(StatusOK), "", ""))
	if c.Request.Op != "close" || c.Request.Path != "/etc/passwd" || c.BytesRead != 1234 || c.BytesWritten != 0 {
		t.Fatalf("close completes %+v", c)
	}
	if _, err := s.tr.Request(mustParse(t, pkt(TypeRead, uint32(6), "h1", uint64(0), uint32(1)))); !errors.Is(err, ErrUnknownHandle) {
		t.Fatalf("read on a closed handle: %v", err)
	}

	// The server hands the same handle out again, for a new file.
	s.request(pkt(TypeOpen, uint32(7), "out.txt", uint32(FlagWrite|FlagCreate), Attrs{}))
	s.response(pkt(TypeHandle, uint32(7), "h1"))
	if r := s.request(pkt(TypeWrite, uint32(8), "h1", uint64(0), "0123456789")); r.Path != "out.txt" || !r.Writes() {
		t.Fatalf("write on h1: %+v", r)
	}
	s.request(pkt(TypeWrite, uint32(9), "h1", uint64(10), "abcde"))
	s.request(pkt(TypeWrite, uint32(10), "h1", uint64(15), "zz"))
	if c := s.response(pkt(TypeStatus, uint32(9), uint32(StatusOK), "", "")); c.BytesWritten != 5 {
		t.Fatalf("write completes %+v", c)
	}
	if c := s.response(pkt(TypeStatus, uint32(8), uint32(StatusOK), "", "")); c.BytesWritten != 10 {
		t.Fatalf("write completes %+v", c)
	}
	if c := s.response(pkt(TypeStatus, uint32(10), uint32(StatusFailure), "disk full", "")); c.BytesWritten != 0 || c.Status != StatusFailure {
		t.Fatalf("failed write completes %+v", c)
	}
	if r := s.request(pkt(TypeFsetstat, uint32(11), "h1", Attrs{Flags: AttrPermissions, Permissions: 0o600})); r.Path != "out.txt" {
		t.Fatalf("fsetstat on h1 has path %q", r.Path)
	}
	s.response(pkt(TypeStatus, uint32(11), uint32(StatusOK)))

	// A directory.
	s.request(pkt(TypeOpendir, uint32(12), "/tmp"))
	s.response(pkt(TypeHandle, uint32(12), "d1"))
	if r := s.request(pkt(TypeReaddir, uint32(13), "d1")); r.Path != "/tmp" {
		t.Fatalf("readdir has path %q", r.Path)
	}
	if c := s.response(pkt(TypeName, uint32(13), uint32(1), "a", "a", Attrs{})); !reflect.DeepEqual(c.Response.Names, []string{"a"}) {
		t.Fatalf("readdir completes %+v", c)
	}

	// copy-data names both handles' files.
	if r := s.request(pkt(TypeExtended, uint32(14), ExtCopyData, "d1", uint64(0), uint64(0), "h1", uint64(0))); r.Path != "/tmp" || r.Path2 != "out.txt" {
		t.Fatalf("copy-data paths %q, %q", r.Path, r.Path2)
	}
	s.response(pkt(TypeStatus, uint32(14), uint32(StatusFailure)))

	// The gateway denies a request and answers it itself.
	req := s.request(pkt(TypeRemove, uint32(15), "/etc/shadow"))
	denied := s.response(StatusPacket(req.ID, StatusPermissionDenied, "denied"))
	if denied.Status != StatusPermissionDenied || denied.Request.Path != "/etc/shadow" {
		t.Fatalf("denial completes %+v", denied)
	}

	want := []OpenHandle{ // by path
		{Handle: "d1", Path: "/tmp", Dir: true},
		{Handle: "h1", Path: "out.txt", Flags: FlagWrite | FlagCreate, BytesWritten: 15},
	}
	if got := s.tr.Open(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Open() = %+v, want %+v", got, want)
	}
	s.request(pkt(TypeClose, uint32(16), "h1"))
	if c := s.response(pkt(TypeStatus, uint32(16), uint32(StatusFailure))); c.BytesWritten != 15 || c.Request.Path != "out.txt" {
		t.Fatalf("close completes %+v", c)
	}
	s.request(pkt(TypeClose, uint32(17), "d1"))
	s.response(pkt(TypeStatus, uint32(17), uint32(StatusOK)))
	if s.tr.Pending() != 0 || len(s.tr.Open()) != 0 || s.tr.stored != 0 {
		t.Fatalf("after the session: %d pending, %d open, %d bytes stored", s.tr.Pending(), len(s.tr.Open()), s.tr.stored)
	}
}

func mustParse(t *testing.T, raw []byte) Request {
	t.Helper()
	req, err := ParseRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// A request naming a handle is tracked only while the Tracker knows the
// handle as open: from the HANDLE reply that gave it out until a CLOSE of
// it is sent. Before and after, the server may have given the handle to
// another file, and the request could not be decided on its path.
func TestTrackerUnknownHandles(t *testing.T) {
	s := newSession(t)
	unknown := func(what string, raw []byte) {
		t.Helper()
		req := mustParse(t, raw)
		if _, err := s.tr.Request(req); !errors.Is(err, ErrUnknownHandle) {
			t.Errorf("%s: %v, want ErrUnknownHandle", what, err)
		}
		if _, pending := s.tr.pending[req.ID]; pending {
			t.Errorf("%s: refused but pending", what)
		}
	}
	attrs := Attrs{Flags: AttrPermissions, Permissions: 0o4777}

	// OpenSSH's first handle, named before the open's reply.
	h := "\x00\x00\x00\x00"
	s.request(pkt(TypeOpen, uint32(1), "/etc/shadow", uint32(FlagRead), Attrs{}))
	for _, c := range []struct {
		what string
		raw  []byte
	}{
		{"fsetstat", pkt(TypeFsetstat, uint32(2), h, attrs)},
		{"fstat", pkt(TypeFstat, uint32(3), h)},
		{"read", pkt(TypeRead, uint32(4), h, uint64(0), uint32(10))},
		{"write", pkt(TypeWrite, uint32(5), h, uint64(0), "x")},
		{"readdir", pkt(TypeReaddir, uint32(6), h)},
		{"close", pkt(TypeClose, uint32(7), h)},
		{"fsync", pkt(TypeExtended, uint32(8), ExtFsync, h)},
		{"fstatvfs", pkt(TypeExtended, uint32(9), ExtFstatvfs, h)},
		{"copy-data", pkt(TypeExtended, uint32(10), ExtCopyData, h, uint64(0), uint64(0), h, uint64(0))},
		{"an empty handle", pkt(TypeRead, uint32(11), "", uint64(0), uint32(10))},
	} {
		unknown(c.what+" before the open's reply", c.raw)
	}
	s.response(pkt(TypeHandle, uint32(1), h))
	if r := s.request(pkt(TypeFsetstat, uint32(2), h, attrs)); r.Path != "/etc/shadow" {
		t.Fatalf("fsetstat after the reply has path %q", r.Path)
	}
	s.response(pkt(TypeStatus, uint32(2), uint32(StatusOK)))

	// copy-data needs both handles known.
	s.request(pkt(TypeOpen, uint32(20), "/tmp/out", uint32(FlagWrite|FlagCreate), Attrs{}))
	unknown("copy-data to a handle not yet given out", pkt(TypeExtended, uint32(21), ExtCopyData, h, uint64(0), uint64(0), "\x00\x00\x00\x01", uint64(0)))
	s.response(pkt(TypeHandle, uint32(20), "\x00\x00\x00\x01"))
	if r := s.request(pkt(TypeExtended, uint32(21), ExtCopyData, h, uint64(0), uint64(0), "\x00\x00\x00\x01", uint64(0))); r.Path != "/etc/shadow" || r.Path2 != "/tmp/out" {
		t.Fatalf("copy-data paths %q, %q", r.Path, r.Path2)
	}
	s.response(pkt(TypeStatus, uint32(21), uint32(StatusOK)))

	// A close, then an open: the server frees the handle and may give it
	// to the new file. Until the close's reply the handle is unknown.
	s.request(pkt(TypeClose, uint32(30), h))
	s.request(pkt(TypeOpen, uint32(31), "/etc/passwd", uint32(FlagRead), Attrs{}))
	unknown("fsetstat on a handle being closed", pkt(TypeFsetstat, uint32(32), h, attrs))
	unknown("a second close", pkt(TypeClose, uint32(33), h))
	if c := s.response(pkt(TypeStatus, uint32(30), uint32(StatusOK))); c.Request.Path != "/etc/shadow" {
		t.Fatalf("close completes %+v", c)
	}
	unknown("fsetstat on a closed handle", pkt(TypeFsetstat, uint32(32), h, attrs))
	s.response(pkt(TypeHandle, uint32(31), h))
	if r := s.request(pkt(TypeFsetstat, uint32(32), h, attrs)); r.Path != "/etc/passwd" {
		t.Fatalf("fsetstat on the handle given out again has path %q", r.Path)
	}
	s.response(pkt(TypeStatus, uint32(32), uint32(StatusOK)))

	// A server that gives a handle out again before answering its close
	// (OpenSSH does not): the close's reply leaves the new file's handle.
	s.request(pkt(TypeClose, uint32(40), h))
	s.request(pkt(TypeOpen, uint32(41), "/srv/new", uint32(FlagRead), Attrs{}))
	s.response(pkt(TypeHandle, uint32(41), h))
	s.response(pkt(TypeStatus, uint32(40), uint32(StatusOK)))
	if r := s.request(pkt(TypeFstat, uint32(42), h)); r.Path != "/srv/new" {
		t.Fatalf("fstat after the late close's reply has path %q", r.Path)
	}
	s.response(pkt(TypeAttrs, uint32(42), Attrs{}))
	checkTracker(t, s.tr)
}

func TestTrackerErrors(t *testing.T) {
	tr := NewTracker()
	if _, err := tr.Response(Response{Type: TypeVersion, Version: 3}); !errors.Is(err, ErrUnexpectedResponse) {
		t.Errorf("version without init: %v", err)
	}
	if _, err := tr.Response(Response{Type: TypeStatus, ID: 9}); !errors.Is(err, ErrUnexpectedResponse) {
		t.Errorf("status to nothing: %v", err)
	}
	if _, err := tr.Request(Request{Type: TypeStat, ID: 1, Op: "stat", Path: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Request(Request{Type: TypeStat, ID: 1, Op: "stat", Path: "b"}); !errors.Is(err, ErrDuplicateID) {
		t.Errorf("duplicate id: %v", err)
	}
	if _, err := tr.Response(Response{Type: TypeAttrs, ID: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Response(Response{Type: TypeAttrs, ID: 1}); !errors.Is(err, ErrUnexpectedResponse) {
		t.Errorf("second reply: %v", err)
	}
}

func TestTrackerLimits(t *testing.T) {
	t.Run("pending", func(t *testing.T) {
		tr := NewTracker()
		for i := 0; i < MaxPending; i++ {
			if _, err := tr.Request(Request{Type: TypeStat, ID: uint32(i), Op: "stat"}); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
		if _, err := tr.Request(Request{Type: TypeStat, ID: MaxPending, Op: "stat"}); !errors.Is(err, ErrTrackerFull) {
			t.Fatalf("request over MaxPending: %v", err)
		}
		if _, err := tr.Response(Response{Type: TypeAttrs, ID: 0}); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Request(Request{Type: TypeStat, ID: MaxPending, Op: "stat"}); err != nil {
			t.Fatalf("request after one reply: %v", err)
		}
	})
	t.Run("handles", func(t *testing.T) {
		tr := NewTracker()
		var c Completed
		var err error
		for i := 0; i <= MaxHandles; i++ {
			if _, err := tr.Request(Request{Type: TypeOpen, ID: uint32(i), Op: "open", Path: "f"}); err != nil {
				t.Fatal(err)
			}
			c, err = tr.Response(Response{Type: TypeHandle, ID: uint32(i), Handle: string(rune(i + 1))})
			if i < MaxHandles && err != nil {
				t.Fatalf("handle %d: %v", i, err)
			}
		}
		// The open past the limit completes, with the error: its handle
		// is not known, and must not reach the client.
		last := string(rune(MaxHandles + 1))
		if !errors.Is(err, ErrTrackerFull) || c.Request.ID != MaxHandles || c.Response.Handle != last {
			t.Fatalf("handle over MaxHandles: %+v, %v", c, err)
		}
		if len(tr.Open()) != MaxHandles || tr.Pending() != 0 {
			t.Fatalf("%d handles open, %d pending", len(tr.Open()), tr.Pending())
		}
		if _, err := tr.Request(Request{Type: TypeFsetstat, ID: 1, Op: "fsetstat", Handle: last}); !errors.Is(err, ErrUnknownHandle) {
			t.Fatalf("fsetstat on the untracked handle: %v", err)
		}

		// The gateway closes it on the server itself.
		raw, err := tr.CloseUntracked(last)
		if err != nil {
			t.Fatal(err)
		}
		closeReq, err := ParseRequest(raw)
		if err != nil || closeReq.Type != TypeClose || closeReq.Handle != last || closeReq.ID != ^uint32(0) {
			t.Fatalf("the gateway's close %x: %+v, %v", raw, closeReq, err)
		}
		if _, err := tr.Request(Request{Type: TypeStat, ID: ^uint32(0), Op: "stat", Path: "x"}); !errors.Is(err, ErrDuplicateID) {
			t.Fatalf("a client request with the gateway's id: %v", err)
		}
		if _, err := tr.Request(Request{Type: TypeStat, ID: ^uint32(0) - 1, Op: "stat", Path: "x"}); err != nil {
			t.Fatal(err)
		}
		raw2, err := tr.CloseUntracked("other")
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := ParseRequest(raw2); r.ID != ^uint32(0)-2 {
			t.Fatalf("the second close has id %d, want one no request has", r.ID)
		}
		done, err := tr.Response(Response{Type: TypeStatus, ID: closeReq.ID, Status: StatusOK})
		if err != nil || !done.Internal || done.Request.Handle != last {
			t.Fatalf("the gateway's close completes %+v, %v", done, err)
		}
		if c, err := tr.Response(Response{Type: TypeAttrs, ID: ^uint32(0) - 1}); err != nil || c.Internal {
			t.Fatalf("the client's request completes %+v, %v", c, err)
		}
		tr.Response(Response{Type: TypeStatus, ID: ^uint32(0) - 2})
		if len(tr.Open()) != MaxHandles || tr.Pending() != 0 || len(tr.internal) != 0 {
			t.Fatalf("%d handles open, %d pending, %d internal", len(tr.Open()), tr.Pending(), len(tr.internal))
		}
		checkTracker(t, tr)
	})
	t.Run("bytes", func(t *testing.T) {
		tr := NewTracker()
		path := strings.Repeat("p", MaxPacketLength-100)
		var err error
		n := 0
		for ; err == nil; n++ {
			_, err = tr.Request(Request{Type: TypeStat, ID: uint32(n), Op: "stat", Path: path})
		}
		if !errors.Is(err, ErrTrackerFull) || n > MaxTrackedBytes/len(path)+1 {
			t.Fatalf("after %d long paths: %v", n, err)
		}
		if tr.stored > MaxTrackedBytes {
			t.Fatalf("%d bytes stored", tr.stored)
		}
	})
}

// The handler's own REALPATH takes an id no pending request has, and its
// reply completes as Internal.
func TestTrackerInternalRealpath(t *testing.T) {
	tr := NewTracker()
	if _, err := tr.Request(Request{Type: TypeStat, ID: ^uint32(0), Op: "stat", Path: "x"}); err != nil {
		t.Fatal(err)
	}
	raw, err := tr.InternalRealpath(".")
	if err != nil {
		t.Fatal(err)
	}
	req, err := ParseRequest(raw)
	if err != nil || req.Type != TypeRealpath || req.Path != "." || req.ID != ^uint32(0)-1 {
		t.Fatalf("the handler's realpath %x: %+v, %v", raw, req, err)
	}
	checkTracker(t, tr)
	c, err := tr.Response(Response{Type: TypeName, ID: req.ID, Count: 1, Names: []string{"/home/u"}})
	if err != nil || !c.Internal || c.Request.Type != TypeRealpath || c.Response.Names[0] != "/home/u" {
		t.Fatalf("the handler's realpath completes %+v, %v", c, err)
	}
	if c, err := tr.Response(Response{Type: TypeAttrs, ID: ^uint32(0)}); err != nil || c.Internal {
		t.Fatalf("the client's stat completes %+v, %v", c, err)
	}
	checkTracker(t, tr)
	if tr.Pending() != 0 || len(tr.internal) != 0 {
		t.Fatalf("%d pending, %d internal", tr.Pending(), len(tr.internal))
	}

	for i := range MaxPending {
		if _, err := tr.Request(Request{Type: TypeStat, ID: uint32(i), Op: "stat"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tr.InternalRealpath("."); !errors.Is(err, ErrTrackerFull) {
		t.Fatalf("with %d pending: %v", MaxPending, err)
	}
}
