package sftp

import (
	"encoding/binary"
	"fmt"
)

// str is an SSH string field for pkt; a plain Go string is one too.
type str []byte

// raw is bytes appended as they are, without a length.
type raw []byte

// pkt builds a whole packet of typ from fields: uint32, uint64, string or
// str (an SSH string), raw (bytes as they are), Attrs, and []Extension.
func pkt(typ PacketType, fields ...any) []byte {
	body := []byte{byte(typ)}
	for _, f := range fields {
		body = appendField(body, f)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func appendField(b []byte, f any) []byte {
	switch v := f.(type) {
	case uint32:
		return binary.BigEndian.AppendUint32(b, v)
	case uint64:
		return binary.BigEndian.AppendUint64(b, v)
	case string:
		return append(binary.BigEndian.AppendUint32(b, uint32(len(v))), v...)
	case str:
		return append(binary.BigEndian.AppendUint32(b, uint32(len(v))), v...)
	case raw:
		return append(b, v...)
	case Attrs:
		return appendAttrs(b, v)
	case []Extension:
		for _, e := range v {
			b = appendField(b, e.Name)
			b = appendField(b, e.Data)
		}
		return b
	}
	panic(fmt.Sprintf("pkt: field of type %T", f))
}

// appendAttrs encodes a; Extended pairs are written as empty strings.
func appendAttrs(b []byte, a Attrs) []byte {
	b = binary.BigEndian.AppendUint32(b, a.Flags)
	if a.Flags&AttrSize != 0 {
		b = binary.BigEndian.AppendUint64(b, a.Size)
	}
	if a.Flags&AttrUIDGID != 0 {
		b = binary.BigEndian.AppendUint32(b, a.UID)
		b = binary.BigEndian.AppendUint32(b, a.GID)
	}
	if a.Flags&AttrPermissions != 0 {
		b = binary.BigEndian.AppendUint32(b, a.Permissions)
	}
	if a.Flags&AttrACModTime != 0 {
		b = binary.BigEndian.AppendUint32(b, a.Atime)
		b = binary.BigEndian.AppendUint32(b, a.Mtime)
	}
	if a.Flags&AttrExtended != 0 {
		b = binary.BigEndian.AppendUint32(b, uint32(a.Extended))
		for i := 0; i < a.Extended; i++ {
			b = appendField(b, "")
			b = appendField(b, "")
		}
	}
	return b
}

// encodeRequest builds the packet a client would send for r: the
// inverse of ParseRequest, with zero bytes standing in for written data.
// It reports false for a request it cannot rebuild.
func encodeRequest(r Request) ([]byte, bool) {
	switch r.Type {
	case TypeInit:
		return pkt(r.Type, r.Version, r.Extensions), true
	case TypeOpen:
		return pkt(r.Type, r.ID, r.Path, uint32(r.Flags), r.Attrs), true
	case TypeClose, TypeFstat, TypeReaddir:
		return pkt(r.Type, r.ID, r.Handle), true
	case TypeRead:
		return pkt(r.Type, r.ID, r.Handle, r.Offset, uint32(r.Length)), true
	case TypeWrite:
		return pkt(r.Type, r.ID, r.Handle, r.Offset, str(make([]byte, r.Length))), true
	case TypeLstat, TypeStat, TypeOpendir, TypeRemove, TypeRmdir, TypeRealpath, TypeReadlink:
		return pkt(r.Type, r.ID, r.Path), true
	case TypeSetstat, TypeMkdir:
		return pkt(r.Type, r.ID, r.Path, r.Attrs), true
	case TypeFsetstat:
		return pkt(r.Type, r.ID, r.Handle, r.Attrs), true
	case TypeRename, TypeSymlink:
		return pkt(r.Type, r.ID, r.Path, r.Path2), true
	case TypeExtended:
		switch r.Extension {
		case ExtPosixRename, ExtHardlink:
			return pkt(r.Type, r.ID, r.Extension, r.Path, r.Path2), true
		case ExtFsync, ExtFstatvfs:
			return pkt(r.Type, r.ID, r.Extension, r.Handle), true
		case ExtStatvfs, ExtExpandPath:
			return pkt(r.Type, r.ID, r.Extension, r.Path), true
		case ExtLsetstat:
			return pkt(r.Type, r.ID, r.Extension, r.Path, r.Attrs), true
		case ExtCopyData:
			return pkt(r.Type, r.ID, r.Extension, r.Handle, r.Offset, r.Length, r.Handle2, r.Offset2), true
		}
		return pkt(r.Type, r.ID, r.Extension), true
	}
	return pkt(r.Type, r.ID), true
}

// encodeResponse builds the packet a server would send for r, the inverse
// of ParseResponse: NAME entries get empty long names and attributes, and
// zero bytes stand in for data. It reports false when r's names were cut
// at MaxNames, so the packet cannot be rebuilt.
func encodeResponse(r Response) ([]byte, bool) {
	switch r.Type {
	case TypeVersion:
		return pkt(r.Type, r.Version, r.Extensions), true
	case TypeStatus:
		if r.Message == "" && r.Language == "" {
			return pkt(r.Type, r.ID, uint32(r.Status)), true
		}
		return pkt(r.Type, r.ID, uint32(r.Status), r.Message, r.Language), true
	case TypeHandle:
		return pkt(r.Type, r.ID, r.Handle), true
	case TypeData:
		return pkt(r.Type, r.ID, str(make([]byte, r.Length))), true
	case TypeName:
		if int(r.Count) != len(r.Names) {
			return nil, false
		}
		fields := []any{r.ID, r.Count}
		for _, n := range r.Names {
			fields = append(fields, n, "", Attrs{})
		}
		return pkt(r.Type, fields...), true
	case TypeAttrs:
		return pkt(r.Type, r.ID, r.Attrs), true
	case TypeExtendedReply:
		return pkt(r.Type, r.ID, raw(make([]byte, r.Length))), true
	}
	return nil, false
}
