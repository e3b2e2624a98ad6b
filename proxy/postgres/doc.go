// Package postgres is the gateway's PostgreSQL protocol engine, a
// [proxy.Handler]. An agent's connection to a PostgreSQL target arrives
// here (redirected by the kernel, or dialled directly in explicit mode);
// the handler speaks the server side of the wire protocol to the agent and
// the client side to the real server, logged in with credentials only the
// gateway holds, and decides every statement in between.
//
// It owns:
//   - the agent-facing start-up: SSLRequest (TLS with a certificate the
//     gateway's CA mints for the address the agent dialled, when the
//     target offers agent TLS; direct TLS too), GSSENCRequest (refused),
//     the start-up packet, and authentication, which is the kernel-attested
//     workload identity: the agent gets AuthenticationOk at once and is
//     never asked for a password;
//   - the upstream login (pgconn: SCRAM, md5, TLS disable/require/
//     verify-full, the password file read for every session) and the
//     takeover of that connection;
//   - the relay of the whole protocol: simple and extended queries
//     (pipelined or not), COPY in both directions, notices, notifications
//     and parameter changes at any time, cancel requests (each session's
//     key is upstream's process id with a secret of the gateway's own,
//     mapped to upstream's key), Terminate; what upstream sends and the
//     relay passes on unchanged reaches the agent as the bytes upstream
//     sent (serverReader), a result a mask rewrote is encoded anew;
//   - one policy decision per statement (with facts from sqlfacts), the
//     session's recording, and the command metrics;
//   - the place where results can be rewritten ([ResultRewriter]; the
//     masks themselves are in mask.go, COPY rows in copymask.go).
//
// # Decisions
//
// A simple Query is classified whole and denied whole when any of its
// statements is denied: its statements form one implicit transaction, and
// running only some would change what the text means. An extended-protocol
// statement is decided at Parse, the only message that carries its text;
// the names of denied statements (and of portals bound to them) are
// remembered, so a later Bind, Describe or Execute of them is refused too,
// even when upstream still knows the name from before. A Parse of several
// statements is refused (42601), as PostgreSQL would. SQL the classifier
// cannot parse is denied (rule "") and never forwarded: what the gateway
// cannot read, it cannot decide. When PostgreSQL's grammar rejects it the
// client gets PostgreSQL's own syntax error (42601, message and position);
// SQL the gateway refuses to parse (nested too deeply) gets 42501. A review
// decision holds the statement for a human's answer when the handler has a
// reviewer, and is a denial without one. The function call
// sub-protocol is refused: it names a function by OID, with no SQL for the
// policy to see.
//
// # Error contract
//
// What the agent sees:
//   - A denial is an ErrorResponse with severity ERROR, SQLSTATE 42501,
//     the decision's message and Detail "rule: <rule>" (no Detail when
//     policy.default decided). The session stays usable.
//   - A result the rewriter refuses is an ErrorResponse 42501 with the
//     rewriter's reason instead of the result. In the extended protocol
//     the batch fails upstream too: a Sync whose batch has a result the
//     rewriter may refuse (ResultRewriter.MayRefuse) waits until it has
//     been seen (a Flush asks upstream for it), and after a refusal a
//     statement that always fails goes before the Sync, so the statements
//     pipelined after the refused one roll back with the batch. A simple
//     Query cannot be failed part-way, so one in which a statement whose
//     result may be refused (a COPY; a FETCH, whose cursor may be binary)
//     is followed by others is denied whole: 0A000, rule interlock-guard.
//   - A held statement whose client sends a CancelRequest is refused with
//     57014; its review is abandoned.
//   - A failed upstream login is a FATAL ErrorResponse with upstream's
//     SQLSTATE (08006 when upstream was not reached). Upstream's message is
//     passed on only when it concerns what the agent asked for (a missing
//     database, too many connections, a server starting up); otherwise it
//     names the gateway's login, so the agent gets a message of its own.
//     The whole error is in the gateway's log and the recording.
//   - A start-up asking for replication is refused with FATAL 42501; an
//     unsupported protocol version with FATAL 0A000; a broken message with
//     FATAL 08P01, ending the session.
//   - When the session's context ends (shutdown, a revoked identity), the
//     agent gets FATAL 57P01 with context.Cause as the reason, both
//     connections close, and Serve returns context.Cause.
//   - When no recording can be created, the session is refused (FATAL
//     58000) before upstream is dialled: no session runs unrecorded. A
//     later recording failure is logged and the session goes on.
//
// Serve returns nil when the agent ends the session (Terminate, or closing
// the connection), an error wrapping io.EOF when upstream closed it, and
// other errors for failures the gateway should log.
//
// # Transaction state
//
// The agent and upstream always agree on the transaction state that
// ReadyForQuery reports. A denied statement is answered without upstream
// only when that cannot differ: nothing is on its way back from upstream,
// no extended-protocol batch is open there, and no transaction block is
// (status 'I', or 'E' where upstream has failed already). Otherwise the
// gateway sends upstream, in the denied statement's place, a statement
// that always fails (a syntax error, which never runs) and replaces
// upstream's error with the denial. So a denial inside BEGIN fails the
// transaction on both sides (both report 'E', and COMMIT rolls back on
// both), a denial inside a pipeline aborts the pipeline's implicit
// transaction up to its Sync exactly as an error there would, and the
// denial reaches the agent in order after every earlier response. After a
// denial in the extended protocol, the agent's messages up to the next Sync
// are discarded, as PostgreSQL discards them after an error.
//
// # Start-up parameters
//
// Only the client conveniences drivers send (application_name,
// client_encoding, DateStyle, TimeZone, search_path, statement_timeout, ...)
// are passed upstream; others (options, role, any other setting) are
// dropped, logged and recorded: a start-up parameter is a setting applied
// before any statement, out of the policy's sight.
package postgres
