package sftp

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReader(t *testing.T) {
	one := pkt(TypeInit, uint32(3))
	two := pkt(TypeStat, uint32(7), "/etc/passwd")
	tests := []struct {
		name   string
		stream []byte
		limit  int
		want   [][]byte
		err    error
	}{
		{"empty stream", nil, 0, nil, io.EOF},
		{"two packets", append(append([]byte{}, one...), two...), 0, [][]byte{one, two}, io.EOF},
		{"cut in the length", append(append([]byte{}, one...), 0, 0), 0, [][]byte{one}, io.ErrUnexpectedEOF},
		{"cut in the body", append(append([]byte{}, one...), two[:len(two)-1]...), 0, [][]byte{one}, io.ErrUnexpectedEOF},
		{"length 0", []byte{0, 0, 0, 0, 1}, 0, nil, ErrMalformed},
		{"over the limit", two, len(two) - 5, nil, ErrPacketTooLarge},
		{"at the limit", two, len(two) - 4, [][]byte{two}, io.EOF},
		{"over OpenSSH's limit", []byte{0, 4, 0, 1, 1}, 0, nil, ErrPacketTooLarge},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff}, 0, nil, ErrPacketTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, split := range []bool{false, true} {
				var src io.Reader = bytes.NewReader(tt.stream)
				if split {
					src = iotest.OneByteReader(src)
				}
				r := NewReader(src)
				if tt.limit > 0 {
					r = NewReaderSize(src, tt.limit)
				}
				var got [][]byte
				var err error
				for {
					var p Packet
					p, err = r.Next()
					if err != nil {
						break
					}
					if p.Type != PacketType(p.Raw[4]) {
						t.Fatalf("packet type %v, raw type byte %d", p.Type, p.Raw[4])
					}
					got = append(got, p.Raw)
				}
				if !errors.Is(err, tt.err) {
					t.Fatalf("error %v, want %v", err, tt.err)
				}
				if tt.err == io.EOF && err != io.EOF {
					t.Fatalf("error %v, want io.EOF itself", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("packets %x, want %x", got, tt.want)
				}
				if _, again := r.Next(); again != err {
					t.Fatalf("second error %v, want the first again", again)
				}
			}
		})
	}
}

func TestReaderDoesNotReuse(t *testing.T) {
	stream := append(pkt(TypeStat, uint32(1), "/a"), pkt(TypeStat, uint32(2), "/b")...)
	r := NewReader(bytes.NewReader(stream))
	p1, _ := r.Next()
	keep := append([]byte(nil), p1.Raw...)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p1.Raw, keep) {
		t.Fatal("reading the second packet changed the first")
	}
	if got := string(p1.Payload()); got != string(keep[5:]) {
		t.Fatalf("Payload = %q", got)
	}
}

