package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/policy/review"
	"github.com/interlock-dev/interlock/proxy"
)

// approvalsFile is the approvals store under the state folder.
func approvalsFile(stateDir string) string { return filepath.Join(stateDir, "approvals.db") }

// openApprovals opens the approvals store. Requests left pending by a
// previous gateway process lost their sessions with it: they are marked
// abandoned.
func (g *gateway) openApprovals() error {
	st, err := review.Open(approvalsFile(g.cfg.Gateway.StateDir), review.Options{
		Logger:     g.logger,
		Registerer: g.metrics,
		APIBase:    g.cfg.Gateway.AdminURL(),
		Targets:    targetNames(g.cfg),
		MaxBytes:   int64(g.cfg.Gateway.ReviewStoreMiB) << 20,
	})
	if err != nil {
		return fmt.Errorf("opening the approvals store: %w", err)
	}
	if n := len(st.Abandon(func(string) bool { return false })); n > 0 {
		g.logger.Info("pending reviews of the previous gateway process abandoned", "requests", n)
	}
	g.approvals = st
	return nil
}

func targetNames(cfg *config.Config) []string {
	names := make([]string, 0, len(cfg.Targets))
	for _, t := range cfg.Targets {
		names = append(names, t.Name)
	}
	return names
}

// gatewayReviewer is the handlers' proxy.Reviewer over the approvals store.
type gatewayReviewer struct{ g *gateway }

func (r gatewayReviewer) Hold(ctx context.Context, h proxy.Held, notify func(id, how string)) (proxy.Verdict, error) {
	st := r.g.approvals
	s := h.Session
	d := h.Decision
	if d.Review == nil {
		return proxy.Verdict{}, errors.New("a review decision without review settings")
	}
	if g, ok := st.Granted(s.Caller.Workload, s.Target.Name, d.Rule, d.Review.Definition); ok {
		return proxy.Verdict{Allowed: true, State: "granted", RequestID: g.ID, Decider: g.Decider.Subject}, nil
	}
	// Waiting on the request Submit held, not on its id: notify may block
	// on a client that does not read, and a request decided meanwhile may
	// be deleted to make room before a Wait by id could find it.
	final, err := st.SubmitWait(ctx, review.Request{
		SessionID: s.ID,
		Target:    s.Target.Name,
		Protocol:  s.Target.Protocol,
		Workload:  s.Caller.Workload,
		Requester: s.Caller.Identity,
		Command:   h.Command,
		Kind:      h.Kind,
		Operation: h.Operation,
		Rule:      d.Rule,
		// A grant this approval opens covers the rule as defined now.
		RuleDefinition: d.Review.Definition,
		Approvers:      d.Review.Approvers,
		Timeout:        d.Review.Timeout,
		Grant:          d.Review.Grant,
		NotifyURL:      d.Review.Webhook,
	}, func(req review.Request) { notify(req.ID, approveHint(req)) })
	if err != nil && final.ID == "" {
		return proxy.Verdict{}, fmt.Errorf("holding the command for review: %w", err)
	}
	if err != nil {
		// The session ended (or the gateway is stopping, or the client
		// canceled the command) before a decision.
		reason := "the session ended before a decision"
		if cause := context.Cause(ctx); errors.Is(cause, proxy.ErrCommandCanceled) {
			reason = cause.Error()
		}
		st.Cancel(final.ID, reason)
		return proxy.Verdict{State: "abandoned", RequestID: final.ID, Reason: reason}, err
	}
	v := proxy.Verdict{State: string(final.State), RequestID: final.ID, Decider: final.Decider.Subject, Reason: final.Reason}
	v.Allowed = final.State == review.Approved
	return v, nil
}

var _ proxy.Reviewer = gatewayReviewer{}

// approveHint tells the agent waiting on req how it is approved: a command
// longer than chat messages show is read whole first (see approvals
// approve --read-whole).
func approveHint(req review.Request) string {
	how := "interlock approvals approve " + req.ID
	if review.Shortened(req.Command, review.TextCommandLen) {
		how = fmt.Sprintf("interlock approvals show %s, then interlock approvals approve %[1]s --read-whole", req.ID)
	}
	return fmt.Sprintf("an approver in %v runs: %s", req.Approvers, how)
}
