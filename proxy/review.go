package proxy

import (
	"context"
	"errors"

	"github.com/interlock-dev/interlock/policy"
)

// Held is a command a review rule holds for a human decision.
type Held struct {
	Session  *Session
	Decision policy.Decision // Action review, with the rule's Review settings
	// Command is the command as the client sent it; Kind and Operation its
	// main facts (sql.kind and sql.command, or ssh.request and programs).
	Command, Kind, Operation string
}

// Verdict is how a held command ended.
type Verdict struct {
	// Allowed: approved, or covered by an earlier approval's grant window.
	Allowed bool
	// State is approved, granted, rejected, expired or abandoned; it is the
	// decision label of interlock_commands_total.
	State     string
	RequestID string
	Decider   string // subject of who approved or rejected
	Reason    string
}

// Decision is the verdict as a decision for recordings and metrics: its
// action is the verdict's state, its rule the review rule's.
func (v Verdict) Decision(rule string) policy.Decision {
	d := policy.Decision{Action: policy.Action(v.State), Rule: rule}
	if !v.Allowed {
		d.Message = v.Message()
	}
	return d
}

// Message is what a client is told about a refused held command.
func (v Verdict) Message() string {
	switch v.State {
	case "rejected":
		m := "interlock review " + v.RequestID + ": rejected by " + v.Decider
		if v.Reason != "" {
			m += ": " + v.Reason
		}
		return m
	case "expired":
		return "interlock review " + v.RequestID + ": no decision in time, so the command was not run"
	case "abandoned":
		return "interlock review " + v.RequestID + ": abandoned: " + v.Reason
	}
	return "interlock review " + v.RequestID + ": " + v.State
}

// ErrCommandCanceled is the cause a handler gives a held command's context
// when its client cancels the command (a PostgreSQL CancelRequest): the
// review is abandoned with it as the reason.
var ErrCommandCanceled = errors.New("the client canceled the command")

// Verdict states that let a held command run.
const (
	VerdictApproved = "approved"
	VerdictGranted  = "granted"
)

// Allowed reports a decision that lets the command run: allow, or a held
// command approved (or covered by a grant).
func Allowed(d policy.Decision) bool {
	return d.Action == policy.Allow || d.Action == VerdictApproved || d.Action == VerdictGranted
}

// Reviewer holds commands until a human decides. Hold submits h and waits;
// once the request exists it calls notify with its id and how an approver
// decides it, so the handler can tell the client while it waits. When ctx
// ends first (the session ended) the request is abandoned.
type Reviewer interface {
	Hold(ctx context.Context, h Held, notify func(requestID, how string)) (Verdict, error)
}
