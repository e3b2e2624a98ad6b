package ssh_test

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// A request on a handle is decided with the path the handle was opened
// with. OpenSSH's handles are predictable (a 4-byte index, the lowest free
// one next), so a client can name the handle an open is about to get
// before the server's HANDLE reply, or a handle a pending close is about
// to free for the next open. Either way the gateway would decide with no
// path, or the wrong one, and no path rule would match: it refuses a
// request on a handle it has not seen given out, or sees being closed.
func TestSFTPHandleNotYetOpen(t *testing.T) {
	remote, protected, e := protectedEnv(t)
	target := filepath.Join(protected, "target.txt")
	free := filepath.Join(remote, "free.txt")
	for _, p := range []string{target, free} {
		if err := os.WriteFile(p, []byte("data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	s := dialSFTP(t, e)

	const (
		read       = uint32(0x01)
		attrUIDGID = uint32(0x02)
		attrPerms  = uint32(0x04)
		attrTimes  = uint32(0x08)
	)
	setuid := []any{attrPerms, uint32(0o4777)}

	// Control: with the handle's reply in, fsetstat is decided on the
	// file's path, and denied.
	h := s.handle(s.roundTrip(sftpPacket(3, 1, target, read, uint32(0))))
	if code, msg := s.status(s.roundTrip(sftpPacket(10, 2, append([]any{h}, setuid...)...))); code != 3 {
		t.Errorf("fsetstat on the open handle: status %d %q, want permission denied", code, msg)
	}
	if code, _ := s.status(s.roundTrip(sftpPacket(4, 3, h))); code != 0 {
		t.Fatalf("close: status %d", code)
	}

	// The open (read-only: allowed) and requests on the handle it will
	// get, in one write, before its reply.
	s.write(
		sftpPacket(3, 10, target, read, uint32(0)),
		sftpPacket(10, 11, append([]any{h}, setuid...)...),
		sftpPacket(10, 12, h, attrTimes, uint32(1), uint32(1)),
		sftpPacket(10, 13, h, attrUIDGID, uint32(65534), uint32(65534)),
		sftpPacket(8, 14, h),                         // FSTAT
		sftpPacket(5, 15, h, uint64(0), uint32(100)), // READ
		sftpPacket(200, 16, "fsync@openssh.com", h),
		sftpPacket(200, 17, "copy-data", h, uint64(0), uint64(0), h, uint64(0)),
	)
	replies := s.replies(8)
	if got := s.handle(replies[10]); got != h {
		t.Fatalf("the open got handle %x, not the %x guessed: the test proves nothing", got, h)
	}
	// Each is refused for its unknown handle, or, when the open's reply
	// overtook it in the gateway, decided on the file's path: the changes
	// denied by the rule, the reads allowed as the open was.
	for id := uint32(11); id <= 17; id++ {
		code, msg := s.status(replies[id])
		if code != 3 && (id <= 13 || id == 17) {
			t.Errorf("request %d on the handle before the open's reply: status %d %q, want permission denied", id, code, msg)
		}
	}

	// A close and the next open, pipelined: the server frees the handle
	// and gives it to the protected file, while the gateway still knows
	// it as free.txt's.
	s.roundTrip(sftpPacket(4, 20, h)) // the open above succeeded
	a := s.handle(s.roundTrip(sftpPacket(3, 21, free, read, uint32(0))))
	s.write(
		sftpPacket(4, 22, a),
		sftpPacket(3, 23, target, read, uint32(0)),
		sftpPacket(10, 24, append([]any{a}, setuid...)...),
	)
	replies = s.replies(3)
	if code, _ := s.status(replies[22]); code != 0 {
		t.Fatalf("close: status %d", code)
	}
	if got := s.handle(replies[23]); got != a {
		t.Fatalf("the open got handle %x, not the %x just closed: the test proves nothing", got, a)
	}
	if code, msg := s.status(replies[24]); code != 3 {
		t.Errorf("fsetstat on a handle being closed: status %d %q, want permission denied", code, msg)
	}
	s.roundTrip(sftpPacket(4, 25, a))

	// A handle the server never gave out at all.
	if code, msg := s.status(s.roundTrip(sftpPacket(5, 30, "no such handle", uint64(0), uint32(1)))); code != 3 {
		t.Errorf("read on an unknown handle: status %d %q, want permission denied", code, msg)
	}

	after, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if after.Mode() != before.Mode() || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("%s changed: mode %v -> %v, modified %v -> %v", target, before.Mode(), after.Mode(), before.ModTime(), after.ModTime())
	}
	s.close()

	var denials []string
	for _, c := range e.commands(t) {
		if c.Command == "sftp" && c.Decision == "deny" && strings.Contains(c.Message, "handle not open") {
			denials = append(denials, c.Text)
		}
	}
	if !slices.Contains(denials, "read (handle "+hex.EncodeToString([]byte("no such handle"))+")") {
		t.Errorf("the read on an unknown handle is not recorded as denied: %q", denials)
	}
}

// rawSFTP is an sftp subsystem through the gateway, spoken packet by
// packet.
type rawSFTP struct {
	t *testing.T
	c *gossh.Client
	w io.WriteCloser
	r sftpReader
}

// dialSFTP opens an sftp subsystem through e and exchanges INIT and
// VERSION.
func dialSFTP(t *testing.T, e *env) *rawSFTP {
	t.Helper()
	c := e.dial(t)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	w, _ := sess.StdinPipe()
	r, _ := sess.StdoutPipe()
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	s := &rawSFTP{t: t, c: c, w: w, r: sftpReader{t: t, r: r}}
	init := binary.BigEndian.AppendUint32([]byte{0, 0, 0, 5, 1}, 3)
	s.write(init)
	if typ, _ := s.r.next(); typ != 2 {
		t.Fatalf("INIT answered with type %d", typ)
	}
	return s
}

// close ends the session.
func (s *rawSFTP) close() {
	s.w.Close()
	s.c.Close()
}

// sftpPacket builds a request of typ with id and fields: string, uint32
// or uint64.
func sftpPacket(typ byte, id uint32, fields ...any) []byte {
	body := binary.BigEndian.AppendUint32([]byte{typ}, id)
	for _, f := range fields {
		switch f := f.(type) {
		case string:
			body = binary.BigEndian.AppendUint32(body, uint32(len(f)))
			body = append(body, f...)
		case uint32:
			body = binary.BigEndian.AppendUint32(body, f)
		case uint64:
			body = binary.BigEndian.AppendUint64(body, f)
		default:
			panic(fmt.Sprintf("sftpPacket: %T", f))
		}
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// write sends packets in one write, as one pipelined burst.
func (s *rawSFTP) write(packets ...[]byte) {
	s.t.Helper()
	var all []byte
	for _, p := range packets {
		all = append(all, p...)
	}
	if _, err := s.w.Write(all); err != nil {
		s.t.Fatal(err)
	}
}

// sftpReply is a reply's type and the payload after its id.
type sftpReply struct {
	typ     byte
	payload []byte
}

// replies reads n replies, by request id.
func (s *rawSFTP) replies(n int) map[uint32]sftpReply {
	s.t.Helper()
	out := map[uint32]sftpReply{}
	for range n {
		typ, payload := s.r.next()
		out[binary.BigEndian.Uint32(payload)] = sftpReply{typ, payload[4:]}
	}
	return out
}

// roundTrip sends one request and reads its reply.
func (s *rawSFTP) roundTrip(p []byte) sftpReply {
	s.t.Helper()
	s.write(p)
	id := binary.BigEndian.Uint32(p[5:])
	r, ok := s.replies(1)[id]
	if !ok {
		s.t.Fatalf("request %d: the reply is to another request", id)
	}
	return r
}

// handle is a HANDLE reply's handle.
func (s *rawSFTP) handle(r sftpReply) string {
	s.t.Helper()
	if r.typ != 102 {
		code, msg := s.status(r)
		s.t.Fatalf("reply type %d (status %d %q), want a handle", r.typ, code, msg)
	}
	return string(r.payload[4 : 4+binary.BigEndian.Uint32(r.payload)])
}

// status is a STATUS reply's code and message; code 255 for another
// reply.
func (s *rawSFTP) status(r sftpReply) (uint32, string) {
	if r.typ != 101 {
		return 255, fmt.Sprintf("reply of type %d", r.typ)
	}
	code := binary.BigEndian.Uint32(r.payload)
	var msg string
	if len(r.payload) >= 8 {
		n := binary.BigEndian.Uint32(r.payload[4:])
		if int(n) <= len(r.payload)-8 {
			msg = string(r.payload[8 : 8+n])
		}
	}
	return code, msg
}

// TestSFTPUnknownExtension: an extension the gateway does not read (a
// server's copy-file, say) is refused whatever the policy: policy would
// see none of the paths it names. A known one goes on.
func TestSFTPUnknownExtension(t *testing.T) {
	e := newEnv(t, envOptions{policy: "default: allow\n"})
	s := dialSFTP(t, e)
	const extended = 200
	code, msg := s.status(s.roundTrip(sftpPacket(extended, 7, "copy-file", "/etc/shadow", "/tmp/x", uint32(1))))
	if code != 3 || !strings.Contains(msg, `does not know the sftp extension "copy-file"`) {
		t.Fatalf("copy-file: status %d %q, want permission denied by interlock", code, msg)
	}
	if r := s.roundTrip(sftpPacket(extended, 8, "limits@openssh.com")); r.typ != 201 {
		t.Fatalf("limits@openssh.com: reply type %d, want EXTENDED_REPLY", r.typ)
	}
	s.close()
	var refused bool
	for _, cmd := range e.commands(t) {
		refused = refused || (cmd.Decision == "deny" && strings.Contains(cmd.Message, "copy-file"))
	}
	if !refused {
		t.Fatal("the refused extension is not in the recording")
	}
}
