package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/interlock-dev/interlock/identity"
)

// Errors an [Attributor] wraps so that a refused connection is counted under
// the right reason.
var (
	// ErrNoOrigin: the kernel has no record of the connection's original
	// destination, so the gateway cannot know where the client meant to go.
	ErrNoOrigin = errors.New("no kernel record for this connection")
	// ErrUnknownTarget: the original destination matches no configured target.
	ErrUnknownTarget = errors.New("destination is not a configured target")
	// ErrUnknownWorkload: the caller belongs to no configured workload.
	ErrUnknownWorkload = errors.New("caller is not a configured workload")
	// ErrEgressDenied: the caller's workload may not reach a destination
	// that is not a target (egress.default: deny, no allow entry). The
	// kernel refuses such connects itself; the gateway sees one only when
	// it had to resolve the caller's cgroup.
	ErrEgressDenied = errors.New("destination is not allowed by the workload's egress")
)

// ErrShuttingDown is the cancel cause of the sessions that [Server.Shutdown]
// cuts.
var ErrShuttingDown = errors.New("gateway shutting down")

// ErrEndedByAdministrator is the cause of a session an administrator
// ended (Server.End through the admin API).
var ErrEndedByAdministrator = errors.New("ended by an administrator")

// Target is a configured destination as the data path needs it.
type Target struct {
	ID       uint32
	Name     string
	Protocol string // selects the Handler: "tcp", "postgres", ...
	Address  string // as configured, for logs
}

// Attribution is what the gateway knows about an accepted connection before
// any byte is read.
type Attribution struct {
	Target Target
	Caller identity.Caller
	// Destination is the address the client dialled (the original
	// destination); the handler dials this.
	Destination netip.AddrPort
}

// Attributor tells who opened an accepted connection and where it was going.
// Transparent mode implements it with the kernel's origins map; explicit mode
// with the listener's fixed target and a lookup of the peer process.
type Attributor interface {
	Attribute(ctx context.Context, conn net.Conn) (Attribution, error)
}

// Handler is a protocol engine. Serve owns the session until it returns; it
// must return once ctx is done, with [context.Cause] of ctx. The server
// closes s.Client after Serve returns.
type Handler interface {
	Serve(ctx context.Context, s *Session) error
}

// Session is one attributed client connection handed to a [Handler].
type Session struct {
	// ID is unique and sorts by start time: 20261129T071500Z-<8 hex>.
	ID          string
	Started     time.Time
	Target      Target
	Caller      identity.Caller
	Destination netip.AddrPort
	Client      net.Conn
	// Logger carries the session id, target, workload and caller.
	Logger *slog.Logger
	// Dial reaches upstream. Its context is bounded by Options.DialTimeout
	// and by the session's context, whatever context the handler passes.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// SessionInfo is a snapshot of a running session for status output.
type SessionInfo struct {
	ID          string
	Target      string
	Protocol    string
	Workload    string
	Subject     string
	PID         uint32
	Executable  string
	Destination netip.AddrPort
	Client      string
	Started     time.Time
}

// LoginFunc verifies an OIDC token a caller that needs a login
// (identity.Caller.NeedsLogin) gave in its protocol's password field, binds
// the identity to the caller's workload as `interlock login` would, and
// returns it with the token's expiry. via says how the token came
// ("postgres password", "ssh password").
type LoginFunc func(ctx context.Context, caller identity.Caller, token, via string) (identity.Identity, time.Time, error)

// ErrIdentityExpired ends the sessions of a workload whose OIDC token
// expired.
var ErrIdentityExpired = errors.New("the workload's OIDC token expired; run interlock login again")

// IdentityExpired reports whether the caller's OIDC identity has expired
// by now: its commands must be refused.
func IdentityExpired(c identity.Caller, now time.Time) bool {
	return !c.IdentityExpires.IsZero() && !now.Before(c.IdentityExpires)
}
