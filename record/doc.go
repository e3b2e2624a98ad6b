// Package record owns the gateway's session recordings: one append-only
// event log per session, kept outside the agent's process, and the tools to
// list, read, verify and print them.
//
// A [Store] is a folder (the gateway uses <state_dir>/recordings) holding
// <id>.jsonl per session. [Store.Create] writes the session_start event and
// returns a [Recorder]; the protocol handler appends one command event per
// command with [Recorder.Command] and ends the log with [Recorder.Close].
// Each event is one JSON line; a batch of events is written with a single
// write call, so a crash can cut the log only after a whole line or inside
// the last one.
//
// Text: every string of [Start], [Command], [Result] and [End] is free text
// from agents and targets, and need not be UTF-8. A JSON string cannot
// carry bytes that are not, so such a string, and one that starts with NUL,
// is stored as NUL followed by its Go-quoted form without the quotes
// (strconv.Quote): the Latin-1 "café" is stored as "\u0000caf\\xe9". Other
// strings are stored as they are. Reading a log undoes this, so
// [Store.Events] returns the bytes that were recorded, and the types'
// MarshalJSON methods apply it, so the JSON of an event is the log's.
// Every such string is cut to [MaxTextBytes] (64 KiB) when it is recorded,
// inside this package so no caller has to; the event's Truncated lists each
// string cut with its full length and SHA-256, so a cut statement is still
// identified exactly.
//
// Integrity: events carry Seq (1, 2, 3, ...), Prev (the Hash of the event
// before) and Hash = hex(sha256(Prev || the event's line with Hash "")),
// where the line is encoding/json's encoding of [Event], whose field order is
// fixed, with free text stored as above. Hash is the last field, so the
// hashed bytes are the stored line with its hash value emptied: Verify
// hashes the bytes as stored, never a re-encoding. [Store.Verify] recomputes
// the chain and also requires every line to be exactly what the writer
// writes for the event it decodes to, so editing, removing, reordering or
// inserting a line, or adding fields or whitespace to one, shows. Logs
// written before text was stored this way have \ufffd where a byte was not
// UTF-8 (the bytes are lost); Verify accepts that spelling as canonical too,
// so those logs still verify when untouched. Removing lines from the
// end cannot be told apart from a session that never ended (a crash, or one
// still running): such a log verifies OK but not Complete. That includes
// cutting it to nothing, or inside its first line: an empty log, or one
// holding only a partial first line, is what a gateway that stopped between
// creating the file and writing session_start leaves, so Verify reports it
// OK with no events and not Complete, not tampered. This weakens nothing:
// emptying a log is deleting it, which no chain inside the file can show.
// (A Create that fails to write session_start removes the file itself.)
// Terminal recordings: a command event's Recording names a file next to
// the log (an asciicast .cast file, written while the command runs), and
// its RecordingSHA256 and RecordingBytes, set when the file is closed,
// put the file under the chain; with strict recording the command event
// is written first, so they are in its result event. Verify checks every
// file the verified events name: one missing, not a regular file, or
// not of that length and SHA-256 is tampering (OK false). A log written
// before recordings were hashed names them without hashes; Verify reports
// those as uncovered in [VerifyResult.Recordings] and the log still
// verifies, but a file it names that is gone is still tampering.
// The chain is not signed, so it proves the log was not altered piecemeal,
// not who wrote it; someone able to rewrite the whole file can rewrite the
// whole chain, or delete the file. Only a copy kept off the host (shipped
// as it is written) protects against that.
//
// Durability: by default command events are queued in memory and written in
// batches within [Store.FlushInterval] (100 ms unless set), without fsync,
// and [Recorder.Close] fsyncs the log; session_start is written when the
// log is created. With [Store.Strict] every event is written and fsynced
// before Command returns, so a handler that forwards a command only after
// Command returned nil never runs a command that is not on disk.
//
// Error contract:
//   - [Store.Create], [Store.Events] and [Store.Verify] return errors wrapping
//     [ErrInvalidID] for an id that is not a plain file name; Events and
//     Verify wrap [ErrNotFound] when the session has no log.
//   - [Store.Create] wraps [fs.ErrExist] when the session already has a log,
//     and fails on a store opened with [OpenStoreReadOnly], which never
//     creates its folder (a missing one holds no sessions).
//   - A Recorder whose write or fsync failed returns that error from then on
//     (sticky) and closes [Recorder.Failed], also when the failure happened
//     in a batch written in the background; a Recorder used after Close
//     returns [ErrClosed]. What to do
//     about it (cut the session, or carry on unrecorded) is the handler's
//     decision.
//   - [Store.Events] returns an error naming the line of the first malformed
//     line. [Store.Verify] returns an error only for I/O (of the log or of
//     a recording it names); whatever is wrong with the content is
//     reported in [VerifyResult].
package record
