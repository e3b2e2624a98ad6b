package postgres

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
)

// DefaultRetainedStatementMemory is Options.RetainedStatementMemory's
// default: a driver's cache of 512 statements (pgx's) fits with 128 KiB
// each.
const DefaultRetainedStatementMemory = 64 << 20

// retainedOverhead is what the view is charged for one statement, denial
// or cursor query besides its text and facts: the prepared struct and its
// parseOutcome (about 120 bytes), the one-element ds slice's decided
// (sqlfacts.Statement, policy.Decision: about 250), and the map entry with
// its name (up to 63 bytes) and the bucket's share (about 100). Rounded
// up, so that many small entries weigh what they hold: the budget bounds
// their number too (131,072 in the default 64 MiB), without a count of
// its own, which a driver's long pipeline of the unnamed statement (each
// Parse kept until upstream answers it) would pass.
const retainedOverhead = 512

// retainedMemory is what a session's view of its prepared statements
// (relayState.stmts with what each name may hold besides, prepared.prev),
// of its denied statement names (deniedStmts), of its cursors and of its
// protocol portals (portals, deniedPortals, doubtful) holds: statement
// texts, up to maxStatement each, stay until upstream answers the Close,
// DEALLOCATE or DISCARD ALL that removes them, and a portal until it is
// closed or its transaction ends (see dropEnded), keeping the statement
// it was bound from. Every agent of the host goes through the one gateway
// process, so each session gets a budget; a Parse, PREPARE, DECLARE or
// Bind that would go over it is refused (53200), and the session goes on.
// It is the client goroutine's, as the view is; what the view holds goes
// with the session when it ends.
type retainedMemory struct {
	limit int64
	bytes int64
}

func (m *retainedMemory) fits(size int64) bool { return m.bytes+size <= m.limit }

func (m *retainedMemory) add(size int64) { m.bytes += size }

func (m *retainedMemory) sub(size int64) { m.bytes -= size }

// retainedSize is what keeping a statement costs: text, which may be the
// whole message it came in (a Parse's statement is cut out of it), its
// facts and retainedOverhead.
func retainedSize(text string, st sqlfacts.Statement) int64 {
	n := int64(len(text)) + retainedOverhead
	for _, list := range [][]string{st.Commands, st.Tables, st.Functions} {
		n += 16 * int64(cap(list))
		for _, s := range list {
			n += int64(len(s))
		}
	}
	return n
}

// A statement's charge stays while anything in the view still points to
// it: its name (stmts), a newer statement of the name (prev), or a portal
// bound from it (portal.held), which PostgreSQL keeps after the statement
// is closed and the gateway with it (to decide it again after a reload).
// Counting those references (prepared.refs) charges each statement once,
// however many portals share it, and exactly as long as it stays in
// memory: charging a portal for its statement only once the statement
// left the view would need each statement to find its portals then, and
// would miss what a portal keeps through prev. The references form no
// cycle (prev points to an older statement), so the count is exact.

// hold charges the view for ps, which enters it under its name: the one
// reference it starts with (the caller moves the name's reference to
// what it held before to ps.prev).
func (r *relayState) hold(ps *prepared, text string) {
	var st sqlfacts.Statement
	if len(ps.ds) == 1 {
		st = ps.ds[0].stmt
	}
	ps.charge = retainedSize(text, st)
	ps.refs = 1
	r.retained.add(ps.charge)
}

// keep counts one more reference to ps, if any.
func keep(ps *prepared) {
	if ps != nil {
		ps.refs++
	}
}

// let drops a reference to ps, if any. The last one gives back what ps
// was charged, and with it ps's reference to what its name held before
// (prev). prev is written by the client goroutine only, so reading it
// here needs no lock.
func (r *relayState) let(ps *prepared) {
	for ; ps != nil; ps = ps.prev {
		if ps.refs--; ps.refs > 0 {
			return
		}
		if ps.charge != 0 {
			r.retained.sub(ps.charge)
			ps.charge = 0
		}
	}
}

// portalOverhead is what the view is charged for a portal (in portals,
// deniedPortals or doubtful) besides its result formats and, for a denied
// one, the denial's text: the portal struct (about 130 bytes), the Bind's
// pending entry it points into for upstream's answer (portal.bind, about
// 300), the map entry with its name (up to 63) and the bucket's share
// (about 100), a resultDesc once described. Rounded up.
const portalOverhead = 1024

// portalCharge is what keeping a portal bound with formats costs, besides
// its statement's charge (see let).
func portalCharge(formats []int16) int64 {
	return portalOverhead + 2*int64(cap(formats))
}

// rebind makes pt what a Bind made of it (bound), charging the view for
// it and its statement's reference, and giving back what pt held (a
// portal the name held, rebound). The new reference is counted before
// the old one is let go: both may be the same statement.
func (r *relayState) rebind(pt *portal, bound portal) {
	old, charge := pt.held, pt.charge
	*pt = bound
	pt.charge = portalCharge(bound.formats)
	r.retained.add(pt.charge)
	keep(pt.held)
	if charge != 0 {
		r.retained.sub(charge)
		r.let(old)
	}
}

// newPortal is a portal struct to bind: the last one dropped, if any, as
// a driver that binds the unnamed portal for every statement gets it
// dropped at every transaction's end (see dropEnded).
func (r *relayState) newPortal() *portal {
	if pt := r.spare; pt != nil {
		r.spare = nil
		return pt
	}
	return &portal{}
}

