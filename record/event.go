package record

import "time"

// Event is one line of a session's event log. Type says which of the
// optional parts is set. Seq counts from 1; Prev is the Hash of the event
// before (empty for the first); Hash covers everything else in the event,
// so editing, removing or reordering lines breaks the chain.
type Event struct {
	Type    string    `json:"type"` // EventStart, EventCommand, EventResult, EventEnd
	Time    time.Time `json:"time"`
	Session string    `json:"session"`
	Seq     uint64    `json:"seq"`

	Start   *Start   `json:"start,omitempty"`
	Command *Command `json:"command,omitempty"`
	End     *End     `json:"end,omitempty"`
	Result  *Result  `json:"result,omitempty"`
	// Truncated lists the strings of the part that were cut to
	// MaxTextBytes, with their full length and SHA-256.
	Truncated []Truncation `json:"truncated,omitempty"`

	Prev string `json:"prev,omitempty"`
	Hash string `json:"hash"`
}

// Event types.
const (
	EventStart   = "session_start"
	EventCommand = "command"
	EventEnd     = "session_end"
	// EventResult is the outcome of a command recorded, with strict
	// recording, before it ran.
	EventResult = "result"
)

// Start describes who opened the session and where it goes.
type Start struct {
	Protocol    string   `json:"protocol"`
	Target      string   `json:"target"`
	Destination string   `json:"destination"` // the address the client dialled
	Client      string   `json:"client"`      // the client's address as the gateway saw it
	Workload    string   `json:"workload"`
	Subject     string   `json:"subject"`
	Groups      []string `json:"groups,omitempty"`
	Issuer      string   `json:"issuer,omitempty"`
	PID         uint32   `json:"pid,omitempty"`
	UID         uint32   `json:"uid"`
	Executable  string   `json:"executable,omitempty"`
	CgroupID    uint64   `json:"cgroup_id,omitempty"`
	// Protocol-specific facts of the session, e.g. the database and user a
	// PostgreSQL client asked for.
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Command is one command and what became of it.
type Command struct {
	Text     string `json:"text"`              // the statement, shell command, request line
	Command  string `json:"command,omitempty"` // e.g. SELECT, exec
	Kind     string `json:"kind,omitempty"`    // e.g. read, write, ddl
	Decision string `json:"decision"`          // allow, deny, ...
	Rule     string `json:"rule,omitempty"`    // the rule that decided; "" for the default
	Message  string `json:"message,omitempty"` // what a denied client was told
	// Outcome, when the command ran.
	DurationMS float64  `json:"duration_ms,omitempty"`
	Rows       int64    `json:"rows,omitempty"`
	Tag        string   `json:"tag,omitempty"`    // e.g. the PostgreSQL command tag "SELECT 3"
	Error      string   `json:"error,omitempty"`  // the target's error, if any
	Masked     int64    `json:"masked,omitempty"` // values masked in the result
	MaskRules  []string `json:"mask_rules,omitempty"`
	// Recording names the file, in the store's folder, holding the
	// command's terminal stream (an asciicast v2 .cast file).
	Recording string `json:"recording,omitempty"`
	// RecordingSHA256 (hex) and RecordingBytes are the SHA-256 and length
	// of that file as it was closed, which puts its content under the
	// chain: [Store.Verify] checks the file against them. A command
	// recorded with [Recorder.Begin] names its recording before it is
	// written, so they are in its [Result] instead. Logs written before
	// recordings were hashed have neither; Verify then reports the
	// recording as not covered.
	RecordingSHA256 string `json:"recording_sha256,omitempty"`
	RecordingBytes  int64  `json:"recording_bytes,omitempty"`
	// Review is the id of the review request that held the command, and
	// Decider who approved or rejected it ("" when it expired, was
	// abandoned, or ran under an earlier approval's grant: then Decider is
	// that approval's).
	Review  string `json:"review,omitempty"`
	Decider string `json:"decider,omitempty"`
}

// Result is the outcome of the command event Of (its Seq): with strict
// recording the command is written, and on disk, before it is forwarded,
// and what became of it follows in its own event.
type Result struct {
	Of         uint64   `json:"of"`
	DurationMS float64  `json:"duration_ms,omitempty"`
	Rows       int64    `json:"rows,omitempty"`
	Tag        string   `json:"tag,omitempty"`
	Error      string   `json:"error,omitempty"`
	Masked     int64    `json:"masked,omitempty"`
	MaskRules  []string `json:"mask_rules,omitempty"`
	// RecordingSHA256 and RecordingBytes identify the terminal recording
	// the command event names, once it is closed (see
	// [Command.RecordingSHA256]).
	RecordingSHA256 string `json:"recording_sha256,omitempty"`
	RecordingBytes  int64  `json:"recording_bytes,omitempty"`
}

// Outcome is what c says of how the command ended, as the Result of its
// command event of (a [Recorder.Begin]'s Seq): for a handler that recorded
// the command with Begin and collected its outcome in the same Command.
func (c *Command) Outcome(of uint64) Result {
	return Result{Of: of, DurationMS: c.DurationMS, Rows: c.Rows, Tag: c.Tag, Error: c.Error,
		Masked: c.Masked, MaskRules: c.MaskRules,
		RecordingSHA256: c.RecordingSHA256, RecordingBytes: c.RecordingBytes}
}

// End closes the session.
type End struct {
	Reason   string  `json:"reason,omitempty"` // why it ended: client closed, policy, shutdown, error text
	Commands int64   `json:"commands"`
	Denied   int64   `json:"denied"`
	Seconds  float64 `json:"seconds"`
}
