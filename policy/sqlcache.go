package policy

import "encoding/binary"

// maxSQLDecisions bounds one SQLDecisions; when it is full it starts over.
const maxSQLDecisions = 512

// SQLDecisions decides the statements of one session, remembering each
// decision by the statement's facts. Within a session everything but the
// statement is fixed (target, workload, identity, database and user), and a
// condition is a pure function of its facts, so two statements with the
// same command, kind, commands, tables, functions and has_where get the
// same decision as long as no rule reads sql.text. When one does, every
// statement is evaluated. A session that runs the same statement shape with new literal
// values, as an agent's loop or a benchmark does, then pays the CEL
// evaluation once.
//
// Decisions taken from memory are not observed in
// interlock_policy_decision_seconds, which measures evaluations. An
// SQLDecisions is not safe for concurrent use: a session's statements are
// decided one at a time.
type SQLDecisions struct {
	p    *Policy
	live *Live // nil: p for good
	base Request
	memo map[string]Decision // nil: every statement is evaluated
	key  []byte              // keyOf's buffer
}

// SQLDecisions returns the decider of one session's statements: base is the
// session's request (its SQL is ignored).
func (p *Policy) SQLDecisions(base Request) *SQLDecisions {
	d := &SQLDecisions{base: base}
	d.base.SQL = nil
	d.use(p)
	return d
}

// use makes p the policy that decides, forgetting what another decided.
func (d *SQLDecisions) use(p *Policy) {
	d.p = p
	d.memo = nil
	if !p.readsText {
		d.memo = make(map[string]Decision)
	}
}

// Refresh makes the policy in force decide from now on, when d follows a
// [Live] and a reload replaced it, and returns the policy that decides.
// The caller refreshes at the points where its decisions may change
// (before a client's message, not between the statements of one), so that
// what it decides and masks together comes from one policy.
func (d *SQLDecisions) Refresh() *Policy {
	if d.live != nil {
		if p := d.live.Load(); p != d.p {
			d.use(p)
		}
	}
	return d.p
}

// Decide returns the decision for one statement of the session, as
// [Policy.Decide] would for the base request with sql.
func (d *SQLDecisions) Decide(sql SQL) Decision {
	if d.memo == nil {
		dec, _ := d.decide(sql)
		return dec
	}
	key := d.keyOf(&sql)
	if dec, ok := d.memo[string(key)]; ok {
		return dec
	}
	dec, failed := d.decide(sql)
	if failed {
		// A condition that failed may have run out of time, which the
		// facts do not decide: the next statement of this shape tries again.
		return dec
	}
	if len(d.memo) >= maxSQLDecisions {
		clear(d.memo)
	}
	d.memo[string(key)] = dec
	return dec
}

// decide asks the policy. A function of its own so that only a miss
// copies the facts to the heap (the request points to them).
func (d *SQLDecisions) decide(sql SQL) (Decision, bool) {
	req := d.base
	req.SQL = &sql
	return d.p.observedDecide(&req)
}

// keyOf encodes every fact but the text, unambiguously: counts and
// lengths are varints before what they count. Database and user are part
// of it although they are fixed per session, so that the key never depends
// on that. The key is only valid until the next call.
func (d *SQLDecisions) keyOf(s *SQL) []byte {
	b := appendField(d.key[:0], s.Command)
	b = appendField(b, s.Kind)
	b = appendField(b, s.Database)
	b = appendField(b, s.User)
	b = binary.AppendUvarint(b, uint64(len(s.Commands)))
	for _, c := range s.Commands {
		b = appendField(b, c)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Tables)))
	for _, t := range s.Tables {
		b = appendField(b, t)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Functions)))
	for _, f := range s.Functions {
		b = appendField(b, f)
	}
	if s.HasWhere {
		b = append(b, 1)
	}
	d.key = b
	return b
}

func appendField(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}
