package adminauth

import (
	"net/netip"
	"sync"
	"time"
)

// failureLimiter is a token bucket per client address that failed
// authentication attempts drain. Every attempt takes one token up front and
// an attempt that did not fail gives it back, so concurrent guesses cannot
// overshoot the limit.
//
// The map is bounded: when it is full, buckets that have refilled are
// dropped (at most once per refill period), and addresses still not
// tracked share one overflow bucket. An attacker spraying addresses thus
// throttles itself and other untracked addresses together, never memory.
type failureLimiter struct {
	burst   float64
	refill  time.Duration
	maxKeys int
	now     func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	overflow  bucket
	lastSweep time.Time
}

type bucket struct {
	level float64 // attempts left
	at    time.Time
}

func newFailureLimiter(burst int, refill time.Duration, maxKeys int) *failureLimiter {
	return &failureLimiter{
		burst:   float64(burst),
		refill:  refill,
		maxKeys: maxKeys,
		now:     time.Now,
		buckets: map[netip.Addr]*bucket{},
	}
}

// fill brings b up to date; a zero bucket fills to burst.
func (l *failureLimiter) fill(b *bucket, now time.Time) {
	if b.at.IsZero() {
		b.level = l.burst
	} else if d := now.Sub(b.at); d > 0 {
		b.level = min(l.burst, b.level+float64(d)/float64(l.refill))
	}
	b.at = now
}

// take reserves one attempt for key. When none is left it returns how long
// until there is one.
func (l *failureLimiter) take(key netip.Addr) (b *bucket, wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b = l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.maxKeys && now.Sub(l.lastSweep) >= l.refill {
			l.sweep(now)
		}
		if len(l.buckets) >= l.maxKeys {
			b = &l.overflow
		} else {
			b = &bucket{}
			l.buckets[key] = b
		}
	}
	l.fill(b, now)
	if b.level < 1 {
		return nil, time.Duration((1 - b.level) * float64(l.refill)), false
	}
	b.level--
	return b, 0, true
}

// giveBack returns the attempt take reserved: the attempt did not fail.
func (l *failureLimiter) giveBack(b *bucket) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fill(b, l.now())
	b.level = min(l.burst, b.level+1)
}

// sweep drops the buckets that are full again.
func (l *failureLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		l.fill(b, now)
		if b.level >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// clientKey is the bucket key of a request's remote address: the address
// itself, or its /64 for IPv6, since one host usually holds a whole /64.
// An address that does not parse (a unix socket) shares the zero key.
func clientKey(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a := ap.Addr().Unmap().WithZone("")
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}
