// Package review owns just-in-time review: the approval requests a policy
// rule with action review creates, the humans' decisions on them, the
// grant windows approvals open, and telling people that a command waits.
//
// It knows nothing of protocols. A handler whose command the policy holds
// calls Granted (an open grant window lets the command run at once), else
// SubmitWait (Submit, then Wait on the request it held: one decided and
// deleted to make room before the waiting began still has its outcome);
// the admin API and CLI call List, Get and Decide; the
// gateway calls Abandon once at start-up and Cancel when a session ends
// while its command waits. The handler maps policy.Decision.Review onto
// Request: Approvers, Timeout, Grant, and Webhook as NotifyURL.
//
// # States
//
//	pending ──Decide(approve)──▶ approved
//	        ──Decide(reject)───▶ rejected
//	        ──Expires passes───▶ expired    (reason ReasonExpired; the command is denied)
//	        ──Cancel, Abandon──▶ abandoned  (reason ReasonSessionEnded unless Cancel gives one)
//
// Only pending changes. Decided is when a request became final (Expires
// for expired ones), Decider who approved or rejected it. Wait returns
// every final state with a nil error: the caller reads State.
//
// Who may decide: the decider must have a subject, must not be the
// requester, and must be in at least one of Approvers (exact group names).
// "Not the requester" is defined on subjects alone: equal subjects,
// ignoring case, are the same principal whatever their issuers, since a
// subject in the admin token file and the same subject from an OIDC issuer
// are most likely one person, and the safe mistake is to refuse. The
// requester can neither approve nor reject its own request (its session
// ending abandons it).
//
// # Persistence
//
// Every request and every change is written to one bbolt file (the gateway
// uses <state_dir>/approvals.db, mode 0600) before it takes effect. The
// command is kept whole (up to MaxCommandLen; Submit refuses a longer
// one), stored apart from the request and written once, so the request's
// changes and the scans of Open, List and pruning do not copy or decode
// long commands (see persist.go). A decision that cannot be written is
// not made, while expiry and abandonment take effect in memory even if the
// write fails (the next Open repeats them). Open loads the file: pending requests past Expires become expired,
// the others wait again with timers for their remaining time, and open
// grant windows are restored. Nobody can be waiting after a restart, so the
// gateway then calls Abandon with its live sessions (none), which abandons
// what the old process held. Final requests are kept for Options.Retention
// (30 days) after their decision, longer while their grant window is open,
// and pruned at Open and hourly on Submit.
//
// The file has a byte budget, Options.MaxBytes (default 1 GiB): the keys
// and values of its requests and commands, counted at Open and kept up to
// date. An agent that gets long commands held and abandons them would
// otherwise fill the state folder's disk for the retention. A Submit that
// would pass the budget first deletes final requests whose grant window
// has closed, the earliest decided first (they are in the sessions'
// recordings too), freeing a sixteenth of the budget more than it needs;
// when pending requests and open grants leave too little, it refuses with
// ErrStoreFull: the command is not held, and the handler denies it as it
// does any command review cannot hold. Decisions, expiry and abandonment
// are written whatever the budget. Open meets a lowered budget the same
// way. The file itself takes more than the budget (pages, and free pages
// it reuses but never gives back).
//
// List with Filter.CommandPrefix returns each command's first bytes, with
// CommandBytes and CommandSHA256 naming the whole: an overview of a
// thousand pending requests does not copy a thousand long commands.
//
// Expiry runs on real timers for the request's Timeout; Options.Now is the
// clock of timestamps, of Decide's expiry check and of grant windows.
//
// # Grants
//
// An approved request with Grant > 0 opens a window from its decision to
// Decided+Grant in which Granted(workload, target, rule) returns it: the
// handler runs commands of that workload on that target under that rule
// without holding them, and records the approving request's id. Windows
// persist across restarts. Requests already pending when a window opens
// are not approved by it; each waits for its own decision.
//
// # Notification
//
// Each event (EventRequested on Submit, EventDecided when a request becomes
// final by any path) goes to Options.Notify, if set, and to the webhook of
// the request's NotifyURL; the store starts one Webhook per URL and keeps
// it until Close. A Webhook POSTs JSON: a one-line `text` for chat
// incoming-webhooks ("interlock: <subject> on <workload> wants to run
// <command> on <target> (rule <rule>); approve with: interlock approvals
// approve <id>"; a command longer than TextCommandLen is cut there, with
// its length, and the text says to read it whole with `approvals show`
// first), the request's details with the command's first
// CommandPrefixLen bytes, the whole's length and SHA-256 (command,
// command_bytes, command_sha256; command_truncated and show, the CLI
// command that prints it whole, when it is cut: chat receivers refuse
// bodies of megabytes, with a 4xx that is not retried), and links built
// from APIBase:
// <base>/api/v1/approvals/<id> (GET) and …/approve, …/deny (POST).
// Every value in the text (command, requester, decider, reason) is
// escaped: control and invisible characters as Printable writes them, and
// &, < and > as HTML entities, so chat markup in a command stays text.
// Delivery is asynchronous and in order per URL, from a queue bounded in
// events and in the bytes of the commands' starts they carry; each attempt has a 10s
// timeout and follows no redirect (a 3xx is a failure, not retried: a
// redirect could carry the request to an internal address); network
// failures, 408, 429 and 5xx are retried (5 attempts, waits doubling from
// 0.5s to at most 8s), other answers are not. Logs name only a webhook's scheme and host: a chat webhook's path
// is its secret.
//
// # Metrics
//
//	interlock_approvals_pending{target}       gauge: requests waiting now, by target
//	interlock_approvals_store_bytes           gauge: what the file holds against Options.MaxBytes
//	interlock_approvals_refused_total{reason} too_many_pending, store_full: commands not
//	                                          held (denied) because the store was full
//	interlock_approvals_evicted_total         final requests deleted before their
//	                                          retention to keep within Options.MaxBytes
//	interlock_webhook_deliveries_total        events a receiver accepted (2xx)
//	interlock_webhook_failures_total{reason}  status, network: failed attempts;
//	                                          queue_full, gave_up: lost events
//
// The target label is bounded by the configuration and says whose commands
// wait; the series of Options.Targets exist at 0 from Open, others from
// their first request. Decisions are counted by the handlers
// (interlock_commands_total).
//
// # Errors
//
// Callers branch on sentinel errors with errors.Is:
//   - ErrNotFound: no request has that id (ids are case-insensitive).
//   - ErrNotPending: Decide or Cancel on a final request; the request is
//     returned too.
//   - ErrSelfApproval, ErrNotApprover: Decide refused the decider; the
//     request is returned too, unchanged.
//   - ErrInvalidRequest: Submit without Approvers, with a Timeout ≤ 0, a
//     negative Grant, a NotifyURL that is not http(s) or a Command longer
//     than MaxCommandLen.
//   - ErrTooManyPending: Submit while Options.MaxPending requests wait.
//   - ErrStoreFull: Submit of a command that would take the file past
//     Options.MaxBytes when no final request is left to delete.
//   - ErrClosed: the store (or a Webhook) is closed; Wait returns it when
//     Close interrupts it.
//   - ErrQueueFull: a Webhook dropped an event.
//
// Wait returns an error wrapping ctx.Err() (and the context's cause) when
// its context ends first; the request is still pending then, and the
// caller Cancels it if its session ended. Other errors are I/O, wrapped
// with what was being done ("deciding approval x: writing …").
package review
