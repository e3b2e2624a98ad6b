// Package sftp owns the SSH handler's reading of the SFTP protocol,
// version 3 (draft-ietf-secsh-filexfer-02, what OpenSSH speaks), as it
// flows through a "subsystem sftp" channel: cutting each direction into
// packets, parsing what each client request asks and each server reply
// answers, and following handles, so the handler can decide every file
// operation and record what was read and written. It is neither a client
// nor a server; packets are forwarded as they were read, and the only
// packet it builds is the STATUS that refuses a request ([StatusPacket]).
//
// The handler's loop, per direction:
//
//	r := sftp.NewReader(clientToServer)
//	for {
//		p, err := r.Next()                 // p.Raw is forwarded as is
//		req, err := sftp.ParseRequest(p.Raw)
//		req, err = tracker.Request(req)    // Path filled from the handle
//		// decide on req.Op, req.Path, req.Path2, req.Writes() ...
//		// denied: send sftp.StatusPacket(req.ID, sftp.StatusPermissionDenied, why)
//		// to the client and give that packet, parsed, to tracker.Response.
//	}
//
// and for server packets ParseResponse and Tracker.Response, whose
// [Completed] pairs each reply with its request; a CLOSE's completion
// carries the bytes read and written through the handle.
//
// What the package trusts and does not:
//   - Paths are reported as sent. They may be relative (to the login
//     directory) and hold .. or symbolic links; see [Request].
//   - SYMLINK's paths come in OpenSSH's order, target first, not the
//     draft's; see [Request.Path2].
//   - Anything it cannot classify counts as a write: an unknown extension
//     or request type ([Request.Writes]).
//   - A request of a type version 3 does not have (Op "unknown") should be
//     answered by the handler (StatusOpUnsupported), not forwarded:
//     OpenSSH's server logs it and never replies, so it would stay pending
//     in the Tracker, and the server stops reading requests it already
//     has buffered until more input arrives.
//
// # Error contract
//
//   - [Reader.Next] returns io.EOF at a clean end of stream, an error
//     wrapping io.ErrUnexpectedEOF inside a packet, [ErrPacketTooLarge]
//     for a length field over the limit, [ErrMalformed] for a length of 0,
//     or the underlying reader's error. Errors are sticky: the framing is
//     lost, and the session must end.
//   - [ParseRequest] and [ParseResponse] return errors wrapping
//     [ErrMalformed] for a packet whose length field does not match its
//     size, that ends before its fields do, whose string lengths point
//     past its end, or whose path holds a NUL byte. ParseResponse returns
//     [ErrUnknownType] for a type that is not a version 3 reply;
//     ParseRequest instead parses an unknown type as Op "unknown", so it
//     can be refused by id. Neither panics on any input, both allocate
//     only in proportion to the packet's size, and neither returns a value
//     with an error.
//   - [Tracker.Request] returns [ErrDuplicateID] for an id already
//     pending and [ErrTrackerFull] past [MaxPending] or [MaxTrackedBytes];
//     [Tracker.Response] returns [ErrUnexpectedResponse] for a reply to no
//     pending request and ErrTrackerFull past [MaxHandles]. After an error
//     the Tracker no longer knows the session's state for sure: the
//     handler should end the session rather than decide on guesses.
package sftp
