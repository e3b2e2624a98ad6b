package sftp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxPacketLength is the largest length field Reader accepts by default:
// the bytes after the length, type byte included. It is OpenSSH's limit
// (SFTP_MAX_MSG_LENGTH) for both its client and its server, which give up
// on a longer packet too.
const MaxPacketLength = 256 << 10

var (
	// ErrPacketTooLarge: a packet's length field is over the Reader's
	// limit. The stream cannot be followed past it.
	ErrPacketTooLarge = errors.New("sftp packet too large")
	// ErrMalformed: a packet is shorter than its fields say, a length
	// points past the packet's end, or a field holds what it may not.
	ErrMalformed = errors.New("malformed sftp packet")
	// ErrUnknownType: a server packet of a type SFTP version 3 does not
	// have.
	ErrUnknownType = errors.New("unknown sftp packet type")
)

// PacketType is an SFTP packet's type byte.
type PacketType uint8

// The packet types of SFTP version 3 (draft-ietf-secsh-filexfer-02).
const (
	TypeInit          PacketType = 1
	TypeVersion       PacketType = 2
	TypeOpen          PacketType = 3
	TypeClose         PacketType = 4
	TypeRead          PacketType = 5
	TypeWrite         PacketType = 6
	TypeLstat         PacketType = 7
	TypeFstat         PacketType = 8
	TypeSetstat       PacketType = 9
	TypeFsetstat      PacketType = 10
	TypeOpendir       PacketType = 11
	TypeReaddir       PacketType = 12
	TypeRemove        PacketType = 13
	TypeMkdir         PacketType = 14
	TypeRmdir         PacketType = 15
	TypeRealpath      PacketType = 16
	TypeStat          PacketType = 17
	TypeRename        PacketType = 18
	TypeReadlink      PacketType = 19
	TypeSymlink       PacketType = 20
	TypeStatus        PacketType = 101
	TypeHandle        PacketType = 102
	TypeData          PacketType = 103
	TypeName          PacketType = 104
	TypeAttrs         PacketType = 105
	TypeExtended      PacketType = 200
	TypeExtendedReply PacketType = 201
)

var typeNames = map[PacketType]string{
	TypeInit: "init", TypeVersion: "version", TypeOpen: "open", TypeClose: "close",
	TypeRead: "read", TypeWrite: "write", TypeLstat: "lstat", TypeFstat: "fstat",
	TypeSetstat: "setstat", TypeFsetstat: "fsetstat", TypeOpendir: "opendir",
	TypeReaddir: "readdir", TypeRemove: "remove", TypeMkdir: "mkdir", TypeRmdir: "rmdir",
	TypeRealpath: "realpath", TypeStat: "stat", TypeRename: "rename",
	TypeReadlink: "readlink", TypeSymlink: "symlink", TypeStatus: "status",
	TypeHandle: "handle", TypeData: "data", TypeName: "name", TypeAttrs: "attrs",
	TypeExtended: "extended", TypeExtendedReply: "extended_reply",
}

