package review

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/interlock-dev/interlock/identity"
)

// Sentinel errors; see the package documentation for when each is returned.
var (
	ErrNotFound       = errors.New("no such approval request")
	ErrNotPending     = errors.New("approval request is not pending")
	ErrSelfApproval   = errors.New("the requester cannot decide its own request")
	ErrNotApprover    = errors.New("not in an approver group of this request")
	ErrInvalidRequest = errors.New("invalid approval request")
	ErrTooManyPending = errors.New("too many approval requests pending")
	ErrStoreFull      = errors.New("approval store full")
	ErrClosed         = errors.New("approval store closed")
	ErrQueueFull      = errors.New("notification queue full")
)

// State is where a request is in its life. Pending is the only state that
// changes; the others are final.
type State string

// States.
const (
	Pending   State = "pending"   // held, waiting for a decision
	Approved  State = "approved"  // an approver let it run
	Rejected  State = "rejected"  // an approver refused it
	Expired   State = "expired"   // nobody decided before Expires: denied
	Abandoned State = "abandoned" // the session ended before a decision
)

// Final reports whether s can no longer change.
func (s State) Final() bool { return s != Pending && s != "" }

// Reasons the store writes itself, for the states nobody decides.
const (
	ReasonExpired      = "no decision before the request expired"
	ReasonSessionEnded = "the session ended before a decision"
)

// MaxCommandLen bounds a held command. The store keeps the whole command:
// an approver must be able to read every byte of what they let run, and a
// cut command would let an agent push the dangerous part of one statement
// past what is shown. The protocol handlers bound commands before this
// (PostgreSQL statements at 16 MiB, SSH commands at 256 KiB); Submit
// refuses a longer one (ErrInvalidRequest), so it is denied, never held
// in part.
const MaxCommandLen = 16 << 20

// CommandPrefixLen bounds the start of a command that List (with
// Filter.CommandPrefix) and webhook messages carry instead of the whole:
// an overview of hundreds of requests, or a chat receiver that refuses
// bodies of a few hundred KiB, must not carry megabytes each. It is well
// over TextCommandLen, so what is cut from a one-line text is cut here
// too.
const CommandPrefixLen = 1024

// Request is one held command and, once final, its outcome.
//
// The caller of Submit fills the description (SessionID through NotifyURL,
// and Timeout); the store fills ID, Created and Expires and owns everything
// after State.
type Request struct {
	ID      string    // 10 characters of lower-case base32, unique in the store
	Created time.Time // when Submit held it (UTC)
	Expires time.Time // Created + Timeout: no decision by then expires it

	SessionID string // the gateway session the command came in; Abandon asks about it
	Target    string // target name
	Protocol  string // the target's protocol: postgres, ssh, ...
	Workload  string // workload name
	Requester identity.Identity
	// Command is the command as the client sent it (a SQL statement, an
	// SSH exec line), whole: at most MaxCommandLen bytes. Displays that
	// shorten it use DisplayCommand, which says the true length. A List
	// with Filter.CommandPrefix returns only its start (CommandCut).
	Command string
	// CommandBytes and CommandSHA256 (lower-case hex) are those of the
	// whole command, whatever Command holds; the store fills them.
	CommandBytes  int
	CommandSHA256 string
	// Kind and Operation are the command's policy facts, free-form: for
	// SQL sql.kind ("write") and sql.command ("UPDATE"); for SSH
	// ssh.request ("exec") and the programs it runs ("rm").
	Kind      string
	Operation string
	Rule      string // the review rule that held it
	// RuleDefinition is the SHA-256 of the rule's configuration when it
	// held the command (policy.ReviewSettings.Definition): its grant
	// window covers only commands held by the same definition.
	RuleDefinition string
	Approvers      []string // groups whose members may decide
	// Timeout is how long the command is held (the rule's review.timeout);
	// required.
	Timeout time.Duration
	// Grant, when positive, makes an approval also cover the same
	// workload's commands on the same target under the same rule for this
	// long after the decision (see Store.Granted).
	Grant time.Duration
	// NotifyURL is the rule's review.notify.webhook: an http(s) URL that
	// receives the request and its outcome; "" for none.
	NotifyURL string

	State   State
	Decider identity.Identity // who approved or rejected; zero for expired and abandoned
	Reason  string            // the decider's reason, or why the store ended it
	Decided time.Time         // when it became final; zero while pending
}

