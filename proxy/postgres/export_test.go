package postgres

import "github.com/jackc/pgx/v5/pgproto3"

// RetainedView is what a session's view holds, and what it is charged
// for it (see retainedMemory).
type RetainedView struct {
	Bytes                                       int64
	Stmts, Portals, Denied, DeniedPortals       int
	Doubtful, Cursors, Released, PendingEntries int
	PendingBytes                                int64
}

// SetPendingLimit sets what a session's pending queue may hold before the
// client goroutine waits for upstream (defaultPendingLimit).
func (h *Handler) SetPendingLimit(n int64) { h.pendingLimit = n }

// OnHandled has f called, by a session's client goroutine, after each
// client message the session handled, with what its view holds then.
func (h *Handler) OnHandled(f func(msg pgproto3.FrontendMessage, v RetainedView)) {
	h.handled = func(c *session, msg pgproto3.FrontendMessage) {
		r := &c.relay
		c.mu.Lock()
		released, pending, pendingBytes := len(c.released), len(c.pending), c.pendingBytes
		c.mu.Unlock()
		f(msg, RetainedView{Bytes: r.retained.bytes, Stmts: len(r.stmts), Portals: len(r.portals),
			Denied: len(r.deniedStmts), DeniedPortals: len(r.deniedPortals), Doubtful: len(r.doubtful),
			Cursors: len(r.cursors), Released: released, PendingEntries: pending, PendingBytes: pendingBytes})
	}
}