// String returns the type's lower-case name ("open", "status"), or
// "type(N)" for a type version 3 does not have.
func (t PacketType) String() string {
	if name, ok := typeNames[t]; ok {
		return name
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Packet is one whole SFTP packet as it came off the stream.
type Packet struct {
	Type PacketType
	// Raw is the packet exactly as read: the 4-byte length, the type byte
	// and the payload, to be forwarded unchanged. Each packet has its own
	// Raw; the Reader does not reuse it.
	Raw []byte
}

// Payload returns the bytes after the type byte.
func (p Packet) Payload() []byte { return p.Raw[5:] }

// Reader cuts an SFTP stream (one direction of a "subsystem sftp" channel)
// into packets.
type Reader struct {
	r   io.Reader
	max uint32
	err error
}

// NewReader returns a Reader of r that accepts packets up to
// MaxPacketLength.
func NewReader(r io.Reader) *Reader { return NewReaderSize(r, MaxPacketLength) }

// NewReaderSize returns a Reader of r that accepts length fields up to
// limit (at least 1).
func NewReaderSize(r io.Reader, limit int) *Reader {
	return &Reader{r: r, max: uint32(min(max(limit, 1), 1<<31))}
}

// Next reads the next packet. It returns io.EOF when the stream ends
// between packets and an error wrapping io.ErrUnexpectedEOF when it ends
// inside one. After an error the stream's framing is lost, and every later
// call returns the same error.
func (r *Reader) Next() (Packet, error) {
	if r.err != nil {
		return Packet{}, r.err
	}
	p, err := r.next()
	if err != nil {
		r.err = err
	}
	return p, err
}

func (r *Reader) next() (Packet, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		if err == io.EOF {
			return Packet{}, io.EOF
		}
		return Packet{}, fmt.Errorf("reading an sftp packet's length: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return Packet{}, fmt.Errorf("reading an sftp packet of length 0: %w", ErrMalformed)
	}
	if n > r.max {
		return Packet{}, fmt.Errorf("reading an sftp packet of %d bytes, over %d: %w", n, r.max, ErrPacketTooLarge)
	}
	raw := make([]byte, 4+int(n))
	copy(raw, hdr[:])
	if _, err := io.ReadFull(r.r, raw[4:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Packet{}, fmt.Errorf("reading an sftp packet of %d bytes: %w", n, err)
	}
	return Packet{Type: PacketType(raw[4]), Raw: raw}, nil
}

// decoder reads the fields of one packet, remembering the first error so
// a parser can read all its fields and check once.
type decoder struct {
	b   []byte
	err error
}

// packetDecoder checks raw's framing and returns its type and a decoder of
// the bytes after the type.
func packetDecoder(raw []byte) (PacketType, *decoder, error) {
	if len(raw) < 5 {
		return 0, nil, fmt.Errorf("reading a packet of %d bytes: %w", len(raw), ErrMalformed)
	}
	if n := binary.BigEndian.Uint32(raw); uint64(n) != uint64(len(raw)-4) {
		return 0, nil, fmt.Errorf("reading a packet of %d bytes with length field %d: %w", len(raw), n, ErrMalformed)
	}
	return PacketType(raw[4]), &decoder{b: raw[5:]}, nil
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("reading %s: %w", what, ErrMalformed)
	}
}

func (d *decoder) uint32(what string) uint32 {
	if d.err != nil || len(d.b) < 4 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) uint64(what string) uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// bytes reads an SSH string without copying it.
func (d *decoder) bytes(what string) []byte {
	n := d.uint32(what)
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// string reads an SSH string into a copy, so the packet can be freed.
func (d *decoder) string(what string) string { return string(d.bytes(what)) }

// path reads a path. OpenSSH reads paths as C strings and refuses one with
// a NUL byte; another server might cut it there, and policy would have
// seen a different path than the server opens. Either way, it is refused.
func (d *decoder) path(what string) string {
	b := d.bytes(what)
	for _, c := range b {
		if c == 0 {
			d.fail(what + " (NUL byte in a path)")
			return ""
		}
	}
	return string(b)
}

// skipString reads an SSH string's length and skips it, returning the
// length.
func (d *decoder) skipString(what string) uint32 {
	return uint32(len(d.bytes(what)))
}

// Extension is a name and data pair of an INIT or VERSION packet.
type Extension struct {
	Name, Data string
}

// maxExtensions bounds how many extension pairs of an INIT or VERSION are
// kept; the rest are checked and dropped.
const maxExtensions = 64

func (d *decoder) extensions() []Extension {
	var out []Extension
	for d.err == nil && len(d.b) > 0 {
		name := d.bytes("an extension's name")
		data := d.bytes("an extension's data")
		if d.err == nil && len(out) < maxExtensions {
			out = append(out, Extension{Name: string(name), Data: string(data)})
		}
	}
	return out
}

// Attribute flags of an ATTRS structure.
const (
	AttrSize        = 0x00000001
	AttrUIDGID      = 0x00000002
	AttrPermissions = 0x00000004
	AttrACModTime   = 0x00000008
	AttrExtended    = 0x80000000
)

// Attrs is a version 3 ATTRS structure. Fields whose flag is not in Flags
// are zero. Extended attributes are checked and counted, not kept.
type Attrs struct {
	Flags       uint32
	Size        uint64
	UID, GID    uint32
	Permissions uint32
	Atime       uint32
	Mtime       uint32
	Extended    int
}

func (d *decoder) attrs() Attrs {
	var a Attrs
	a.Flags = d.uint32("attribute flags")
	if a.Flags&AttrSize != 0 {
		a.Size = d.uint64("the size attribute")
	}
	if a.Flags&AttrUIDGID != 0 {
		a.UID = d.uint32("the uid attribute")
		a.GID = d.uint32("the gid attribute")
	}
	if a.Flags&AttrPermissions != 0 {
		a.Permissions = d.uint32("the permissions attribute")
	}
	if a.Flags&AttrACModTime != 0 {
		a.Atime = d.uint32("the atime attribute")
		a.Mtime = d.uint32("the mtime attribute")
	}
	if a.Flags&AttrExtended != 0 {
		// Each pair takes at least 8 bytes, so a false count fails as
		// soon as the packet runs out.
		n := d.uint32("the extended attribute count")
		for i := uint32(0); i < n && d.err == nil; i++ {
			d.skipString("an extended attribute's name")
			d.skipString("an extended attribute's data")
			a.Extended++
		}
	}
	return a
}

// StatusPacket returns a whole SSH_FXP_STATUS packet answering request id
// with code and message (and an empty language tag), ready to send to the
// client: the gateway's answer to a request it does not forward, usually
// StatusPermissionDenied.
func StatusPacket(id uint32, code Status, message string) []byte {
	n := 1 + 4 + 4 + 4 + len(message) + 4
	b := make([]byte, 0, 4+n)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, byte(TypeStatus))
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, uint32(code))
	b = binary.BigEndian.AppendUint32(b, uint32(len(message)))
	b = append(b, message...)
	b = binary.BigEndian.AppendUint32(b, 0)
	return b
}

// closePacket returns a whole SSH_FXP_CLOSE packet of handle with id: the
// gateway's own close of a handle the client must not get (see
// Tracker.CloseUntracked).
func closePacket(id uint32, handle string) []byte { return stringPacket(TypeClose, id, handle) }

// realpathPacket returns a whole SSH_FXP_REALPATH packet of path with id:
// the gateway's own question (see Tracker.InternalRealpath).
func realpathPacket(id uint32, path string) []byte { return stringPacket(TypeRealpath, id, path) }

// stringPacket returns a whole packet of typ with id and one string.
func stringPacket(typ PacketType, id uint32, s string) []byte {
	n := 1 + 4 + 4 + len(s)
	b := make([]byte, 0, 4+n)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, byte(typ))
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
