// Package sftp owns the SSH handler's reading of the SFTP protocol,
// version 3 (draft-ietf-secsh-filexfer-02, what OpenSSH speaks), as it
// flows through a "subsystem sftp" channel: cutting each direction into
// packets, parsing what each client request asks and each server reply
// answers, and following handles, so the handler can decide every file
// operation and record what was read and written. It is neither a client
// nor a server; packets are forwarded as they were read, and the only
// packets it builds are the STATUS that refuses a request ([StatusPacket]),
// the CLOSE of a handle the client must not get
// ([Tracker.CloseUntracked]) and the handler's own REALPATH, with which it
// learns the login directory ([Tracker.InternalRealpath]).
//
// The handler's loop, per direction:
//
//	r := sftp.NewReader(clientToServer)
//	for {
//		p, err := r.Next()                 // p.Raw is forwarded as is
//		req, err := sftp.ParseRequest(p.Raw)
//		req, err = tracker.Request(req)    // Path filled from the handle;
//		                                   // ErrUnknownHandle: refuse it
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
//   - A request on a handle is tracked only while the handle is open as
//     far as the Tracker has seen: from the HANDLE reply that gave it out
//     until a CLOSE of it is sent. Before, or after, the server may have
//     given the handle (OpenSSH's are predictable) to a file the Tracker
//     does not know; see [ErrUnknownHandle].
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
//   - [Tracker.Request] returns [ErrUnknownHandle] for a request on a
//     handle it does not know as open, [ErrDuplicateID] for an id already
//     pending and [ErrTrackerFull] past [MaxPending] or [MaxTrackedBytes];
//     the request is not tracked, and the handler answers it itself.
//   - [Tracker.Response] returns [ErrUnexpectedResponse] for a reply to no
//     pending request, and ErrTrackerFull for a HANDLE reply past
//     [MaxHandles] or MaxTrackedBytes, together with the Completed open:
//     that handle must not reach the client (answer the open with a
//     failure, close the handle with [Tracker.CloseUntracked], whose reply
//     completes as [Completed.Internal] and is not forwarded, as does the
//     reply to [Tracker.InternalRealpath]). After an
//     ErrUnexpectedResponse the Tracker no longer knows the session's
//     state for sure: the handler should end the session rather than
//     decide on guesses.
package sftp