func TestParseRequest(t *testing.T) {
	attrs := Attrs{Flags: AttrSize | AttrUIDGID | AttrPermissions | AttrACModTime | AttrExtended,
		Size: 1 << 40, UID: 1000, GID: 100, Permissions: 0o4755, Atime: 1, Mtime: 2, Extended: 2}
	tests := []struct {
		name   string
		packet []byte
		want   Request
		writes bool
	}{
		{"init", pkt(TypeInit, uint32(3), []Extension{{"a@b", "1"}}),
			Request{Type: TypeInit, Op: "init", Version: 3, Extensions: []Extension{{"a@b", "1"}}}, false},
		{"open read", pkt(TypeOpen, uint32(1), "/etc/passwd", uint32(FlagRead), Attrs{}),
			Request{Type: TypeOpen, ID: 1, Op: "open", Path: "/etc/passwd", Flags: FlagRead}, false},
		{"open create", pkt(TypeOpen, uint32(2), "up.txt", uint32(FlagWrite|FlagCreate|FlagTruncate), Attrs{Flags: AttrPermissions, Permissions: 0o644}),
			Request{Type: TypeOpen, ID: 2, Op: "open", Path: "up.txt", Flags: FlagWrite | FlagCreate | FlagTruncate, Attrs: Attrs{Flags: AttrPermissions, Permissions: 0o644}}, true},
		{"open append only", pkt(TypeOpen, uint32(2), "log", uint32(FlagAppend), Attrs{}),
			Request{Type: TypeOpen, ID: 2, Op: "open", Path: "log", Flags: FlagAppend}, true},
		{"open all attributes", pkt(TypeOpen, uint32(3), "x", uint32(FlagRead), attrs),
			Request{Type: TypeOpen, ID: 3, Op: "open", Path: "x", Flags: FlagRead, Attrs: attrs}, false},
		{"close", pkt(TypeClose, uint32(4), "\x00\x00\x00\x01"),
			Request{Type: TypeClose, ID: 4, Op: "close", Handle: "\x00\x00\x00\x01"}, false},
		{"read", pkt(TypeRead, uint32(5), "h", uint64(1<<33), uint32(32768)),
			Request{Type: TypeRead, ID: 5, Op: "read", Handle: "h", Offset: 1 << 33, Length: 32768}, false},
		{"write", pkt(TypeWrite, uint32(6), "h", uint64(10), "hello"),
			Request{Type: TypeWrite, ID: 6, Op: "write", Handle: "h", Offset: 10, Length: 5}, true},
		{"lstat", pkt(TypeLstat, uint32(7), "l"), Request{Type: TypeLstat, ID: 7, Op: "lstat", Path: "l"}, false},
		{"fstat", pkt(TypeFstat, uint32(8), "h"), Request{Type: TypeFstat, ID: 8, Op: "fstat", Handle: "h"}, false},
		{"setstat", pkt(TypeSetstat, uint32(9), "f", Attrs{Flags: AttrPermissions, Permissions: 0o777}),
			Request{Type: TypeSetstat, ID: 9, Op: "setstat", Path: "f", Attrs: Attrs{Flags: AttrPermissions, Permissions: 0o777}}, true},
		{"fsetstat", pkt(TypeFsetstat, uint32(10), "h", Attrs{Flags: AttrSize, Size: 0}),
			Request{Type: TypeFsetstat, ID: 10, Op: "fsetstat", Handle: "h", Attrs: Attrs{Flags: AttrSize}}, true},
		{"opendir", pkt(TypeOpendir, uint32(11), "/tmp"), Request{Type: TypeOpendir, ID: 11, Op: "opendir", Path: "/tmp"}, false},
		{"readdir", pkt(TypeReaddir, uint32(12), "d"), Request{Type: TypeReaddir, ID: 12, Op: "readdir", Handle: "d"}, false},
		{"remove", pkt(TypeRemove, uint32(13), "f"), Request{Type: TypeRemove, ID: 13, Op: "remove", Path: "f"}, true},
		{"mkdir", pkt(TypeMkdir, uint32(14), "d", Attrs{}), Request{Type: TypeMkdir, ID: 14, Op: "mkdir", Path: "d"}, true},
		{"rmdir", pkt(TypeRmdir, uint32(15), "d"), Request{Type: TypeRmdir, ID: 15, Op: "rmdir", Path: "d"}, true},
		{"realpath", pkt(TypeRealpath, uint32(16), "."), Request{Type: TypeRealpath, ID: 16, Op: "realpath", Path: "."}, false},
		{"stat", pkt(TypeStat, uint32(17), "s"), Request{Type: TypeStat, ID: 17, Op: "stat", Path: "s"}, false},
		{"rename", pkt(TypeRename, uint32(18), "old", "new"),
			Request{Type: TypeRename, ID: 18, Op: "rename", Path: "old", Path2: "new"}, true},
		{"readlink", pkt(TypeReadlink, uint32(19), "l"), Request{Type: TypeReadlink, ID: 19, Op: "readlink", Path: "l"}, false},
		{"symlink target first", pkt(TypeSymlink, uint32(20), "/etc/shadow", "link"),
			Request{Type: TypeSymlink, ID: 20, Op: "symlink", Path: "/etc/shadow", Path2: "link"}, true},
		{"posix-rename", pkt(TypeExtended, uint32(21), ExtPosixRename, "a", "b"),
			Request{Type: TypeExtended, ID: 21, Op: "extended:" + ExtPosixRename, Extension: ExtPosixRename, Path: "a", Path2: "b"}, true},
		{"hardlink", pkt(TypeExtended, uint32(22), ExtHardlink, "a", "b"),
			Request{Type: TypeExtended, ID: 22, Op: "extended:" + ExtHardlink, Extension: ExtHardlink, Path: "a", Path2: "b"}, true},
		{"fsync", pkt(TypeExtended, uint32(23), ExtFsync, "h"),
			Request{Type: TypeExtended, ID: 23, Op: "extended:" + ExtFsync, Extension: ExtFsync, Handle: "h"}, false},
		{"statvfs", pkt(TypeExtended, uint32(24), ExtStatvfs, "/"),
			Request{Type: TypeExtended, ID: 24, Op: "extended:" + ExtStatvfs, Extension: ExtStatvfs, Path: "/"}, false},
		{"fstatvfs", pkt(TypeExtended, uint32(25), ExtFstatvfs, "h"),
			Request{Type: TypeExtended, ID: 25, Op: "extended:" + ExtFstatvfs, Extension: ExtFstatvfs, Handle: "h"}, false},
		{"lsetstat", pkt(TypeExtended, uint32(26), ExtLsetstat, "l", Attrs{Flags: AttrUIDGID}),
			Request{Type: TypeExtended, ID: 26, Op: "extended:" + ExtLsetstat, Extension: ExtLsetstat, Path: "l", Attrs: Attrs{Flags: AttrUIDGID}}, true},
		{"limits", pkt(TypeExtended, uint32(27), ExtLimits),
			Request{Type: TypeExtended, ID: 27, Op: "extended:" + ExtLimits, Extension: ExtLimits}, false},
		{"expand-path", pkt(TypeExtended, uint32(28), ExtExpandPath, "~/x"),
			Request{Type: TypeExtended, ID: 28, Op: "extended:" + ExtExpandPath, Extension: ExtExpandPath, Path: "~/x"}, false},
		{"copy-data", pkt(TypeExtended, uint32(29), ExtCopyData, "r", uint64(1), uint64(0), "w", uint64(2)),
			Request{Type: TypeExtended, ID: 29, Op: "extended:" + ExtCopyData, Extension: ExtCopyData, Handle: "r", Offset: 1, Handle2: "w", Offset2: 2}, true},
		{"home-directory", pkt(TypeExtended, uint32(30), ExtHomeDir, "root"),
			Request{Type: TypeExtended, ID: 30, Op: "extended:" + ExtHomeDir, Extension: ExtHomeDir}, false},
		{"unknown extension writes", pkt(TypeExtended, uint32(31), "rm-rf@example.com", "/"),
			Request{Type: TypeExtended, ID: 31, Op: "extended:rm-rf@example.com", Extension: "rm-rf@example.com"}, true},
		{"unknown type", pkt(PacketType(21), uint32(32), "link", "target"),
			Request{Type: 21, ID: 32, Op: "unknown"}, true},
		{"a reply type from the client", pkt(TypeStatus, uint32(33), uint32(0)),
			Request{Type: TypeStatus, ID: 33, Op: "unknown"}, true},
		{"trailing bytes ignored", pkt(TypeRealpath, uint32(34), ".", raw{1}, "x"),
			Request{Type: TypeRealpath, ID: 34, Op: "realpath", Path: "."}, false},
		{"empty path", pkt(TypeStat, uint32(35), ""), Request{Type: TypeStat, ID: 35, Op: "stat"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.packet)
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseRequest =\n%+v, want\n%+v", got, tt.want)
			}
			if got.Writes() != tt.writes {
				t.Fatalf("Writes() = %v, want %v", got.Writes(), tt.writes)
			}
			if got.Writes() && got.Type != TypeExtended && got.Type < 21 && got.Type != TypeWrite && got.Type != TypeFsetstat && len(got.WrittenPaths()) == 0 {
				t.Fatalf("WrittenPaths() empty for a write on a path")
			}
		})
	}
}

