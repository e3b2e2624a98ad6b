// Package tcp is the protocol handler that forwards bytes unchanged: it dials
// the session's original destination and copies both ways, for targets whose
// protocol the gateway does not inspect.
//
// Half-close is kept: when one side finishes sending, the other side's write
// half is shut down and the other direction goes on. The session ends when
// both directions are done, when either fails (both connections are closed),
// or when its context is done; then Serve returns [context.Cause] of the
// context, so the server logs why the session was cut. Each direction
// relays message by message through proxy.QuietConn until a read fills its
// 8 KiB buffer, and from then on moves the bytes with splice(2): small
// requests and answers cost no wake-up of the Go runtime's monitor thread,
// bulk transfers copy less.
//
// Error contract: Serve returns nil when both directions ended with EOF, the
// dial error wrapped as "dialing ...", the first copy error wrapped as
// "copying upstream|downstream: ...", or the context's cause.
package tcp
