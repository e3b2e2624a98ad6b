// Package asciicast owns the terminal recordings of interlock's interactive
// sessions: writing them as the gateway relays a shell or pty session, and
// reading them back to replay ([Play]) or print ([Dump]) them. The session's
// event log (package record) names the recording; the recording holds what
// the terminal showed and what was typed.
//
// # Files
//
// A recording is <id>.cast next to the session's <id>.jsonl in the
// recording store ([Path] validates the id as record does). [Create] makes
// it with mode 0600 and never overwrites an existing file.
//
// # Format
//
// The files are asciicast version 2, the format of the asciinema tools. The
// first line is a JSON object, the [Header]:
//
//	{"version":2,"width":80,"height":24,"timestamp":1764400500,"env":{"SHELL":"/bin/bash","TERM":"xterm-256color"},"title":"..."}
//
// version, width and height are required; timestamp (Unix seconds of the
// start), duration and idle_time_limit (seconds), command, title and env
// are optional. Every further line is one event, a JSON array
//
//	[TIME, CODE, DATA]
//
// where TIME is seconds since the start as a number (the Writer writes
// microseconds: 1.250000), CODE is "o" (output to the terminal), "i" (input
// typed), "r" (resize; DATA is "COLSxROWS") or "m" (a marker; DATA is its
// label), and DATA is a JSON string. Terminal data that is not valid UTF-8
// is written with each invalid byte replaced by U+FFFD; a multi-byte
// character split across two Output calls is kept whole.
//
// # Writing
//
// The caller passes each event's time as its offset from the session start
// rather than the Writer reading a clock: the proxy knows when it saw the
// bytes, and tests can write exact recordings. The Writer never writes a
// time earlier than the one before it, so events from concurrent goroutines
// stay ordered. Events are buffered and written as whole lines at least
// every 100 ms, so the file on disk ends at a line boundary unless a write
// itself was cut short. The Writer does not bound the file's size; a caller
// that wants a bound checks [Writer.Size].
//
// The Writer keeps a running SHA-256 and length of what it wrote;
// [Writer.Digest] gives them once it is closed, for the session's event
// log to hold (record.Command.RecordingSHA256), which puts the recording
// under the log's hash chain.
//
// # Reading
//
// [Open] reads the header; [Reader.Next] returns events in file order.
// Lines are limited to [MaxLine] bytes, which bounds the memory an
// untrusted file can make the Reader use; the Writer splits large output
// into several events so that it never exceeds that limit. Blank lines are
// skipped. Codes other than the four above are returned as they are, for
// the caller to ignore.
//
// # Replaying
//
// The output was produced by the agent and the target, so [Play] and
// [Dump] pass it through a [Filter] unless told Raw: what renders a
// terminal session (text, colours, cursor movement, erasing, scroll
// regions, the alternate screen, bracketed paste) reaches the operator's
// terminal; OSC, DCS, SOS, PM and APC strings, queries the terminal would
// answer into its input, window operations, mouse reporting and keyboard
// changes do not, also when split across events; nor do switches out of
// UTF-8 or into 8-bit controls, which would make a character's bytes
// controls.
//
// # Error contract
//
//   - [Create] wraps [fs.ErrExist] when the file exists, and [ErrInvalid]
//     for a header it cannot write (version not 2, size not 1..65535).
//     [Path] wraps record.ErrInvalidID.
//   - A Writer whose write or fsync failed returns that error from every
//     later call (sticky) and closes [Writer.Failed]; calls after Close
//     return [ErrClosed]; Close is idempotent. [Writer.Digest] is an error
//     before Close and for a Writer whose write failed. Resize with an invalid size
//     wraps [ErrInvalid] and does not break the Writer.
//   - [Open] wraps [ErrVersion] for a header whose version is not 2 and
//     [ErrMalformed] for anything else wrong with the first line.
//   - [Reader.Next] returns io.EOF after the last event. A malformed line is
//     an error wrapping [ErrMalformed] (or [ErrLineTooLong]) and naming its
//     line number; the Reader returns it from then on. A last line without
//     a newline that does not parse is the trace of a write cut short by a
//     crash: Next reports io.EOF for it, not an error. I/O errors are
//     wrapped as they are.
//   - [Play] and [Dump] return the errors of reading (as above, except
//     io.EOF, which ends them with nil) and of writing to their output; Play
//     returns the context's cause when ctx ends and the error of
//     [PlayOptions.Sleep] if it fails. Output written before an error stays
//     written.
package asciicast