// CommandCut reports whether Command holds only the start of the command.
func (r Request) CommandCut() bool { return len(r.Command) < r.CommandBytes }

// GrantUntil is the end of the grant window an approved request opened;
// zero when it opened none.
func (r Request) GrantUntil() time.Time {
	if r.State != Approved || r.Grant <= 0 {
		return time.Time{}
	}
	return r.Decided.Add(r.Grant)
}

// clone returns r with its slices copied, so a caller never shares the
// store's memory.
func (r Request) clone() Request {
	r.Approvers = slices.Clone(r.Approvers)
	r.Requester.Groups = slices.Clone(r.Requester.Groups)
	r.Decider.Groups = slices.Clone(r.Decider.Groups)
	return r
}

// Filter selects requests for List.
type Filter struct {
	// State selects one state; "" selects all.
	State State
	// Limit bounds the answer (newest first); 0 means DefaultListLimit,
	// and more than MaxListLimit means MaxListLimit.
	Limit int
	// CommandPrefix, when positive, cuts each request's Command to at
	// most that many bytes (on a character boundary), so listing many
	// requests copies none of their long commands.
	CommandPrefix int
}

// List bounds.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// idAlphabet is lower-case base32 (RFC 4648 letters, no padding): safe in
// URLs, shell words and chat messages, and typed without shift.
const idAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

// idLen characters carry 50 random bits: with the store's retention a
// collision is vanishingly rare, and Submit retries on one anyway.
const idLen = 10

func newID() string {
	var b [idLen]byte
	rand.Read(b[:]) // never fails: crypto/rand.Read panics rather than return an error
	for i := range b {
		// 256 is a multiple of 32, so masking keeps every letter equally likely.
		b[i] = idAlphabet[b[i]&31]
	}
	return string(b[:])
}

// normalizeID lets people type an id in either case.
func normalizeID(id string) string { return strings.ToLower(strings.TrimSpace(id)) }

// isSamePrincipal is the self-approval rule: a decider is the requester
// when their subjects are equal ignoring case, whatever the issuers. A
// static identity "alice" and an OIDC subject "alice" are most likely the
// same person, and wrongly refusing a decision costs an approver from
// another group, while wrongly allowing one defeats review.
func isSamePrincipal(requester, decider identity.Identity) bool {
	return requester.Subject != "" && strings.EqualFold(requester.Subject, decider.Subject)
}

// isApprover reports whether any of the decider's groups is an approver
// group. Group names compare exactly, as the policy's identity.groups do.
func isApprover(approvers []string, decider identity.Identity) bool {
	for _, g := range decider.Groups {
		if g != "" && slices.Contains(approvers, g) {
			return true
		}
	}
	return false
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// commandPrefix is the start of command, at most n bytes, cut on a
// character boundary so it stays valid text (and JSON does not turn a
// split character into U+FFFD). A cut of bytes that are not UTF-8 at all
// backs off at most 3 bytes.
func commandPrefix[T string | []byte](command T, n int) T {
	if len(command) <= n {
		return command
	}
	cut := n
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !isRuneStart(command[cut]); i++ {
		cut--
	}
	if !isRuneStart(command[cut]) {
		cut = n
	}
	return command[:cut]
}

// commandHash is the hex SHA-256 that names a whole command.
func commandHash(command []byte) string {
	h := sha256.Sum256(command)
	return hex.EncodeToString(h[:])
}
