package policy

import "sync/atomic"

// Live is the policy in force in a running gateway: a reload replaces it
// whole with Store, and every request decided after that is decided by
// the new one, in sessions already open too. It is safe for concurrent
// use.
type Live struct {
	cur atomic.Pointer[Policy]
}

// NewLive returns a Live holding p.
func NewLive(p *Policy) *Live {
	l := &Live{}
	l.cur.Store(p)
	return l
}

// Load returns the policy in force.
func (l *Live) Load() *Policy { return l.cur.Load() }

// Store puts p in force.
func (l *Live) Store(p *Policy) { l.cur.Store(p) }

// Decide decides r with the policy in force.
func (l *Live) Decide(r Request) Decision { return l.Load().Decide(r) }

// Masker returns r's masks in the policy in force.
func (l *Live) Masker(r Request) *Masker { return l.Load().Masker(r) }

// SQLDecisions returns the decider of one session's statements that
// follows reloads: it decides with the policy in force at its last
// [SQLDecisions.Refresh].
func (l *Live) SQLDecisions(base Request) *SQLDecisions {
	d := l.Load().SQLDecisions(base)
	d.live = l
	return d
}
