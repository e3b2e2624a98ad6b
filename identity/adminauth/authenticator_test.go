package adminauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// A JWT-shaped token the fake verifier below accepts, and one it refuses.
const (
	goodJWT    = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJlcmluIn0.c2lnbmF0dXJlLW9mLWVyaW4"
	expiredJWT = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.ZXhwaXJlZC1zaWduYXR1cmU"
	outageJWT  = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJkb3duIn0.b3V0YWdlLXNpZ25hdHVyZQ"
	issuer     = "https://idp.example/"
)

// fakeVerifier stands in for the OIDC package: this is a unit test of the
// authenticator's dispatch, not of token verification.
type fakeVerifier struct {
	mu    sync.Mutex
	calls []string
}

func (v *fakeVerifier) VerifyAny(_ context.Context, raw string) (Claims, error) {
	v.mu.Lock()
	v.calls = append(v.calls, raw)
	v.mu.Unlock()
	switch raw {
	case goodJWT:
		return Claims{Issuer: issuer, Subject: "erin", Groups: []string{"dba"}}, nil
	case outageJWT:
		return Claims{}, fmt.Errorf("fetching keys of %s: connection refused: %w", issuer, ErrUnavailable)
	default:
		// A careless verifier that quotes the token.
		return Claims{}, fmt.Errorf("token %s is expired", raw)
	}
}

func (v *fakeVerifier) seen() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.calls)
}

// withClock makes the damping's clock a test's.
func withClock(now func() time.Time) Option {
	return func(a *Authenticator) { a.now = now }
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// adminServer serves an admin-like mux through Protect on loopback. Its
// status endpoint answers with the caller's identity.
func adminServer(t *testing.T, a *Authenticator) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := FromContext(r.Context()); ok {
			t.Error("a public path got an identity")
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		id, ok := FromContext(r.Context())
		if !ok {
			t.Error("a protected handler ran without an identity")
			http.Error(w, "no identity", http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(id)
	})
	srv := httptest.NewServer(a.Protect(mux, "/metrics", "/healthz", "/readyz"))
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status    int
	challenge string
	retry     string
	errMsg    string // the JSON body's "error"
	id        Identity
}

func get(t *testing.T, srv *httptest.Server, path string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate"), retry: resp.Header.Get("Retry-After")}
	switch {
	case resp.StatusCode == http.StatusOK && path == "/api/v1/status":
		if err := json.Unmarshal(body, &a.id); err != nil {
			t.Fatalf("status body %q: %v", body, err)
		}
	case resp.StatusCode != http.StatusOK:
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("refusal has Content-Type %q, want application/json", ct)
		}
		var e struct{ Error string }
		if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
			t.Errorf("refusal body %q is not {\"error\": ...}", body)
		}
		a.errMsg = e.Error
	}
	return a
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

