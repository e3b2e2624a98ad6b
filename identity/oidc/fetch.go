package oidc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// maxResponseSize bounds a discovery document or key set. go-oidc reads
// whole bodies; an issuer (or whoever answers in its place) must not be
// able to make the gateway buffer more.
const maxResponseSize = 1 << 20

// errFetch marks a failed discovery or key set request. The transport
// wraps it into every error it returns, and go-oidc keeps transport errors
// wrapped (%w) up to its key set, so a key set failure can be told from a
// signature that does not verify without reading messages.
var errFetch = errors.New("fetch failed")

// boundedTransport is the issuers' HTTP transport: it caps and buffers
// response bodies, and turns answers that cannot be a discovery document or
// a key set (an error status, a body that is not JSON) into errors wrapping
// errFetch.
type boundedTransport struct {
	next http.RoundTripper
}

func (t boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errFetch, err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return resp, nil // http.Client follows the redirect
	}
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: GET %s: %s: %s", errFetch, req.URL.Redacted(), resp.Status, bytes.TrimSpace(cut(body, 200)))
	case readErr != nil:
		return nil, fmt.Errorf("%w: GET %s: reading the response: %w", errFetch, req.URL.Redacted(), readErr)
	case len(body) > maxResponseSize:
		return nil, fmt.Errorf("%w: GET %s: response is larger than %d bytes", errFetch, req.URL.Redacted(), maxResponseSize)
	case !json.Valid(body):
		return nil, fmt.Errorf("%w: GET %s: response is not JSON", errFetch, req.URL.Redacted())
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

func cut(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// fetchFailed says whether err, returned by go-oidc's key set, means the
// keys could not be fetched (or the caller stopped waiting for them) rather
// than that no fetched key verifies the signature.
func fetchFailed(err error) bool {
	var ue *url.Error
	return errors.Is(err, errFetch) || errors.As(err, &ue) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// keySet is go-oidc's RemoteKeySet with its outcome recorded in the
// context's sigOutcome: go-oidc flattens key set errors to text (%v), and
// the outcome is what tells ErrIssuerUnavailable from a bad signature.
type keySet struct {
	remote *oidc.RemoteKeySet
}

// sigOutcome is filled by keySet during one verification.
type sigOutcome struct {
	called bool  // go-oidc got as far as checking the signature
	err    error // what the key set said
}

type sigOutcomeKey struct{}

func (k keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.remote.VerifySignature(ctx, jwt)
	if o, ok := ctx.Value(sigOutcomeKey{}).(*sigOutcome); ok {
		o.called, o.err = true, err
	}
	return payload, err
}

// Key set fetch limit. go-oidc fetches an issuer's key set again for every
// token no cached key verifies: a rotated key's, but also a forged one's,
// so any workload could otherwise make the gateway call its identity
// provider once per token it makes up. Each issuer's key set may be
// fetched keyFetchBurst times at once and then once per keyFetchInterval;
// a token that would need a fetch beyond that fails with
// ErrIssuerUnavailable and may be retried. (A redirect counts as a fetch.)
const (
	keyFetchBurst    = 5
	keyFetchInterval = 12 * time.Second
)

// fetchLimiter is a token bucket: full at keyFetchBurst, one fetch more
// every interval.
type fetchLimiter struct {
	interval time.Duration

	mu       sync.Mutex
	tokens   float64
	last     time.Time
	refusing bool // the last request was refused: warn once per episode
}

func newFetchLimiter(interval time.Duration) *fetchLimiter {
	if interval <= 0 {
		interval = keyFetchInterval
	}
	return &fetchLimiter{interval: interval, tokens: keyFetchBurst}
}

// take spends one fetch if one is left. When none is, it returns how long
// until there is, and whether this refusal starts a new episode.
func (l *fetchLimiter) take() (wait time.Duration, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() {
		l.tokens = min(keyFetchBurst, l.tokens+float64(now.Sub(l.last))/float64(l.interval))
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		l.refusing = false
		return 0, false
	}
	first = !l.refusing
	l.refusing = true
	return time.Duration((1 - l.tokens) * float64(l.interval)), first
}

// limitedTransport is the transport of one issuer's key set: it refuses
// requests beyond the limiter's budget.
type limitedTransport struct {
	next   http.RoundTripper
	limit  *fetchLimiter
	issuer string
	log    *slog.Logger
}

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if wait, first := t.limit.take(); wait > 0 {
		wait = wait.Round(time.Millisecond)
		if first {
			t.log.Warn("OIDC key set fetches limited: tokens signed by keys the issuer does not publish are arriving faster than the key set may be fetched",
				"issuer", t.issuer, "url", req.URL.Redacted(), "burst", keyFetchBurst, "interval", t.limit.interval, "next_fetch_in", wait)
		}
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%w: GET %s: not fetched: the key set was fetched %d times recently (tokens signed by unknown keys, forged ones included, cause fetches); next fetch in %s",
			errFetch, req.URL.Redacted(), keyFetchBurst, wait)
	}
	return t.next.RoundTrip(req)
}