// dropPortal forgets the portal name holds in the view, if any.
func (r *relayState) dropPortal(name string) {
	pt := r.portals[name]
	if pt == nil {
		return
	}
	delete(r.portals, name)
	if pt.charge != 0 {
		r.retained.sub(pt.charge)
		r.let(pt.held)
	}
	*pt = portal{}
	r.spare = pt
}

// denyPortal remembers that a Bind of the portal name was denied (dn), so
// that its Describe and Execute are refused alike, charged for the text
// the denial keeps (shared, maybe, with deniedStmts: counted again, as
// the portal may outlast the statement's name). Without room it keeps
// the view as it was: the Bind never reaches upstream, whose name still
// holds what the view says it holds (a portal bound earlier in the
// transaction, or none), so an Execute of it runs what the view decides.
func (c *session) denyPortal(name string, dn *denial) {
	r := &c.relay
	charge := portalOverhead + int64(len(dn.cmd.Text))
	size := charge
	// The name holds one or the other (see bind), which this replaces.
	if old, ok := r.deniedPortals[name]; ok {
		size -= old.charge
	} else if pt := r.portals[name]; pt != nil {
		size -= pt.charge
	}
	if size > 0 && !c.roomToRetain(size) {
		return
	}
	r.dropPortal(name)
	r.forgetDeniedPortal(name)
	dp := deniedPortal{dn: dn, batch: r.batch, charge: charge}
	r.retained.add(dp.charge)
	r.deniedPortals[name] = dp
}

func (r *relayState) forgetDeniedPortal(name string) {
	if dp, ok := r.deniedPortals[name]; ok {
		r.retained.sub(dp.charge)
		delete(r.deniedPortals, name)
	}
}

func (r *relayState) forgetDoubt(name string) {
	if d, ok := r.doubtful[name]; ok {
		r.retained.sub(d.charge)
		delete(r.doubtful, name)
	}
}

// keepDenied remembers a denied statement name, charged for the text the
// denial keeps to record the next attempt.
func (r *relayState) keepDenied(name string, dn *denial) {
	r.forgetDenied(name)
	dn.charge = retainedSize(dn.cmd.Text, sqlfacts.Statement{})
	r.retained.add(dn.charge)
	r.deniedStmts[name] = dn
}

func (r *relayState) forgetDenied(name string) {
	if dn := r.deniedStmts[name]; dn != nil {
		r.retained.sub(dn.charge)
		delete(r.deniedStmts, name)
	}
}

// forgetStatements empties the view of prepared and denied statements.
func (r *relayState) forgetStatements() {
	for _, ps := range r.stmts {
		r.let(ps)
	}
	clear(r.stmts)
	for name := range r.deniedStmts {
		r.forgetDenied(name)
	}
}

// keepCursor remembers a cursor, replacing what the name held.
func (r *relayState) keepCursor(name string, cu *cursor) {
	r.forgetCursor(name)
	for _, st := range cu.stmts {
		cu.charge += retainedSize(st.Text, st)
	}
	r.retained.add(cu.charge)
	r.cursors[name] = cu
}

func (r *relayState) forgetCursor(name string) {
	if cu := r.cursors[name]; cu != nil {
		r.retained.sub(cu.charge)
		delete(r.cursors, name)
	}
}

func (r *relayState) forgetCursors() {
	for name := range r.cursors {
		r.forgetCursor(name)
	}
}

// retainable is what keeping the statements of stmts that the view keeps
// (PREPARE, DECLARE; see track) costs; 0 for none. Their texts are copied
// out of the message they came in (see track), so each costs its own.
func retainable(stmts []sqlfacts.Statement) int64 {
	var size int64
	for _, st := range stmts {
		if st.Command == "PREPARE" || st.Command == "DECLARE" {
			size += retainedSize(st.Text, st)
		}
	}
	return size
}

// roomToRetain reports whether the view has room for size more bytes. Before it says no, it drops what upstream
// released meanwhile (dropReleased), settles every name whose Parse or
// PREPARE upstream answered (see lookup: a refused candidate leaves the
// view, a taken one drops what the name held before), and then forgets
// the cursors as their overflow does (maxCursors): safe, as after a
// reload the relay refuses a cursor it no longer knows.
func (c *session) roomToRetain(size int64) bool {
	r := &c.relay
	if r.retained.fits(size) {
		return true
	}
	c.dropReleased()
	for name, ps := range r.stmts {
		if ps.parse != nil {
			c.lookup(name) // replaces or deletes this name's entry only
		}
	}
	if !r.retained.fits(size) && len(r.cursors) > 0 {
		r.forgetCursors()
		r.cursorsForgotten = r.pol
	}
	return r.retained.fits(size)
}

// noRoomToRetain is the refusal of a statement the view has no room for.
func (c *session) noRoomToRetain(size int64) policy.Decision {
	m := &c.relay.retained
	msg := fmt.Sprintf("interlock keeps at most %s of prepared statements, cursors and portals per session, and this session's take %s; this needs %s more",
		mebibytes(m.limit), mebibytes(m.bytes), mebibytes(size))
	return policy.Decision{Action: policy.Deny, Rule: GuardRule,
		Message: msg + ": close or DEALLOCATE the prepared statements (and CLOSE the cursors and portals) the session no longer needs; a portal also goes, with the statement it keeps, when its transaction ends"}
}

// mebibytes writes n bytes in MiB, or in bytes below one.
func mebibytes(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d bytes", n)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/(1<<20)), ".0") + " MiB"
}

// noRoomResponse is the ErrorResponse of a refusal by noRoomToRetain.
func noRoomResponse(d policy.Decision) *pgproto3.ErrorResponse {
	return denialResponse(d, codeOutOfMemory, 0)
}
