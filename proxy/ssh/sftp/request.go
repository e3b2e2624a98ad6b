package sftp

import (
	"fmt"
	"strings"
)

// OpenFlags are the pflags of an OPEN request.
type OpenFlags uint32

// The pflags of SFTP version 3.
const (
	FlagRead      OpenFlags = 0x01
	FlagWrite     OpenFlags = 0x02
	FlagAppend    OpenFlags = 0x04
	FlagCreate    OpenFlags = 0x08
	FlagTruncate  OpenFlags = 0x10
	FlagExclusive OpenFlags = 0x20
)

var flagNames = []struct {
	flag OpenFlags
	name string
}{
	{FlagRead, "read"}, {FlagWrite, "write"}, {FlagAppend, "append"},
	{FlagCreate, "create"}, {FlagTruncate, "truncate"}, {FlagExclusive, "exclusive"},
}

// String returns the flags' names joined with |, in the order read, write,
// append, create, truncate, exclusive, then any unknown bits in hex; "none"
// for no flags.
func (f OpenFlags) String() string {
	if f == 0 {
		return "none"
	}
	var parts []string
	for _, fl := range flagNames {
		if f&fl.flag != 0 {
			parts = append(parts, fl.name)
			f &^= fl.flag
		}
	}
	if f != 0 {
		parts = append(parts, fmt.Sprintf("0x%x", uint32(f)))
	}
	return strings.Join(parts, "|")
}

// Writes reports whether an open with these flags can change the file:
// write, append, create or truncate.
func (f OpenFlags) Writes() bool {
	return f&(FlagWrite|FlagAppend|FlagCreate|FlagTruncate) != 0
}

// Names of the OpenSSH extended requests this package reads.
const (
	ExtPosixRename = "posix-rename@openssh.com"
	ExtHardlink    = "hardlink@openssh.com"
	ExtFsync       = "fsync@openssh.com"
	ExtStatvfs     = "statvfs@openssh.com"
	ExtFstatvfs    = "fstatvfs@openssh.com"
	ExtLsetstat    = "lsetstat@openssh.com"
	ExtLimits      = "limits@openssh.com"
	ExtExpandPath  = "expand-path@openssh.com"
	ExtCopyData    = "copy-data"
	ExtHomeDir     = "home-directory"
	ExtUsersGroups = "users-groups-by-id@openssh.com"
)

// readOnlyExtensions change nothing on the server. An extension not listed
// here or in ParseRequest's writers is taken to write: the gateway cannot
// know what it does.
var readOnlyExtensions = map[string]bool{
	ExtFsync: true, ExtStatvfs: true, ExtFstatvfs: true, ExtLimits: true,
	ExtExpandPath: true, ExtHomeDir: true, ExtUsersGroups: true,
}

// Request is a parsed client packet.
//
// Paths are as the client sent them: a relative path is relative to the
// directory the server started in (the user's home for OpenSSH), and
// neither . nor .. nor symbolic links are resolved. Policy on paths must
// allow for that (REALPATH and expand-path replies show what the server
// resolved, after the fact).
type Request struct {
	Type PacketType
	// ID is the request id; 0 for INIT, which has none.
	ID uint32
	// Op is a stable lower-case name: the type's name ("open", "read",
	// "write", "remove", "rename", "mkdir", "rmdir", "opendir", "readdir",
	// "stat", "lstat", "fstat", "setstat", "fsetstat", "realpath",
	// "readlink", "symlink", "close", "init"), "extended:<name>" for an
	// EXTENDED request, or "unknown" for a type that is not a version 3
	// request.
	Op string
	// Path is the path operated on. For rename, posix-rename and hardlink
	// it is the existing (old) path; for symlink, the link's target. For a
	// request on a handle, Tracker fills it with the path the handle was
	// opened with (for copy-data, the read handle's).
	Path string
	// Path2 is the second path: the new name of rename and posix-rename,
	// the link created by symlink and hardlink; for copy-data, Tracker
	// fills it with the write handle's path.
	//
	// SYMLINK: the draft orders the fields linkpath, targetpath, but
	// OpenSSH (whose server and client agree) sends the target first and
	// the link second. This package reads them as OpenSSH does: the first
	// string is the target (Path), the second the link created (Path2).
	Path2 string
	// Handle is the handle of close, read, write, fstat, fsetstat,
	// readdir, fsync, fstatvfs, and copy-data's read handle; Handle2 is
	// copy-data's write handle. Handles are opaque bytes.
	Handle, Handle2 string
	// Offset is the file offset of read, write and copy-data's read;
	// Offset2 is copy-data's write offset.
	Offset, Offset2 uint64
	// Length is how many bytes read asks for, write carries (its data is
	// not copied), or copy-data copies (0: to the end of the file).
	Length uint64
	// Flags are an open's pflags.
	Flags OpenFlags
	// Attrs are the attributes of open, setstat, fsetstat, mkdir and
	// lsetstat.
	Attrs Attrs
	// Extension is an EXTENDED request's name.
	Extension string
	// Version and Extensions are INIT's.
	Version    uint32
	Extensions []Extension
}

// Writes reports whether the request can change the file system: open
// with write, append, create or truncate; write, remove, rename, mkdir,
// rmdir, setstat, fsetstat, symlink; the extensions posix-rename,
// hardlink, lsetstat and copy-data; and, since the gateway cannot tell,
// any extension it does not know and any unknown request type.
func (r Request) Writes() bool {
	switch r.Type {
	case TypeOpen:
		return r.Flags.Writes()
	case TypeWrite, TypeRemove, TypeRename, TypeMkdir, TypeRmdir, TypeSetstat,
		TypeFsetstat, TypeSymlink:
		return true
	case TypeExtended:
		return !readOnlyExtensions[r.Extension]
	case TypeInit, TypeClose, TypeRead, TypeLstat, TypeFstat, TypeOpendir,
		TypeReaddir, TypeRealpath, TypeStat, TypeReadlink:
		return false
	}
	return true
}

