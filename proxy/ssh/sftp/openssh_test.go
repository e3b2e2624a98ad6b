package sftp

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

const opensshServer = "/usr/lib/openssh/sftp-server"

// realServer is OpenSSH's sftp-server run as a subprocess, its stdin and
// stdout the two directions of the stream, with the parsers and a Tracker
// in between as the SSH handler has them.
type realServer struct {
	t      *testing.T
	in     io.WriteCloser
	out    *Reader
	tr     *Tracker
	nextID uint32
}

func startServer(t *testing.T, dir string) *realServer {
	t.Helper()
	if _, err := os.Stat(opensshServer); err != nil {
		t.Skipf("OpenSSH's sftp-server is not installed (%v)", err)
	}
	cmd := exec.Command(opensshServer, "-e", "-l", "INFO")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("sftp-server: %v", err)
		}
		if t.Failed() {
			t.Logf("sftp-server's log:\n%s", stderr.String())
		}
	})
	return &realServer{t: t, in: in, out: NewReader(out), tr: NewTracker(), nextID: 1}
}

// send parses and tracks a client packet and forwards it.
func (s *realServer) send(raw []byte) Request {
	s.t.Helper()
	req, err := ParseRequest(raw)
	if err != nil {
		s.t.Fatalf("ParseRequest: %v", err)
	}
	if req, err = s.tr.Request(req); err != nil {
		s.t.Fatalf("Tracker.Request: %v", err)
	}
	if _, err := s.in.Write(raw); err != nil {
		s.t.Fatalf("writing to sftp-server: %v", err)
	}
	return req
}

// receive reads, parses and tracks the server's next packet.
func (s *realServer) receive() Completed {
	s.t.Helper()
	p, err := s.out.Next()
	if err != nil {
		s.t.Fatalf("reading from sftp-server: %v", err)
	}
	resp, err := ParseResponse(p.Raw)
	if err != nil {
		s.t.Fatalf("ParseResponse(%x): %v", p.Raw, err)
	}
	c, err := s.tr.Response(resp)
	if err != nil {
		s.t.Fatalf("Tracker.Response: %v", err)
	}
	return c
}

func (s *realServer) id() uint32 {
	s.nextID++
	return s.nextID
}

// do sends one request and returns its completion, checking the reply's
// type and status.
func (s *realServer) do(typ PacketType, wantType PacketType, wantStatus Status, fields ...any) Completed {
	s.t.Helper()
	id := s.id()
	s.send(pkt(typ, append([]any{id}, fields...)...))
	c := s.receive()
	if c.Response.ID != id || c.Response.Type != wantType || c.Status != wantStatus {
		s.t.Fatalf("%s: reply %s %s (%q), want %s %s", c.Request.Op, c.Response.Type, c.Status, c.Response.Message, wantType, wantStatus)
	}
	return c
}

