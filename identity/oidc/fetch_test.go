package oidc

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeIssuer serves a discovery document and a key set whose answer the
// test chooses. It is a unit test of how fetch failures are classified; the
// real issuer is in oidc_test.go.
type fakeIssuer struct {
	srv       *httptest.Server
	discovery atomic.Int32 // discovery requests seen
	keyFetch  atomic.Int32 // key set requests seen
	status    atomic.Int32 // discovery status; 0 is 200
	jwks      atomic.Value // func(http.ResponseWriter)
}

func newFakeIssuer(t *testing.T) *fakeIssuer {
	f := &fakeIssuer{}
	f.jwks.Store(func(w http.ResponseWriter) { w.Write([]byte(`{"keys":[]}`)) })
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			f.discovery.Add(1)
			if s := f.status.Load(); s != 0 {
				w.WriteHeader(int(s))
				return
			}
			json.NewEncoder(w).Encode(map[string]string{"issuer": f.issuer(), "jwks_uri": f.srv.URL + "/jwks"})
		case "/jwks":
			f.keyFetch.Add(1)
			f.jwks.Load().(func(http.ResponseWriter))(w)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIssuer) issuer() string { return f.srv.URL + "/" }

// token is a token for f signed by a key f does not publish.
func (f *fakeIssuer) token(t *testing.T, kid string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	claims := `{"iss":` + strconv.Quote(f.issuer()) + `,"sub":"a","aud":"interlock","exp":` + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`
	return sign(t, key, kid, claims)
}

// sign makes an RS256 token of the claims, given as JSON text so that the
// test controls names and order exactly.
func sign(t *testing.T, key *rsa.PrivateKey, kid, claims string) string {
	t.Helper()
	input := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":`+strconv.Quote(kid)+`}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(claims))
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// A key set that cannot be fetched makes the issuer unavailable; one that
// is fetched and has no matching key makes the token invalid.
func TestKeySetFailures(t *testing.T) {
	tests := []struct {
		name     string
		jwks     func(http.ResponseWriter)
		sentinel error
		msg      string
	}{
		{name: "server error", jwks: func(w http.ResponseWriter) { http.Error(w, "db down", http.StatusInternalServerError) },
			sentinel: ErrIssuerUnavailable, msg: "500 Internal Server Error: db down"},
		{name: "not JSON", jwks: func(w http.ResponseWriter) { w.Write([]byte("<html>maintenance</html>")) },
			sentinel: ErrIssuerUnavailable, msg: "response is not JSON"},
		{name: "too large", jwks: func(w http.ResponseWriter) { w.Write([]byte(`"` + strings.Repeat("k", maxResponseSize) + `"`)) },
			sentinel: ErrIssuerUnavailable, msg: "larger than"},
		{name: "no such key", jwks: func(w http.ResponseWriter) { w.Write([]byte(`{"keys":[]}`)) },
			sentinel: ErrInvalidToken, msg: "signature not valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeIssuer(t)
			f.jwks.Store(tt.jwks)
			v, err := New(t.Context(), []Issuer{{Name: "fake", URL: f.issuer(), Audience: "interlock"}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(t.Context(), "fake", f.token(t, "k1"))
			if !errors.Is(err, tt.sentinel) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v; want one wrapping %q saying %q", err, tt.sentinel, tt.msg)
			}
			other := ErrInvalidToken
			if tt.sentinel == ErrInvalidToken {
				other = ErrIssuerUnavailable
			}
			if errors.Is(err, other) {
				t.Fatalf("error %v wraps both sentinels", err)
			}
		})
	}
}

// Tokens signed by keys the issuer does not publish cannot make the
// gateway fetch the key set more than the limit allows: past the burst they
// fail as the issuer being unavailable, without a request, and the budget
// comes back with time.
func TestKeySetFetchLimit(t *testing.T) {
	f := newFakeIssuer(t)
	const interval = time.Second
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	v, err := New(t.Context(), []Issuer{{Name: "fake", URL: f.issuer(), Audience: "interlock"}}, Options{Logger: log, keyFetchInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	// One made-up key, a new key id per token: each needs a fetch.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	claims := `{"iss":` + strconv.Quote(f.issuer()) + `,"sub":"a","aud":"interlock","exp":` + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`
	forged := func(i int) string { return sign(t, key, "forged-"+strconv.Itoa(i), claims) }
	verify := func(i int) (limited bool) {
		t.Helper()
		_, err := v.Verify(t.Context(), "fake", forged(i))
		switch {
		case errors.Is(err, ErrInvalidToken):
			return false
		case errors.Is(err, ErrIssuerUnavailable) && strings.Contains(err.Error(), "next fetch in"):
			return true
		}
		t.Fatalf("forged token %d: %v; want ErrInvalidToken or a limited fetch", i, err)
		return false
	}

	// go-oidc lets a call that comes right after a fetch share it, so
	// the calls are spaced to make each one fetch: the limit, not the
	// sharing, must be what stops them.
	start := time.Now()
	i := 0
	for ; !verify(i); i++ {
		if i > 4*keyFetchBurst {
			t.Fatalf("%d forged tokens, %d key set fetches, none limited", i+1, f.keyFetch.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A slow machine may see refills in the meantime, a fetch each.
	extra := int(time.Since(start) / interval)
	if n := int(f.keyFetch.Load()); n > keyFetchBurst+extra {
		t.Fatalf("%d key set fetches before the first refusal; want at most %d", n, keyFetchBurst+extra)
	}
	fetched := f.keyFetch.Load()
	for j := range 10 {
		if !verify(i + 1 + j) {
			break // a refill: allowed
		}
	}
	if n := f.keyFetch.Load(); n > fetched+int32(extra)+1 {
		t.Fatalf("refused tokens still fetched: %d fetches, %d before", n, fetched)
	}
	mu.Lock()
	warnings := strings.Count(logs.String(), "key set fetches limited")
	mu.Unlock()
	if warnings == 0 || warnings > 2+extra {
		t.Errorf("%d warnings logged; want one per run of refusals:\n%s", warnings, logs.String())
	}

	time.Sleep(interval + interval/2)
	before := f.keyFetch.Load()
	if verify(1000) {
		t.Fatal("after the interval: still limited")
	}
	if n := f.keyFetch.Load(); n != before+1 {
		t.Fatalf("after the interval: %d fetches, want %d", n, before+1)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A failed discovery is not retried before its backoff, however many
// tokens arrive, and is retried after it.
func TestDiscoveryBackoff(t *testing.T) {
	f := newFakeIssuer(t)
	f.status.Store(http.StatusServiceUnavailable)
	v, err := New(t.Context(), []Issuer{{Name: "fake", URL: f.issuer(), Audience: "interlock"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok := f.token(t, "k1")
	for range 20 {
		_, err := v.Verify(t.Context(), "fake", tok)
		if !errors.Is(err, ErrIssuerUnavailable) || !strings.Contains(err.Error(), "503") {
			t.Fatalf("error %v; want ErrIssuerUnavailable with the status", err)
		}
	}
	if n := f.discovery.Load(); n != 1 {
		t.Fatalf("%d discovery requests within the first backoff, want 1", n)
	}
	f.status.Store(0)
	time.Sleep(minBackoff + 100*time.Millisecond)
	// Discovered now: the token fails on its signature, not on the issuer.
	if _, err := v.Verify(t.Context(), "fake", tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("after the backoff: %v; want the token refused on its merits", err)
	}
	if n := f.discovery.Load(); n != 2 {
		t.Fatalf("%d discovery requests, want 2", n)
	}
}

// publish makes f serve key as its only signing key, with id kid.
func (f *fakeIssuer) publish(key *rsa.PublicKey, kid string) {
	jwk := map[string]string{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}
	f.jwks.Store(func(w http.ResponseWriter) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwk}})
	})
}

// Claim names are case-sensitive: a genuinely signed token whose "aud" or
// "sub" is spelt otherwise has none. (encoding/json would match struct
// fields ignoring case.)
func TestClaimNamesCaseSensitive(t *testing.T) {
	f := newFakeIssuer(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f.publish(&key.PublicKey, "k1")
	v, err := New(t.Context(), []Issuer{{Name: "fake", URL: f.issuer(), Audience: "interlock"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	iss := strconv.Quote(f.issuer())
	exp := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	tests := []struct {
		name, claims, error string
	}{
		{name: "exact names", claims: `{"iss":` + iss + `,"sub":"a","aud":"interlock","exp":` + exp + `}`},
		{name: "AUD", claims: `{"iss":` + iss + `,"sub":"a","AUD":"interlock","exp":` + exp + `}`, error: "audience [] not accepted"},
		{name: "Sub", claims: `{"iss":` + iss + `,"Sub":"a","aud":"interlock","exp":` + exp + `}`, error: `no subject claim "sub"`},
		{name: "EXP", claims: `{"iss":` + iss + `,"sub":"a","aud":"interlock","EXP":` + exp + `}`, error: "no expiry"},
		{name: "ISS", claims: `{"ISS":` + iss + `,"sub":"a","aud":"interlock","exp":` + exp + `}`, error: "is from issuer \"\""},
		{name: "aud a number", claims: `{"iss":` + iss + `,"sub":"a","aud":7,"exp":` + exp + `}`, error: "aud"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(t.Context(), "fake", sign(t, key, "k1", tt.claims))
			if tt.error == "" {
				if err != nil || c.Subject != "a" || len(c.Audience) != 1 || c.Audience[0] != "interlock" {
					t.Fatalf("Verify = %+v, %v", c, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.error) {
				t.Fatalf("error %v; want one wrapping ErrInvalidToken saying %q", err, tt.error)
			}
		})
	}
}