// WrittenPaths returns the paths a request that Writes changes: Path,
// and for rename and posix-rename both paths; the new link (Path2) for
// symlink and hardlink; the write handle's path (Path2) for copy-data. It
// returns nil for a request that does not write, and the paths it knows
// (possibly none) for an unknown one. A path from a handle is there only
// once Tracker has filled it.
func (r Request) WrittenPaths() []string {
	if !r.Writes() {
		return nil
	}
	var paths []string
	switch {
	case r.Type == TypeRename || (r.Type == TypeExtended && r.Extension == ExtPosixRename):
		paths = []string{r.Path, r.Path2}
	case r.Type == TypeSymlink || (r.Type == TypeExtended && (r.Extension == ExtHardlink || r.Extension == ExtCopyData)):
		paths = []string{r.Path2}
	default:
		paths = []string{r.Path, r.Path2}
	}
	out := paths[:0]
	for _, p := range paths {
		if p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// namesHandles reports whether the request names a handle (Handle), and
// a second one (copy-data's Handle2): by its type, so an empty handle
// string counts too.
func (r Request) namesHandles() (first, second bool) {
	switch r.Type {
	case TypeClose, TypeRead, TypeWrite, TypeFstat, TypeFsetstat, TypeReaddir:
		return true, false
	case TypeExtended:
		switch r.Extension {
		case ExtFsync, ExtFstatvfs:
			return true, false
		case ExtCopyData:
			return true, true
		}
	}
	return false, false
}

// ParseRequest parses a whole client packet (length, type and payload, as
// Reader returns it). Fields after those of version 3 are ignored, as
// OpenSSH's server ignores them. A packet of a type that is not a version 3
// request parses as Op "unknown" with its ID (when it has four bytes for
// one), so the gateway can still answer it.
func ParseRequest(raw []byte) (Request, error) {
	typ, d, err := packetDecoder(raw)
	if err != nil {
		return Request{}, fmt.Errorf("parsing an sftp request: %w", err)
	}
	req := Request{Type: typ, Op: typ.String()}
	if typ == TypeInit {
		req.Version = d.uint32("the version")
		req.Extensions = d.extensions()
		return finish(req, d)
	}
	req.ID = d.uint32("the request id")
	switch typ {
	case TypeOpen:
		req.Path = d.path("the path")
		req.Flags = OpenFlags(d.uint32("the open flags"))
		req.Attrs = d.attrs()
	case TypeClose, TypeFstat, TypeReaddir:
		req.Handle = d.string("the handle")
	case TypeRead:
		req.Handle = d.string("the handle")
		req.Offset = d.uint64("the offset")
		req.Length = uint64(d.uint32("the length"))
	case TypeWrite:
		req.Handle = d.string("the handle")
		req.Offset = d.uint64("the offset")
		req.Length = uint64(d.skipString("the data"))
	case TypeLstat, TypeStat, TypeOpendir, TypeRemove, TypeRmdir, TypeRealpath, TypeReadlink:
		req.Path = d.path("the path")
	case TypeSetstat, TypeMkdir:
		req.Path = d.path("the path")
		req.Attrs = d.attrs()
	case TypeFsetstat:
		req.Handle = d.string("the handle")
		req.Attrs = d.attrs()
	case TypeRename:
		req.Path = d.path("the old path")
		req.Path2 = d.path("the new path")
	case TypeSymlink:
		req.Path = d.path("the link's target")
		req.Path2 = d.path("the link's path")
	case TypeExtended:
		parseExtended(&req, d)
	default:
		req.Op = "unknown"
		if d.err != nil {
			// Without an id the packet cannot even be answered.
			return Request{}, fmt.Errorf("parsing an sftp request of %s: %w", typ, d.err)
		}
	}
	return finish(req, d)
}

func finish(req Request, d *decoder) (Request, error) {
	if d.err != nil {
		return Request{}, fmt.Errorf("parsing an sftp %s request: %w", req.Op, d.err)
	}
	return req, nil
}

// KnownExtension reports an extension whose request this package reads
// whole: every path and handle it names is in the Request. Of any other,
// nothing says which files it touches.
func KnownExtension(name string) bool {
	switch name {
	case ExtPosixRename, ExtHardlink, ExtFsync, ExtStatvfs, ExtFstatvfs, ExtLsetstat,
		ExtLimits, ExtExpandPath, ExtCopyData, ExtHomeDir, ExtUsersGroups:
		return true
	}
	return false
}

func parseExtended(req *Request, d *decoder) {
	req.Extension = d.string("the extension's name")
	req.Op = "extended:" + req.Extension
	switch req.Extension {
	case ExtPosixRename, ExtHardlink:
		req.Path = d.path("the old path")
		req.Path2 = d.path("the new path")
	case ExtFsync, ExtFstatvfs:
		req.Handle = d.string("the handle")
	case ExtStatvfs, ExtExpandPath:
		req.Path = d.path("the path")
	case ExtLsetstat:
		req.Path = d.path("the path")
		req.Attrs = d.attrs()
	case ExtCopyData:
		req.Handle = d.string("the read handle")
		req.Offset = d.uint64("the read offset")
		req.Length = d.uint64("the read length")
		req.Handle2 = d.string("the write handle")
		req.Offset2 = d.uint64("the write offset")
	}
}