func TestWrittenPaths(t *testing.T) {
	tests := []struct {
		req  Request
		want []string
	}{
		{Request{Type: TypeOpen, Path: "a", Flags: FlagRead}, nil},
		{Request{Type: TypeOpen, Path: "a", Flags: FlagRead | FlagWrite}, []string{"a"}},
		{Request{Type: TypeRename, Path: "a", Path2: "b"}, []string{"a", "b"}},
		{Request{Type: TypeExtended, Extension: ExtPosixRename, Path: "a", Path2: "b"}, []string{"a", "b"}},
		{Request{Type: TypeSymlink, Path: "/etc/shadow", Path2: "l"}, []string{"l"}},
		{Request{Type: TypeExtended, Extension: ExtHardlink, Path: "a", Path2: "b"}, []string{"b"}},
		{Request{Type: TypeExtended, Extension: ExtCopyData, Handle: "r", Handle2: "w", Path: "a", Path2: "b"}, []string{"b"}},
		{Request{Type: TypeWrite, Handle: "h"}, nil},
		{Request{Type: TypeWrite, Handle: "h", Path: "f"}, []string{"f"}},
		{Request{Type: TypeRemove, Path: "f"}, []string{"f"}},
		{Request{Type: TypeStat, Path: "f"}, nil},
	}
	for _, tt := range tests {
		if got := tt.req.WrittenPaths(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s %s: WrittenPaths() = %q, want %q", tt.req.Type, tt.req.Extension, got, tt.want)
		}
	}
}

