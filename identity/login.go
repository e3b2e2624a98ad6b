package identity

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ErrNoLogin: a workload that must prove its identity with an OIDC token
// has not (or its token expired).
var ErrNoLogin = errors.New("no valid OIDC login for this workload")

// Login is an identity a workload proved with an OIDC token. It lasts until
// the token expires.
type Login struct {
	Workload string
	Identity Identity // Issuer set
	Expires  time.Time
	Bound    time.Time
	// Via says how the token came: "login" (interlock login over the
	// gateway's socket), "postgres password", "ssh password".
	Via string
	PID uint32 // the process that presented it, when known
}

// Logins holds the current Login of each workload that requires one. It is
// safe for concurrent use. A new Login of a workload replaces the old one.
// When a Login expires it is removed and OnExpire, if set, is called (on
// its own goroutine), so that the gateway can end the workload's sessions.
type Logins struct {
	now      func() time.Time
	onExpire func(Login)

	mu     sync.Mutex
	byName map[string]*loginEntry
	closed bool
}

type loginEntry struct {
	login Login
	timer *time.Timer
}

// NewLogins returns an empty set; onExpire may be nil.
func NewLogins(onExpire func(Login)) *Logins {
	return &Logins{now: time.Now, onExpire: onExpire, byName: map[string]*loginEntry{}}
}

// Bind makes l the workload's login until l.Expires, which must be in the
// future.
func (s *Logins) Bind(l Login) error {
	now := s.now()
	if !l.Expires.After(now) {
		return fmt.Errorf("binding %s: the token expired at %s", l.Workload, l.Expires.UTC().Format(time.RFC3339))
	}
	if l.Bound.IsZero() {
		l.Bound = now
	}
	l.Identity.Groups = slices.Clone(l.Identity.Groups)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("binding: the gateway is shutting down")
	}
	if old := s.byName[l.Workload]; old != nil {
		old.timer.Stop()
	}
	e := &loginEntry{login: l}
	e.timer = time.AfterFunc(l.Expires.Sub(now), func() { s.expire(e) })
	s.byName[l.Workload] = e
	return nil
}

func (s *Logins) expire(e *loginEntry) {
	s.mu.Lock()
	cur := s.byName[e.login.Workload]
	if cur != e || s.closed {
		s.mu.Unlock()
		return // replaced by a newer login, or shut down
	}
	delete(s.byName, e.login.Workload)
	s.mu.Unlock()
	if s.onExpire != nil {
		s.onExpire(e.login)
	}
}

// Lookup returns the workload's login, if it has a live one.
func (s *Logins) Lookup(workload string) (Login, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byName[workload]
	if e == nil || !e.login.Expires.After(s.now()) {
		return Login{}, false
	}
	l := e.login
	l.Identity.Groups = slices.Clone(l.Identity.Groups)
	return l, true
}

// List returns the live logins, by workload name.
func (s *Logins) List() []Login {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Login, 0, len(s.byName))
	now := s.now()
	for _, e := range s.byName {
		if e.login.Expires.After(now) {
			out = append(out, e.login)
		}
	}
	slices.SortFunc(out, func(a, b Login) int {
		switch {
		case a.Workload < b.Workload:
			return -1
		case a.Workload > b.Workload:
			return 1
		}
		return 0
	})
	return out
}

// Close stops the expiry timers; no OnExpire runs after it returns.
func (s *Logins) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, e := range s.byName {
		e.timer.Stop()
	}
}

// LoginLimiter slows down failed logins per workload: a workload may fail
// Burst times at once, then once per Refill. Failed tokens cost the
// gateway a signature check and can make it refetch the issuer's keys, so
// a workload that keeps guessing must not get to do it at full speed. It
// is safe for concurrent use; its memory is bounded by the configured
// workloads (callers pass configured names only).
type LoginLimiter struct {
	Burst  int
	Refill time.Duration
	now    func() time.Time

	mu      sync.Mutex
	buckets map[string]*loginBucket
}

type loginBucket struct {
	tokens float64
	at     time.Time
}

// NewLoginLimiter returns a limiter with burst failures, then one per refill.
func NewLoginLimiter(burst int, refill time.Duration) *LoginLimiter {
	return &LoginLimiter{Burst: burst, Refill: refill, now: time.Now, buckets: map[string]*loginBucket{}}
}

// ErrTooManyLogins: the workload failed too many logins lately.
var ErrTooManyLogins = errors.New("too many failed logins")

// Check reports whether the workload may try a login now; when not, the
// error says when it may.
func (l *LoginLimiter) Check(workload string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(workload)
	if b.tokens >= 1 {
		return nil
	}
	wait := time.Duration((1 - b.tokens) * float64(l.Refill))
	return fmt.Errorf("%w for workload %s; try again in %s", ErrTooManyLogins, workload, wait.Round(time.Second))
}

// Failed charges one failed login to the workload.
func (l *LoginLimiter) Failed(workload string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(workload)
	b.tokens = max(b.tokens-1, 0)
}

// refill brings the workload's bucket up to date. l.mu is held.
func (l *LoginLimiter) refill(workload string) *loginBucket {
	now := l.now()
	b := l.buckets[workload]
	if b == nil {
		b = &loginBucket{tokens: float64(l.Burst), at: now}
		l.buckets[workload] = b
	}
	if l.Refill > 0 {
		b.tokens = min(float64(l.Burst), b.tokens+float64(now.Sub(b.at))/float64(l.Refill))
	}
	b.at = now
	return b
}
