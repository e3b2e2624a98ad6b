// Package proxy owns the gateway's data path from an accepted connection to a
// protocol handler: the accept loops, attributing each connection to a
// target and a caller, the session lifecycle, and a shutdown that drains.
//
// The eBPF redirect (transparent mode) or a per-target listener (explicit
// mode) hands connections to [Server.Serve]. For each one the server asks an
// [Attributor] which target the client dialled, who dialled it and the
// original destination, picks the [Handler] registered for the target's
// protocol, and runs it in one goroutine per connection with a [Session]. The
// handler talks to the real target through [Session.Dial]; when the handler
// returns, the server closes the client connection. A handler that relays
// small messages back and forth wraps its sockets in [QuietConn], which
// keeps the runtime's monitor thread asleep between messages.
//
// Every session runs under a context created with [context.WithCancelCause].
// The cause is why the session was cut ([ErrShuttingDown] on shutdown, later
// "policy revoked", "token expired"), so a handler can tell the client why:
// a handler returns [context.Cause] of its context once that context is done.
//
// Error contract:
//   - An Attributor returns errors wrapping [ErrNoOrigin], [ErrUnknownTarget]
//     or [ErrUnknownWorkload] when it knows why it cannot attribute a
//     connection; anything else is counted as a plain error. A refused
//     connection is logged, counted in interlock_connections_refused_total
//     and closed; it never reaches a handler.
//   - A handler's io.EOF and closed-connection errors are normal ends of a
//     session, not failures.
//   - [NewServer] returns an error for an invalid [Options]; [Server.Serve]
//     returns nil once [Server.Shutdown] was called or its context is done,
//     and an error only when the listener fails for another reason.
//   - [Server.Shutdown] returns how many sessions it had to cut and, when it
//     cut any, an error wrapping the cause of its context.
package proxy