func TestOpenFlagsString(t *testing.T) {
	tests := []struct {
		flags OpenFlags
		want  string
	}{
		{0, "none"},
		{FlagRead, "read"},
		{FlagWrite | FlagCreate | FlagTruncate, "write|create|truncate"},
		{FlagExclusive | FlagAppend | FlagRead, "read|append|exclusive"},
		{FlagRead | 0x140, "read|0x140"},
	}
	for _, tt := range tests {
		if got := tt.flags.String(); got != tt.want {
			t.Errorf("OpenFlags(%#x).String() = %q, want %q", uint32(tt.flags), got, tt.want)
		}
	}
}

// TestParseMalformed cuts valid packets short at every byte, fixing up the
// length field so only the fields are short, and checks each is
// ErrMalformed; then it lies in string lengths and the length field.
func TestParseMalformed(t *testing.T) {
	requests := [][]byte{
		pkt(TypeInit, uint32(3), []Extension{{"x", "y"}}),
		pkt(TypeOpen, uint32(1), "/p", uint32(FlagRead), Attrs{Flags: AttrSize | AttrUIDGID | AttrPermissions | AttrACModTime | AttrExtended, Extended: 1}),
		pkt(TypeRead, uint32(5), "h", uint64(0), uint32(10)),
		pkt(TypeWrite, uint32(6), "h", uint64(0), "data"),
		pkt(TypeRename, uint32(18), "a", "b"),
		pkt(TypeSymlink, uint32(20), "a", "b"),
		pkt(TypeExtended, uint32(29), ExtCopyData, "r", uint64(1), uint64(0), "w", uint64(2)),
		pkt(TypeExtended, uint32(26), ExtLsetstat, "l", Attrs{Flags: AttrPermissions}),
	}
	responses := [][]byte{
		pkt(TypeVersion, uint32(3), []Extension{{"x", "y"}}),
		pkt(TypeStatus, uint32(1), uint32(3), "denied", ""),
		pkt(TypeHandle, uint32(1), "h"),
		pkt(TypeData, uint32(1), "data"),
		pkt(TypeName, uint32(1), uint32(2), "a", "-rw a", Attrs{}, "b", "-rw b", Attrs{Flags: AttrSize}),
		pkt(TypeAttrs, uint32(1), Attrs{Flags: AttrSize | AttrACModTime}),
	}
	cut := func(p []byte, n int) []byte {
		c := append([]byte(nil), p[:n]...)
		c[0], c[1], c[2], c[3] = 0, 0, byte((n-4)>>8), byte(n-4)
		return c
	}
	for _, p := range requests {
		if _, err := ParseRequest(p); err != nil {
			t.Fatalf("ParseRequest(%x): %v", p, err)
		}
		for n := 5; n < len(p); n++ {
			if PacketType(p[4]) == TypeInit && n == 9 {
				continue // an INIT without extensions
			}
			if _, err := ParseRequest(cut(p, n)); !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseRequest(%x cut to %d): %v, want ErrMalformed", p, n, err)
			}
		}
	}
	for _, p := range responses {
		if _, err := ParseResponse(p); err != nil {
			t.Fatalf("ParseResponse(%x): %v", p, err)
		}
		for n := 5; n < len(p); n++ {
			typ := PacketType(p[4])
			if (typ == TypeVersion && n == 9) || (typ == TypeStatus && n == 13) {
				continue // a VERSION without extensions, a STATUS without message
			}
			if _, err := ParseResponse(cut(p, n)); !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseResponse(%x cut to %d): %v, want ErrMalformed", p, n, err)
			}
		}
	}

	bad := []struct {
		name   string
		packet []byte
	}{
		{"string length past the end", pkt(TypeStat, uint32(1), raw{0, 0, 0, 9}, raw("abc"))},
		{"string length huge", pkt(TypeStat, uint32(1), raw{0xff, 0xff, 0xff, 0xff})},
		{"write data past the end", pkt(TypeWrite, uint32(1), "h", uint64(0), raw{0, 1, 0, 0}, raw("x"))},
		{"NUL in a path", pkt(TypeOpen, uint32(1), "/etc/passwd\x00.txt", uint32(FlagRead), Attrs{})},
		{"NUL in a rename target", pkt(TypeRename, uint32(1), "a", "b\x00")},
		{"NUL in an extension's path", pkt(TypeExtended, uint32(1), ExtPosixRename, "a", "\x00")},
		{"extended attribute count huge", pkt(TypeSetstat, uint32(1), "f", raw{0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})},
		{"unknown type without id", pkt(PacketType(99), raw{1})},
	}
	for _, tt := range bad {
		if _, err := ParseRequest(tt.packet); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseRequest: %v, want ErrMalformed", tt.name, err)
		}
	}
	for _, tt := range []struct {
		name   string
		packet []byte
	}{
		{"too short", []byte{0, 0, 0, 1}},
		{"length field larger", append([]byte{0, 0, 0, 10}, pkt(TypeStat, uint32(1), "")[4:]...)},
		{"length field smaller", append([]byte{0, 0, 0, 2}, pkt(TypeStat, uint32(1), "")[4:]...)},
		{"name count huge", pkt(TypeName, uint32(1), uint32(1<<31), "a", "b", Attrs{})},
		{"data past the end", pkt(TypeData, uint32(1), raw{0, 0, 1, 0})},
		{"status message past the end", pkt(TypeStatus, uint32(1), uint32(0), raw{0, 0, 0, 5}, raw("ab"))},
	} {
		if _, err := ParseResponse(tt.packet); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseResponse: %v, want ErrMalformed", tt.name, err)
		}
		if _, err := ParseRequest(tt.packet); err == nil && !strings.HasPrefix(tt.name, "name") && !strings.HasPrefix(tt.name, "data") && !strings.HasPrefix(tt.name, "status") {
			t.Errorf("%s: ParseRequest accepted it", tt.name)
		}
	}
	if _, err := ParseResponse(pkt(TypeOpen, uint32(1), "x", uint32(0), Attrs{})); !errors.Is(err, ErrUnknownType) {
		t.Errorf("ParseResponse of an OPEN: %v, want ErrUnknownType", err)
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name   string
		packet []byte
		want   Response
	}{
		{"version", pkt(TypeVersion, uint32(3), []Extension{{ExtPosixRename, "1"}, {ExtLimits, "1"}}),
			Response{Type: TypeVersion, Version: 3, Extensions: []Extension{{ExtPosixRename, "1"}, {ExtLimits, "1"}}}},
		{"status", pkt(TypeStatus, uint32(7), uint32(StatusNoSuchFile), "No such file", "en"),
			Response{Type: TypeStatus, ID: 7, Status: StatusNoSuchFile, Message: "No such file", Language: "en"}},
		{"status without message", pkt(TypeStatus, uint32(7), uint32(StatusOK)),
			Response{Type: TypeStatus, ID: 7, Status: StatusOK}},
		{"handle", pkt(TypeHandle, uint32(8), "\x00\x00\x00\x02"),
			Response{Type: TypeHandle, ID: 8, Handle: "\x00\x00\x00\x02"}},
		{"data", pkt(TypeData, uint32(9), "0123456789"), Response{Type: TypeData, ID: 9, Length: 10}},
		{"name", pkt(TypeName, uint32(10), uint32(2), "a.txt", "-rw-r--r-- a.txt", Attrs{Flags: AttrSize, Size: 3}, "b", "b", Attrs{}),
			Response{Type: TypeName, ID: 10, Count: 2, Names: []string{"a.txt", "b"}}},
		{"name empty", pkt(TypeName, uint32(10), uint32(0)), Response{Type: TypeName, ID: 10}},
		{"attrs", pkt(TypeAttrs, uint32(11), Attrs{Flags: AttrSize | AttrPermissions, Size: 5, Permissions: 0o100644}),
			Response{Type: TypeAttrs, ID: 11, Attrs: Attrs{Flags: AttrSize | AttrPermissions, Size: 5, Permissions: 0o100644}}},
		{"extended reply", pkt(TypeExtendedReply, uint32(12), uint64(1), uint64(2)),
			Response{Type: TypeExtendedReply, ID: 12, Length: 16}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResponse(tt.packet)
			if err != nil {
				t.Fatalf("ParseResponse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseResponse =\n%+v, want\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseResponseNamesBounded(t *testing.T) {
	n := MaxNames + 10
	fields := []any{uint32(1), uint32(n)}
	for i := 0; i < n; i++ {
		fields = append(fields, "f", "", Attrs{})
	}
	got, err := ParseResponse(pkt(TypeName, fields...))
	if err != nil {
		t.Fatal(err)
	}
	if got.Count != uint32(n) || len(got.Names) != MaxNames {
		t.Fatalf("Count %d, %d names; want %d, %d", got.Count, len(got.Names), n, MaxNames)
	}
}

func TestStatusPacket(t *testing.T) {
	p := StatusPacket(42, StatusPermissionDenied, "interlock: denied by policy")
	want := pkt(TypeStatus, uint32(42), uint32(3), "interlock: denied by policy", "")
	if !bytes.Equal(p, want) {
		t.Fatalf("StatusPacket = %x, want %x", p, want)
	}
	got, err := ParseResponse(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != 42 || got.Status != StatusPermissionDenied || got.Message != "interlock: denied by policy" {
		t.Fatalf("parsed back as %+v", got)
	}
	r := NewReader(bytes.NewReader(p))
	if pk, err := r.Next(); err != nil || !bytes.Equal(pk.Raw, p) {
		t.Fatalf("Reader reads it as %x, %v", pk.Raw, err)
	}
}

func TestNames(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{TypeExtendedReply.String(), "extended_reply"},
		{PacketType(99).String(), "type(99)"},
		{StatusPermissionDenied.String(), "permission denied"},
		{StatusOpUnsupported.String(), "operation unsupported"},
		{Status(9).String(), "status(9)"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
