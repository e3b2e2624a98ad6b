package sftp

import "fmt"

// Status is the code of an SSH_FXP_STATUS packet.
type Status uint32

// The status codes of SFTP version 3.
const (
	StatusOK               Status = 0
	StatusEOF              Status = 1
	StatusNoSuchFile       Status = 2
	StatusPermissionDenied Status = 3
	StatusFailure          Status = 4
	StatusBadMessage       Status = 5
	StatusNoConnection     Status = 6
	StatusConnectionLost   Status = 7
	StatusOpUnsupported    Status = 8
)

var statusNames = []string{
	"ok", "eof", "no such file", "permission denied", "failure", "bad message",
	"no connection", "connection lost", "operation unsupported",
}

// String returns the code's lower-case name ("permission denied"), or
// "status(N)" for a code version 3 does not have.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint32(s))
}

// MaxNames is how many file names of one NAME reply are kept in
// Response.Names; the rest are checked and counted. OpenSSH's server sends
// up to 100 per READDIR reply.
const MaxNames = 1024

// Response is a parsed server packet.
type Response struct {
	Type PacketType
	// ID is the id of the request answered; 0 for VERSION, which has none.
	ID uint32
	// Version and Extensions are VERSION's.
	Version    uint32
	Extensions []Extension
	// Status, Message and Language are STATUS's. A STATUS without message
	// and language (as servers older than version 3 send) parses with
	// both empty.
	Status            Status
	Message, Language string
	// Handle is HANDLE's.
	Handle string
	// Length is how many bytes of data a DATA reply carries, or the
	// length of an EXTENDED_REPLY's payload. The data is not copied.
	Length uint64
	// Count is how many entries a NAME reply has; Names holds the first
	// MaxNames file names (not the long names or attributes).
	Count uint32
	Names []string
	// Attrs are ATTRS's.
	Attrs Attrs
}

// ParseResponse parses a whole server packet (length, type and payload, as
// Reader returns it). Fields after those of version 3 are ignored. A type
// that is not a version 3 reply is an error wrapping ErrUnknownType.
func ParseResponse(raw []byte) (Response, error) {
	typ, d, err := packetDecoder(raw)
	if err != nil {
		return Response{}, fmt.Errorf("parsing an sftp response: %w", err)
	}
	resp := Response{Type: typ}
	switch typ {
	case TypeVersion:
		resp.Version = d.uint32("the version")
		resp.Extensions = d.extensions()
	case TypeStatus:
		resp.ID = d.uint32("the request id")
		resp.Status = Status(d.uint32("the status code"))
		if d.err == nil && len(d.b) > 0 {
			resp.Message = d.string("the status message")
			resp.Language = d.string("the language tag")
		}
	case TypeHandle:
		resp.ID = d.uint32("the request id")
		resp.Handle = d.string("the handle")
	case TypeData:
		resp.ID = d.uint32("the request id")
		resp.Length = uint64(d.skipString("the data"))
	case TypeName:
		resp.ID = d.uint32("the request id")
		resp.Count = d.uint32("the name count")
		// Every entry takes at least 12 bytes, so a false count fails as
		// soon as the packet runs out.
		for i := uint32(0); i < resp.Count && d.err == nil; i++ {
			name := d.bytes("a file name")
			d.skipString("a long name")
			d.attrs()
			if d.err == nil && len(resp.Names) < MaxNames {
				resp.Names = append(resp.Names, string(name))
			}
		}
	case TypeAttrs:
		resp.ID = d.uint32("the request id")
		resp.Attrs = d.attrs()
	case TypeExtendedReply:
		resp.ID = d.uint32("the request id")
		resp.Length = uint64(len(d.b))
	default:
		return Response{}, fmt.Errorf("parsing an sftp response of %s: %w", typ, ErrUnknownType)
	}
	if d.err != nil {
		return Response{}, fmt.Errorf("parsing an sftp %s response: %w", typ, d.err)
	}
	return resp, nil
}
