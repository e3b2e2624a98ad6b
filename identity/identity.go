package identity

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"
)

// Sentinel errors; see the package documentation for when each is returned.
var (
	ErrUnknownWorkload = errors.New("unknown workload")
	ErrNoProcess       = errors.New("no such process")
	ErrNoCgroup2       = errors.New("no cgroup v2 hierarchy")
	ErrCgroupNotFound  = errors.New("cgroup not found")
	ErrInvalidSelector = errors.New("invalid workload selector")
)

// Identity is who a workload acts as: either static in the configuration
// (Issuer is "") or proven with an OIDC token from Issuer.
type Identity struct {
	Subject string
	Groups  []string
	Issuer  string // "" for static config identities
}

// Workload is a configured workload: the id the kernel maps its cgroup to,
// its name and its identity.
type Workload struct {
	ID       uint32
	Name     string
	Identity Identity
	// OIDC, when set, names the issuer whose token the workload must
	// present; Identity is then unused: a caller gets the identity of the
	// workload's current Login, or none.
	OIDC string
}

// Caller is everything known about the process on the other end of a
// connection. It rides on every session, decision, recording and metric.
type Caller struct {
	Workload   string // workload name
	WorkloadID uint32
	Identity   Identity
	PID        uint32 // 0 when unknown
	UID        uint32
	Executable string // /proc/PID/exe target, "" when unknown
	CgroupID   uint64
	// NeedsLogin names the OIDC issuer whose token the workload must
	// present before it is served: its Identity is empty. "" when the
	// caller has an identity.
	NeedsLogin string
	// IdentityExpires is when an OIDC identity's token expires; zero for
	// static identities.
	IdentityExpires time.Time
}

// LogAttrs are the caller's structured log keys: workload, subject, pid,
// uid, exe and cgroup_id.
func (c Caller) LogAttrs() []slog.Attr {
	return []slog.Attr{
		slog.String("workload", c.Workload),
		slog.String("subject", c.Identity.Subject),
		slog.Uint64("pid", uint64(c.PID)),
		slog.Uint64("uid", uint64(c.UID)),
		slog.String("exe", c.Executable),
		slog.Uint64("cgroup_id", c.CgroupID),
	}
}

// Registry maps workload ids to workloads. It is safe for concurrent use;
// Replace swaps the whole set at once, so a lookup sees either the old or the
// new set, never a mix.
type Registry struct {
	byID   atomic.Pointer[map[uint32]Workload]
	logins atomic.Pointer[Logins]
}

// UseLogins makes Caller take OIDC workloads' identities from l.
func (r *Registry) UseLogins(l *Logins) { r.logins.Store(l) }

// ByName returns the workload called name.
func (r *Registry) ByName(name string) (Workload, bool) {
	m := r.byID.Load()
	if m == nil {
		return Workload{}, false
	}
	for _, w := range *m {
		if w.Name == name {
			w.Identity.Groups = slices.Clone(w.Identity.Groups)
			return w, true
		}
	}
	return Workload{}, false
}

// NewRegistry returns a registry holding ws. When two workloads share an id
// the later one wins.
func NewRegistry(ws []Workload) *Registry {
	r := &Registry{}
	r.Replace(ws)
	return r
}

// Replace swaps the registry's set for ws.
func (r *Registry) Replace(ws []Workload) {
	m := make(map[uint32]Workload, len(ws))
	for _, w := range ws {
		w.Identity.Groups = slices.Clone(w.Identity.Groups)
		m[w.ID] = w
	}
	r.byID.Store(&m)
}

// Lookup returns the workload with id.
func (r *Registry) Lookup(id uint32) (Workload, bool) {
	m := r.byID.Load()
	if m == nil {
		return Workload{}, false
	}
	w, ok := (*m)[id]
	if ok {
		w.Identity.Groups = slices.Clone(w.Identity.Groups)
	}
	return w, ok
}

// Caller builds the Caller for a connection the kernel attributed to
// workloadID. The executable is best effort: a process that is already gone
// or unreadable leaves it "" without failing the call. An id the registry
// does not hold returns an error wrapping ErrUnknownWorkload.
func (r *Registry) Caller(workloadID uint32, pid, uid uint32, cgroupID uint64) (Caller, error) {
	w, ok := r.Lookup(workloadID)
	if !ok {
		return Caller{}, fmt.Errorf("workload id %d: %w", workloadID, ErrUnknownWorkload)
	}
	c := Caller{
		Workload:   w.Name,
		WorkloadID: w.ID,
		Identity:   w.Identity,
		PID:        pid,
		UID:        uid,
		CgroupID:   cgroupID,
	}
	if w.OIDC != "" {
		c.Identity = Identity{}
		c.NeedsLogin = w.OIDC
		if ls := r.logins.Load(); ls != nil {
			if l, ok := ls.Lookup(w.Name); ok {
				c.Identity, c.IdentityExpires, c.NeedsLogin = l.Identity, l.Expires, ""
			}
		}
	}
	if pid != 0 {
		// Best effort by design: the connection is attributed by the
		// kernel, the executable only decorates it.
		c.Executable, _ = ProcessExecutable(pid)
	}
	return c, nil
}
