package review

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/interlock-dev/interlock/identity"
)

// The on-disk form of a request, one JSON value per key in the requests
// bucket. It is its own type so the exported Request can change without
// changing the file; recordVersion says which form a value is in.
const recordVersion = 1

var bucketRequests = []byte("requests")

type record struct {
	V         int          `json:"v"`
	ID        string       `json:"id"`
	Created   time.Time    `json:"created"`
	Expires   time.Time    `json:"expires"`
	SessionID string       `json:"session_id"`
	Target    string       `json:"target"`
	Protocol  string       `json:"protocol"`
	Workload  string       `json:"workload"`
	Requester recordIdent  `json:"requester"`
	Command   string       `json:"command"`
	Kind      string       `json:"kind,omitempty"`
	Operation string       `json:"operation,omitempty"`
	Rule      string       `json:"rule"`
	RuleDef   string       `json:"rule_definition,omitempty"`
	Approvers []string     `json:"approvers"`
	TimeoutNS int64        `json:"timeout_ns"`
	GrantNS   int64        `json:"grant_ns,omitempty"`
	NotifyURL string       `json:"notify_url,omitempty"`
	State     State        `json:"state"`
	Decider   *recordIdent `json:"decider,omitempty"`
	Reason    string       `json:"reason,omitempty"`
	Decided   *time.Time   `json:"decided,omitempty"`
}

type recordIdent struct {
	Subject string   `json:"subject"`
	Groups  []string `json:"groups,omitempty"`
	Issuer  string   `json:"issuer,omitempty"`
}

func toRecordIdent(id identity.Identity) recordIdent {
	return recordIdent{Subject: id.Subject, Groups: id.Groups, Issuer: id.Issuer}
}

func (r recordIdent) identity() identity.Identity {
	return identity.Identity{Subject: r.Subject, Groups: r.Groups, Issuer: r.Issuer}
}

func encodeRequest(r Request) ([]byte, error) {
	rec := record{
		V: recordVersion, ID: r.ID, Created: r.Created, Expires: r.Expires,
		SessionID: r.SessionID, Target: r.Target, Protocol: r.Protocol, Workload: r.Workload,
		Requester: toRecordIdent(r.Requester), Command: r.Command, Kind: r.Kind, Operation: r.Operation,
		Rule: r.Rule, RuleDef: r.RuleDefinition, Approvers: r.Approvers, TimeoutNS: int64(r.Timeout), GrantNS: int64(r.Grant),
		NotifyURL: r.NotifyURL, State: r.State, Reason: r.Reason,
	}
	if r.Decider.Subject != "" || len(r.Decider.Groups) > 0 || r.Decider.Issuer != "" {
		d := toRecordIdent(r.Decider)
		rec.Decider = &d
	}
	if !r.Decided.IsZero() {
		d := r.Decided
		rec.Decided = &d
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encoding approval %s: %w", r.ID, err)
	}
	return b, nil
}

// decodeRequest reads one stored value. It refuses what this version did
// not write rather than guess at it.
func decodeRequest(key, b []byte) (Request, error) {
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Request{}, fmt.Errorf("decoding approval %q: %w", key, err)
	}
	if rec.V != recordVersion {
		return Request{}, fmt.Errorf("decoding approval %q: record version %d, want %d", key, rec.V, recordVersion)
	}
	if rec.ID != string(key) {
		return Request{}, fmt.Errorf("decoding approval %q: record names id %q", key, rec.ID)
	}
	switch rec.State {
	case Pending, Approved, Rejected, Expired, Abandoned:
	default:
		return Request{}, fmt.Errorf("decoding approval %q: unknown state %q", key, rec.State)
	}
	r := Request{
		ID: rec.ID, Created: rec.Created, Expires: rec.Expires,
		SessionID: rec.SessionID, Target: rec.Target, Protocol: rec.Protocol, Workload: rec.Workload,
		Requester: rec.Requester.identity(), Command: rec.Command, Kind: rec.Kind, Operation: rec.Operation,
		Rule: rec.Rule, RuleDefinition: rec.RuleDef, Approvers: rec.Approvers, Timeout: time.Duration(rec.TimeoutNS), Grant: time.Duration(rec.GrantNS),
		NotifyURL: rec.NotifyURL, State: rec.State, Reason: rec.Reason,
	}
	if rec.Decider != nil {
		r.Decider = rec.Decider.identity()
	}
	if rec.Decided != nil {
		r.Decided = *rec.Decided
	}
	return r, nil
}