func TestOpenSSHServer(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir)

	s.send(pkt(TypeInit, uint32(3)))
	v := s.receive()
	if v.Request.Op != "init" || v.Response.Version != 3 || !slices.ContainsFunc(v.Response.Extensions, func(e Extension) bool { return e.Name == ExtPosixRename }) {
		t.Fatalf("version: %+v", v.Response)
	}

	// Create and write a file, two writes in flight at once.
	a := filepath.Join(dir, "a.txt")
	open := s.do(TypeOpen, TypeHandle, StatusOK, a, uint32(FlagWrite|FlagCreate|FlagTruncate), Attrs{Flags: AttrPermissions, Permissions: 0o600})
	if !open.Request.Writes() || open.Request.Path != a {
		t.Fatalf("open: %+v", open.Request)
	}
	h := open.Response.Handle
	w1 := s.send(pkt(TypeWrite, s.id(), h, uint64(0), "hello, "))
	w2 := s.send(pkt(TypeWrite, s.id(), h, uint64(7), "interlock"))
	if w1.Path != a || w2.Path != a {
		t.Fatalf("writes on the handle have paths %q, %q", w1.Path, w2.Path)
	}
	var written uint64
	for range 2 {
		c := s.receive()
		if c.Status != StatusOK || c.Request.Op != "write" {
			t.Fatalf("write: %+v", c)
		}
		written += c.BytesWritten
	}
	if written != 16 {
		t.Fatalf("writes completed with %d bytes", written)
	}
	if c := s.do(TypeFstat, TypeAttrs, StatusOK, h); c.Request.Path != a || c.Response.Attrs.Size != 16 {
		t.Fatalf("fstat: %+v", c)
	}
	if c := s.do(TypeClose, TypeStatus, StatusOK, h); c.Request.Path != a || c.BytesWritten != 16 || c.BytesRead != 0 {
		t.Fatalf("close: %+v", c)
	}
	if got, err := os.ReadFile(a); err != nil || string(got) != "hello, interlock" {
		t.Fatalf("the file holds %q, %v", got, err)
	}

	// Read it back.
	h = s.do(TypeOpen, TypeHandle, StatusOK, a, uint32(FlagRead), Attrs{}).Response.Handle
	if c := s.do(TypeRead, TypeData, StatusOK, h, uint64(0), uint32(100)); c.BytesRead != 16 || c.Request.Path != a {
		t.Fatalf("read: %+v", c)
	}
	s.do(TypeRead, TypeStatus, StatusEOF, h, uint64(16), uint32(100))
	if c := s.do(TypeClose, TypeStatus, StatusOK, h); c.BytesRead != 16 || c.BytesWritten != 0 {
		t.Fatalf("close: %+v", c)
	}

	// Rename, stat, list.
	b := filepath.Join(dir, "b.txt")
	if c := s.do(TypeRename, TypeStatus, StatusOK, a, b); c.Request.Path != a || c.Request.Path2 != b {
		t.Fatalf("rename: %+v", c.Request)
	}
	if _, err := os.Stat(b); err != nil {
		t.Fatalf("after rename: %v", err)
	}
	if c := s.do(TypeStat, TypeAttrs, StatusOK, b); c.Response.Attrs.Size != 16 {
		t.Fatalf("stat: %+v", c.Response)
	}
	d := s.do(TypeOpendir, TypeHandle, StatusOK, dir).Response.Handle
	var names []string
	for {
		id := s.id()
		if r := s.send(pkt(TypeReaddir, id, d)); r.Path != dir {
			t.Fatalf("readdir has path %q", r.Path)
		}
		c := s.receive()
		if c.Status == StatusEOF {
			break
		}
		names = append(names, c.Response.Names...)
	}
	if !slices.Contains(names, "b.txt") || slices.Contains(names, "a.txt") {
		t.Fatalf("listing: %q", names)
	}
	s.do(TypeClose, TypeStatus, StatusOK, d)

	// Directories and links.
	sub := filepath.Join(dir, "sub")
	s.do(TypeMkdir, TypeStatus, StatusOK, sub, Attrs{})
	if st, err := os.Stat(sub); err != nil || !st.IsDir() {
		t.Fatalf("mkdir: %v", err)
	}
	s.do(TypeRmdir, TypeStatus, StatusOK, sub)
	link := filepath.Join(dir, "link")
	// OpenSSH's order: target first, then the link. The link on disk
	// shows which is which.
	if c := s.do(TypeSymlink, TypeStatus, StatusOK, b, link); c.Request.Path != b || c.Request.Path2 != link ||
		!slices.Equal(c.Request.WrittenPaths(), []string{link}) {
		t.Fatalf("symlink: %+v", c.Request)
	}
	if target, err := os.Readlink(link); err != nil || target != b {
		t.Fatalf("the link points to %q (%v), want %q", target, err, b)
	}
	if c := s.do(TypeReadlink, TypeName, StatusOK, link); !slices.Equal(c.Response.Names, []string{b}) {
		t.Fatalf("readlink: %q", c.Response.Names)
	}
	if c := s.do(TypeRealpath, TypeName, StatusOK, "."); !slices.Equal(c.Response.Names, []string{dir}) {
		t.Fatalf("realpath: %q, want %q", c.Response.Names, dir)
	}

	// OpenSSH's extensions.
	cpath := filepath.Join(dir, "c.txt")
	s.do(TypeExtended, TypeStatus, StatusOK, ExtPosixRename, b, cpath)
	hard := filepath.Join(dir, "hard.txt")
	if c := s.do(TypeExtended, TypeStatus, StatusOK, ExtHardlink, cpath, hard); !c.Request.Writes() || c.Request.Path2 != hard {
		t.Fatalf("hardlink: %+v", c.Request)
	}
	if c := s.do(TypeExtended, TypeExtendedReply, StatusOK, ExtLimits); c.Response.Length != 32 || c.Request.Writes() {
		t.Fatalf("limits: %+v", c)
	}
	s.do(TypeExtended, TypeExtendedReply, StatusOK, ExtStatvfs, dir)

	// A copy within the server names both files.
	src := s.do(TypeOpen, TypeHandle, StatusOK, cpath, uint32(FlagRead), Attrs{}).Response.Handle
	dstPath := filepath.Join(dir, "copy.txt")
	dst := s.do(TypeOpen, TypeHandle, StatusOK, dstPath, uint32(FlagWrite|FlagCreate), Attrs{}).Response.Handle
	if c := s.do(TypeExtended, TypeStatus, StatusOK, ExtCopyData, src, uint64(0), uint64(0), dst, uint64(0)); c.Request.Path != cpath || c.Request.Path2 != dstPath {
		t.Fatalf("copy-data: %+v", c.Request)
	}
	s.do(TypeClose, TypeStatus, StatusOK, src)
	s.do(TypeClose, TypeStatus, StatusOK, dst)
	if got, err := os.ReadFile(dstPath); err != nil || string(got) != "hello, interlock" {
		t.Fatalf("the copy holds %q, %v", got, err)
	}

	// The gateway refuses a remove: the server never sees it.
	denied, err := ParseRequest(pkt(TypeRemove, s.id(), cpath))
	if err != nil {
		t.Fatal(err)
	}
	if denied, err = s.tr.Request(denied); err != nil {
		t.Fatal(err)
	}
	refusal, err := ParseResponse(StatusPacket(denied.ID, StatusPermissionDenied, "interlock: denied"))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := s.tr.Response(refusal); err != nil || c.Status != StatusPermissionDenied || c.Request.Path != cpath {
		t.Fatalf("refusal: %+v, %v", c, err)
	}

	// Clean up through the server, and an error status.
	for _, p := range []string{cpath, hard, link, dstPath} {
		s.do(TypeRemove, TypeStatus, StatusOK, p)
	}
	if c := s.do(TypeRemove, TypeStatus, StatusNoSuchFile, cpath); c.Response.Message == "" {
		t.Fatalf("no message with %s", c.Status)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Fatalf("left in the directory: %v, %v", entries, err)
	}
	if s.tr.Pending() != 0 || len(s.tr.Open()) != 0 {
		t.Fatalf("after the session: %d pending, %+v open", s.tr.Pending(), s.tr.Open())
	}
}

