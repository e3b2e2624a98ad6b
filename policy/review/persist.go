package review

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/interlock-dev/interlock/identity"
)

// The on-disk form of a request, one JSON value per key in the requests
// bucket. It is its own type so the exported Request can change without
// changing the file; recordVersion says which form a value is in.
//
// Since version 2 the command is not in the record: the commands bucket
// holds it, whole, under the same key, written once by Submit, and the
// record says its length. A command may be megabytes, and the record is
// rewritten on every change and decoded by every scan (Open, List,
// pruning), which then never touch a command they do not return. Version
// 1 records, written before, hold the command themselves, cut to 4096
// bytes ending in "…"; they are still read.
const (
	recordVersion       = 2
	recordVersionInline = 1
)

var (
	bucketRequests = []byte("requests")
	bucketCommands = []byte("commands")
)

type record struct {
	V         int         `json:"v"`
	ID        string      `json:"id"`
	Created   time.Time   `json:"created"`
	Expires   time.Time   `json:"expires"`
	SessionID string      `json:"session_id"`
	Target    string      `json:"target"`
	Protocol  string      `json:"protocol"`
	Workload  string      `json:"workload"`
	Requester recordIdent `json:"requester"`
	Command   string      `json:"command,omitempty"` // version 1 only
	// CommandLen is the length of the command in the commands bucket
	// (version 2), CommandSHA256 its hash (records written before it was
	// kept lack it; readCommand computes it).
	CommandLen    int          `json:"command_len"`
	CommandSHA256 string       `json:"command_sha256,omitempty"`
	Kind          string       `json:"kind,omitempty"`
	Operation     string       `json:"operation,omitempty"`
	Rule          string       `json:"rule"`
	RuleDef       string       `json:"rule_definition,omitempty"`
	Approvers     []string     `json:"approvers"`
	TimeoutNS     int64        `json:"timeout_ns"`
	GrantNS       int64        `json:"grant_ns,omitempty"`
	NotifyURL     string       `json:"notify_url,omitempty"`
	State         State        `json:"state"`
	Decider       *recordIdent `json:"decider,omitempty"`
	Reason        string       `json:"reason,omitempty"`
	Decided       *time.Time   `json:"decided,omitempty"`
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
		Requester: toRecordIdent(r.Requester), CommandLen: len(r.Command), CommandSHA256: r.CommandSHA256, Kind: r.Kind, Operation: r.Operation,
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

// readRequest reads one stored request with its whole command.
func readRequest(tx *bolt.Tx, key, b []byte) (Request, error) {
	r, apart, err := decodeRequest(key, b)
	if err != nil {
		return Request{}, err
	}
	return r, readCommand(tx, &r, apart, 0)
}

// readCommand fills r.Command from the commands bucket when the record
// keeps it apart: apart is its length, from decodeRequest; -1 for a
// record that holds its command itself. prefix > 0 reads only the
// command's start (commandPrefix). A record written before the store kept
// hashes gets its command's hash here.
func readCommand(tx *bolt.Tx, r *Request, apart, prefix int) error {
	if apart < 0 {
		if r.CommandSHA256 == "" {
			r.CommandSHA256 = commandHash([]byte(r.Command))
		}
		if prefix > 0 {
			r.Command = commandPrefix(r.Command, prefix)
		}
		return nil
	}
	var v []byte
	if b := tx.Bucket(bucketCommands); b != nil {
		v = b.Get([]byte(r.ID))
	}
	if v == nil && apart == 0 {
		v = []byte{} // an SSH shell request has no command
	}
	if v == nil || len(v) != apart {
		return fmt.Errorf("reading approval %q: its command of %d bytes is missing or damaged", r.ID, apart)
	}
	if r.CommandSHA256 == "" {
		r.CommandSHA256 = commandHash(v) // hashed in place: v is the file's memory
	}
	if prefix > 0 {
		v = commandPrefix(v, prefix)
	}
	r.Command = string(v) // copied: v is the file's memory, valid only in tx
	return nil
}

// putRequest stores r's record and returns by how many bytes the file's
// entries grew (Options.MaxBytes).
func putRequest(b *bolt.Bucket, r Request) (int64, error) {
	v, err := encodeRequest(r)
	if err != nil {
		return 0, err
	}
	return put(b, []byte(r.ID), v, "")
}

// putCommand stores r's command in the commands bucket, returning the
// growth as putRequest does.
func putCommand(tx *bolt.Tx, r Request) (int64, error) {
	b, err := tx.CreateBucketIfNotExists(bucketCommands)
	if err != nil {
		return 0, fmt.Errorf("writing approval %s: %w", r.ID, err)
	}
	// bbolt keeps the value's slice until the transaction commits.
	return put(b, []byte(r.ID), []byte(r.Command), ": command")
}

func put(b *bolt.Bucket, k, v []byte, what string) (int64, error) {
	grown := entrySize(k, v)
	if old := b.Get(k); old != nil {
		grown -= entrySize(k, old)
	}
	if err := b.Put(k, v); err != nil {
		return 0, fmt.Errorf("writing approval %s%s: %w", k, what, err)
	}
	return grown, nil
}

// entrySize is what one key and its value count against the budget. The
// file takes more (pages, free pages it reuses but never returns), in
// proportion.
func entrySize(k, v []byte) int64 { return int64(len(k) + len(v)) }

// deleteRequest deletes request k's record and command and returns the
// bytes freed.
func deleteRequest(tx *bolt.Tx, k []byte) (int64, error) {
	var freed int64
	for _, name := range [][]byte{bucketRequests, bucketCommands} {
		b := tx.Bucket(name)
		if b == nil {
			continue
		}
		if v := b.Get(k); v != nil {
			freed += entrySize(k, v)
		}
		if err := b.Delete(k); err != nil {
			return freed, fmt.Errorf("deleting approval %s: %w", k, err)
		}
	}
	return freed, nil
}

// storedBytes is what the file's requests and commands count against the
// budget, unreadable ones included: they stay in the file too. The
// commands' sizes come from the file's index, not by reading them.
func storedBytes(tx *bolt.Tx) (int64, error) {
	var n int64
	for _, name := range [][]byte{bucketRequests, bucketCommands} {
		b := tx.Bucket(name)
		if b == nil {
			continue
		}
		err := b.ForEach(func(k, v []byte) error {
			n += entrySize(k, v)
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("measuring approvals: %w", err)
		}
	}
	return n, nil
}

// decodeRequest reads one stored value. It refuses what this version did
// not write rather than guess at it. A request whose command is stored
// apart comes without it, and apart is the command's length for
// readCommand; it is -1 for a version 1 record, whose Command is its own.
func decodeRequest(key, b []byte) (_ Request, apart int, _ error) {
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Request{}, -1, fmt.Errorf("decoding approval %q: %w", key, err)
	}
	if rec.V != recordVersion && rec.V != recordVersionInline {
		return Request{}, -1, fmt.Errorf("decoding approval %q: record version %d, want %d", key, rec.V, recordVersion)
	}
	if rec.ID != string(key) {
		return Request{}, -1, fmt.Errorf("decoding approval %q: record names id %q", key, rec.ID)
	}
	switch rec.State {
	case Pending, Approved, Rejected, Expired, Abandoned:
	default:
		return Request{}, -1, fmt.Errorf("decoding approval %q: unknown state %q", key, rec.State)
	}
	apart = -1
	if rec.V != recordVersionInline {
		if rec.CommandLen < 0 {
			return Request{}, -1, fmt.Errorf("decoding approval %q: command length %d", key, rec.CommandLen)
		}
		apart, rec.Command = rec.CommandLen, ""
	}
	r := Request{
		ID: rec.ID, Created: rec.Created, Expires: rec.Expires,
		SessionID: rec.SessionID, Target: rec.Target, Protocol: rec.Protocol, Workload: rec.Workload,
		Requester: rec.Requester.identity(), Command: rec.Command, CommandBytes: max(apart, len(rec.Command)), CommandSHA256: rec.CommandSHA256,
		Kind: rec.Kind, Operation: rec.Operation,
		Rule: rec.Rule, RuleDefinition: rec.RuleDef, Approvers: rec.Approvers, Timeout: time.Duration(rec.TimeoutNS), Grant: time.Duration(rec.GrantNS),
		NotifyURL: rec.NotifyURL, State: rec.State, Reason: rec.Reason,
	}
	if rec.Decider != nil {
		r.Decider = rec.Decider.identity()
	}
	if rec.Decided != nil {
		r.Decided = *rec.Decided
	}
	return r, apart, nil
}