func loadGood(t *testing.T) *Tokens {
	t.Helper()
	toks, err := LoadTokens(writeFile(t, goodFile, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

func TestRequire(t *testing.T) {
	verifier := &fakeVerifier{}
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := New(loadGood(t), verifier, WithLogger(logger), WithFailureLimit(100, time.Minute))
	srv := adminServer(t, a)

	const basicAlice = "Basic YWxpY2U6YWxpY2UtMDEyMzQ1Njc4OWFiY2RlZg=="
	tests := []struct {
		name      string
		path      string
		header    []string
		status    int
		challenge string
		subject   string
		method    string
		issuer    string
		groups    []string
	}{
		{name: "public path without credentials", path: "/healthz", status: 200},
		{name: "public path with a bad token", path: "/healthz", header: bearer("nonsense-nonsense-nonsense"), status: 200},
		{name: "no header", path: "/api/v1/status", status: 401, challenge: `Bearer realm="interlock"`},
		{name: "empty header", path: "/api/v1/status", header: []string{"Authorization", ""}, status: 401, challenge: `Bearer realm="interlock"`},
		{name: "unknown token", path: "/api/v1/status", header: bearer("nonsense-nonsense-nonsense"), status: 401, challenge: `Bearer realm="interlock", error="invalid_token"`},
		{name: "token without scheme", path: "/api/v1/status", header: []string{"Authorization", aliceToken}, status: 401, challenge: `Bearer realm="interlock", error="invalid_token"`},
		{name: "basic auth", path: "/api/v1/status", header: []string{"Authorization", basicAlice}, status: 401},
		{name: "bearer without token", path: "/api/v1/status", header: []string{"Authorization", "Bearer "}, status: 401},
		{name: "two headers", path: "/api/v1/status", header: append(bearer(aliceToken), bearer(aliceToken)...), status: 401},
		{name: "static token", path: "/api/v1/status", header: bearer(aliceToken), status: 200, subject: "alice", method: MethodToken, groups: []string{"dba", "oncall"}},
		{name: "lower-case scheme", path: "/api/v1/status", header: []string{"Authorization", "bearer " + bobToken}, status: 200, subject: "bob", method: MethodToken},
		{name: "unknown path still needs credentials", path: "/api/v1/approvals", status: 401},
		{name: "public path prefix is not public", path: "/healthz/x", status: 401},
		{name: "OIDC token", path: "/api/v1/status", header: bearer(goodJWT), status: 200, subject: "erin", method: MethodOIDC, issuer: issuer, groups: []string{"dba"}},
		{name: "refused OIDC token", path: "/api/v1/status", header: bearer(expiredJWT), status: 401, challenge: `Bearer realm="interlock", error="invalid_token"`},
		{name: "OIDC provider down", path: "/api/v1/status", header: bearer(outageJWT), status: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := get(t, srv, tt.path, tt.header...)
			if got.status != tt.status {
				t.Fatalf("status %d (%q), want %d", got.status, got.errMsg, tt.status)
			}
			if tt.challenge != "" && got.challenge != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got.challenge, tt.challenge)
			}
			if tt.subject != "" {
				id := got.id
				if id.Subject != tt.subject || id.Method != tt.method || id.Issuer != tt.issuer || !slices.Equal(id.Groups, tt.groups) {
					t.Errorf("handler saw %+v", id)
				}
			}
			for _, tok := range []string{aliceToken, goodJWT, expiredJWT, "nonsense"} {
				if strings.Contains(got.errMsg, tok) {
					t.Errorf("error body %q repeats the token", got.errMsg)
				}
			}
		})
	}

	// Only JWT-shaped tokens that are no static token reach the verifier.
	if calls := verifier.seen(); !slices.Equal(calls, []string{goodJWT, expiredJWT, outageJWT}) {
		t.Errorf("the verifier was asked about %d tokens, want exactly the three JWTs", len(calls))
	}
	logMu.Lock()
	defer logMu.Unlock()
	for _, tok := range []string{aliceToken, bobToken, goodJWT, expiredJWT, "c2lnbmF0dXJl", "nonsense-nonsense"} {
		if strings.Contains(logs.String(), tok) {
			t.Errorf("a token is in the log:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "admin authentication failed") {
		t.Errorf("failures are not logged:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestAuthenticateErrors(t *testing.T) {
	tests := []struct {
		name   string
		tokens bool
		oidc   TokenVerifier
		header string
		want   error
	}{
		{"no header", true, nil, "", ErrNoCredentials},
		{"unknown token", true, nil, "Bearer nonsense-nonsense-nonsense", ErrInvalidCredentials},
		{"JWT without OIDC", true, nil, "Bearer " + goodJWT, ErrInvalidCredentials},
		{"no tokens file", false, &fakeVerifier{}, "Bearer " + aliceToken, ErrInvalidCredentials},
		{"OIDC only", false, &fakeVerifier{}, "Bearer " + goodJWT, nil},
		{"verifier returns no subject", false, VerifierFunc(func(context.Context, string) (Claims, error) {
			return Claims{Issuer: issuer}, nil
		}), "Bearer " + goodJWT, ErrInvalidCredentials},
		{"verifier outage", false, &fakeVerifier{}, "Bearer " + outageJWT, ErrUnavailable},
		{"nothing configured", false, nil, "Bearer " + aliceToken, ErrInvalidCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var toks *Tokens
			if tt.tokens {
				toks = loadGood(t)
			}
			a := New(toks, tt.oidc)
			r := httptest.NewRequest(http.MethodGet, "/api/v1/status", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			_, err := a.Authenticate(r)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Authenticate = %v, want %v", err, tt.want)
			}
			if err != nil && (strings.Contains(err.Error(), aliceToken) || strings.Contains(err.Error(), goodJWT) || strings.Contains(err.Error(), "nonsense")) {
				t.Errorf("error %q repeats the token", err)
			}
		})
	}
}

func TestRedactToken(t *testing.T) {
	err := redactToken(fmt.Errorf("bad signature %s in %s: %w", "ZXhwaXJlZC1zaWduYXR1cmU", expiredJWT, ErrUnavailable), expiredJWT)
	if strings.Contains(err.Error(), "ZXhwaXJlZC1zaWduYXR1cmU") || !errors.Is(err, ErrUnavailable) {
		t.Errorf("redactToken = %q (ErrUnavailable kept: %v)", err, errors.Is(err, ErrUnavailable))
	}
	plain := errors.New("token is expired")
	if got := redactToken(plain, expiredJWT); got != plain {
		t.Errorf("redactToken changed an error without the token: %v", got)
	}
}

func TestLooksLikeJWT(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{goodJWT, true},
		{"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", true}, // unsigned: the verifier refuses it
		{aliceToken, false},
		{"a.b", false},
		{"a.b.c.d.e", false}, // JWE is not accepted
		{".b.c", false},
		{"a..c", false},
		{"a.b+.c", false},
		{"a.b.c=", false},
	}
	for _, tt := range tests {
		if got := looksLikeJWT(tt.s); got != tt.want {
			t.Errorf("looksLikeJWT(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestFailureDamping(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := New(loadGood(t), &fakeVerifier{}, WithFailureLimit(3, time.Minute), withClock(clock.now))
	srv := adminServer(t, a)

	// Successes and requests without credentials do not count.
	for range 10 {
		if got := get(t, srv, "/api/v1/status", bearer(aliceToken)...); got.status != 200 {
			t.Fatalf("good token: status %d", got.status)
		}
		if got := get(t, srv, "/api/v1/status"); got.status != 401 {
			t.Fatalf("no credentials: status %d", got.status)
		}
	}
	for i := range 3 {
		if got := get(t, srv, "/api/v1/status", bearer(fmt.Sprintf("guess-%d-0123456789abcdef", i))...); got.status != 401 {
			t.Fatalf("guess %d: status %d, want 401", i, got.status)
		}
	}
	// The bucket is empty: guesses and OIDC tokens (which cost a signature
	// check) wait, but a static token that matches is served at once, so
	// a local process that keeps failing cannot keep the admins out.
	for _, hdr := range [][]string{bearer("guess-3-0123456789abcdef"), bearer(goodJWT), {"Authorization", "Basic YWxpY2U6eA=="}} {
		got := get(t, srv, "/api/v1/status", hdr...)
		if got.status != http.StatusTooManyRequests || got.retry != "60" {
			t.Errorf("after 3 failures, %v: status %d, Retry-After %q; want 429 and 60", hdr, got.status, got.retry)
		}
	}
	if got := get(t, srv, "/api/v1/status", bearer(aliceToken)...); got.status != 200 {
		t.Errorf("the right static token after 3 failures: status %d, want 200", got.status)
	}
	if got := get(t, srv, "/api/v1/status"); got.status != 401 {
		t.Errorf("no credentials after 3 failures: status %d, want 401", got.status)
	}
	// Public paths are not throttled.
	if got := get(t, srv, "/healthz"); got.status != 200 {
		t.Errorf("/healthz while throttled: status %d", got.status)
	}

	clock.advance(30 * time.Second)
	if got := get(t, srv, "/api/v1/status", bearer(goodJWT)...); got.status != 429 || got.retry != "30" {
		t.Errorf("half a refill later, OIDC token: status %d, Retry-After %q; want 429 and 30", got.status, got.retry)
	}
	clock.advance(30 * time.Second)
	if got := get(t, srv, "/api/v1/status", bearer(goodJWT)...); got.status != 200 {
		t.Errorf("a refill later, good OIDC token: status %d, want 200", got.status)
	}
	// A valid OIDC token gave its attempt back; an outage does too.
	if got := get(t, srv, "/api/v1/status", bearer(outageJWT)...); got.status != 503 {
		t.Errorf("OIDC outage: status %d, want 503", got.status)
	}
	// One attempt regained, one spent on a failure: throttled again.
	if got := get(t, srv, "/api/v1/status", bearer("guess-4-0123456789abcdef")...); got.status != 401 {
		t.Errorf("regained attempt: status %d, want 401", got.status)
	}
	if got := get(t, srv, "/api/v1/status", bearer(goodJWT)...); got.status != 429 {
		t.Errorf("after spending the regained attempt: status %d, want 429", got.status)
	}
}

// A local process failing without pause keeps no static-token admin out:
// every one of its requests is refused, every admin's is served.
func TestFailingNeighbourDoesNotLockOut(t *testing.T) {
	a := New(loadGood(t), &fakeVerifier{}, WithFailureLimit(3, time.Hour))
	srv := adminServer(t, a)
	for i := range 20 {
		if got := get(t, srv, "/api/v1/status", bearer(fmt.Sprintf("guess-%d-0123456789abcdef", i))...); got.status == 200 {
			t.Fatalf("guess %d served", i)
		}
		if got := get(t, srv, "/api/v1/status", bearer(aliceToken)...); got.status != 200 {
			t.Fatalf("admin after %d failures from the same address: status %d, want 200", i+1, got.status)
		}
	}
}

func TestFailureDampingOff(t *testing.T) {
	a := New(loadGood(t), nil, WithFailureLimit(0, 0))
	srv := adminServer(t, a)
	for i := range 50 {
		if got := get(t, srv, "/api/v1/status", bearer("nonsense-nonsense-nonsense")...); got.status != 401 {
			t.Fatalf("failure %d: status %d, want 401", i, got.status)
		}
	}
}

func TestFailureLimiterIsBounded(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newFailureLimiter(2, time.Minute, 2)
	l.now = func() time.Time { return now }
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}) }

	// Two addresses fill the map, both fail once.
	for i := 1; i <= 2; i++ {
		if _, _, ok := l.take(addr(i)); !ok {
			t.Fatalf("address %d refused at first", i)
		}
	}
	// Addresses beyond share one bucket: two attempts between them.
	if _, _, ok := l.take(addr(3)); !ok {
		t.Fatal("first untracked address refused")
	}
	if _, _, ok := l.take(addr(4)); !ok {
		t.Fatal("second untracked address refused")
	}
	if _, _, ok := l.take(addr(5)); ok {
		t.Fatal("a third untracked address was let through; they share one bucket")
	}
	if len(l.buckets) != 2 {
		t.Fatalf("tracking %d addresses, want at most 2", len(l.buckets))
	}
	// Once the tracked buckets refill, a sweep frees their places.
	now = now.Add(2 * time.Minute)
	if _, _, ok := l.take(addr(6)); !ok {
		t.Fatal("a new address was refused after the others refilled")
	}
	if _, tracked := l.buckets[addr(6)]; !tracked || len(l.buckets) != 1 {
		t.Errorf("after the sweep: tracked %v, %d buckets; want the new address alone", tracked, len(l.buckets))
	}
}

func TestClientKey(t *testing.T) {
	tests := []struct {
		remote string
		want   string
	}{
		{"127.0.0.1:4242", "127.0.0.1"},
		{"[::ffff:127.0.0.1]:4242", "127.0.0.1"},
		{"[2001:db8:1:2:3:4:5:6]:4242", "2001:db8:1:2::"},
		{"[2001:db8:1:2:ffff::1]:1", "2001:db8:1:2::"},
		{"[fe80::1%eth0]:1", "fe80::"},
		{"@", "invalid IP"},
		{"", "invalid IP"},
	}
	for _, tt := range tests {
		if got := clientKey(tt.remote).String(); got != tt.want {
			t.Errorf("clientKey(%q) = %s, want %s", tt.remote, got, tt.want)
		}
	}
}

func TestContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Error("FromContext found an identity in an empty context")
	}
	id := Identity{Method: MethodToken}
	id.Subject, id.Groups = "alice", []string{"dba"}
	ctx := NewContext(context.Background(), id)
	id.Groups[0] = "root"
	got, ok := FromContext(ctx)
	if !ok || got.Subject != "alice" || !got.InGroup("dba") || got.InGroup("root") {
		t.Errorf("FromContext = %+v, %v", got, ok)
	}
}