// A handle the Tracker cannot hold is closed on the real server by the
// gateway's own CLOSE, whose reply is marked as the gateway's: the server
// then gives the same handle to the next open.
func TestOpenSSHServerUntrackedHandle(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := filepath.Join(dir, "a.txt")
	if err := os.WriteFile(a, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir)
	s.send(pkt(TypeInit, uint32(3)))
	s.receive()

	for i := range MaxHandles { // the Tracker full of other handles
		s.tr.handles[string(rune(0x1000+i))] = &OpenHandle{Handle: string(rune(0x1000 + i)), Path: "f"}
	}
	s.send(pkt(TypeOpen, s.id(), a, uint32(FlagRead), Attrs{}))
	p, err := s.out.Next()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ParseResponse(p.Raw)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.tr.Response(resp)
	if !errors.Is(err, ErrTrackerFull) || c.Response.Type != TypeHandle || c.Request.Path != a {
		t.Fatalf("open with the Tracker full: %+v, %v", c, err)
	}
	h := c.Response.Handle
	closeRaw, err := s.tr.CloseUntracked(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.in.Write(closeRaw); err != nil {
		t.Fatal(err)
	}
	if done := s.receive(); !done.Internal || done.Status != StatusOK || done.Request.Handle != h {
		t.Fatalf("the gateway's close: %+v", done)
	}

	for handle := range s.tr.handles {
		s.tr.forget(handle)
	}
	s.tr.stored = 0
	if again := s.do(TypeOpen, TypeHandle, StatusOK, a, uint32(FlagRead), Attrs{}).Response.Handle; again != h {
		t.Fatalf("the next open got handle %x, not the closed %x: it is still open", again, h)
	}
}

// The handler's own REALPATH of "." tells it the server's starting
// folder, and its reply is marked Internal, whatever the client's ids.
func TestOpenSSHServerInternalRealpath(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir)
	s.send(pkt(TypeInit, uint32(3)))
	s.receive()

	raw, err := s.tr.InternalRealpath(".")
	if err != nil {
		t.Fatal(err)
	}
	req, err := ParseRequest(raw)
	if err != nil || req.Type != TypeRealpath || req.Path != "." || req.ID != ^uint32(0) {
		t.Fatalf("the handler's realpath %x: %+v, %v", raw, req, err)
	}
	if _, err := s.tr.Request(Request{Type: TypeStat, ID: req.ID, Op: "stat", Path: "x"}); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("a client request with the handler's id while it is pending: %v", err)
	}
	if _, err := s.in.Write(raw); err != nil {
		t.Fatal(err)
	}
	c := s.receive()
	if !c.Internal || c.Response.Type != TypeName || !slices.Equal(c.Response.Names, []string{dir}) || c.Request.Path != "." {
		t.Fatalf("the handler's realpath completes %+v", c)
	}
	if s.tr.Pending() != 0 || len(s.tr.internal) != 0 {
		t.Fatalf("%d pending, %d internal", s.tr.Pending(), len(s.tr.internal))
	}
	// The id is free again for the client's own.
	s.send(pkt(TypeRealpath, req.ID, "."))
	if c := s.receive(); c.Internal || c.Response.Type != TypeName || c.Response.Names[0] != dir {
		t.Fatalf("the client's realpath completes %+v", c)
	}
}
