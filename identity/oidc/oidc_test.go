package oidc_test

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/identity/oidc"
	"github.com/interlock-dev/interlock/identity/oidctest"
)

const audience = "interlock"

// newVerifier builds a Verifier for issuers or fails the test.
func newVerifier(t *testing.T, issuers []oidc.Issuer, o oidc.Options) *oidc.Verifier {
	t.Helper()
	v, err := oidc.New(t.Context(), issuers, o)
	if err != nil {
		t.Fatalf("oidc.New: %v", err)
	}
	return v
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// parts splits a compact JWS.
func parts(t *testing.T, tok string) (header, payload map[string]any) {
	t.Helper()
	p := strings.Split(tok, ".")
	if len(p) != 3 {
		t.Fatalf("token has %d parts", len(p))
	}
	return decode(t, p[0]), decode(t, p[1])
}

func decode(t *testing.T, seg string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("decoding a token segment: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decoding a token segment: %v", err)
	}
	return m
}

func segment(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// signRS256 makes a token signed with key: what a forger holding a key of
// its own can make.
func signRS256(t *testing.T, key *rsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	header = with(header, "alg", "RS256")
	input := segment(t, header) + "." + segment(t, claims)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// with is a copy of m with k set to v.
func with(m map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for mk, mv := range m {
		out[mk] = mv
	}
	out[k] = v
	return out
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// freePort is a loopback port nobody listens on, for a provider started
// after its verifier.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// wantErr checks err against a sentinel (nil: no error) and a message
// fragment.
func wantErr(t *testing.T, err, sentinel error, msg string) {
	t.Helper()
	switch {
	case sentinel == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case sentinel == nil:
		return
	case err == nil:
		t.Fatalf("accepted; want an error wrapping %q", sentinel)
	case !errors.Is(err, sentinel):
		t.Fatalf("error %q does not wrap %q", err, sentinel)
	case !strings.Contains(err.Error(), msg):
		t.Fatalf("error %q does not say %q", err, msg)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t, oidctest.Options{})
	p.CreateClient(t, "agent-support", "support-secret-0123", []string{audience, "billing"}, []string{"read", "write"}, "support", "dba")
	p.CreateClient(t, "agent-plain", "plain-secret-0123", []string{audience}, nil)

	corp := oidc.Issuer{Name: "corp", URL: p.Issuer(), Audience: audience}
	// Many of the cases below are signed by keys the issuer does not
	// publish, each a key set fetch: more than the limit allows at once
	// (TestKeySetFetchLimit checks that).
	v := newVerifier(t, []oidc.Issuer{corp}, oidc.UnlimitedKeyFetches(oidc.Options{}))
	good := p.Token(t, "agent-support", "support-secret-0123", audience, "read")
	goodHeader, goodClaims := parts(t, good)
	goodParts := strings.Split(good, ".")

	forger := rsaKey(t)
	publicDER, err := x509.MarshalPKIXPublicKey(&forger.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tampered := goodParts[0] + "." + segment(t, with(goodClaims, "sub", "admin")) + "." + goodParts[2]
	unsigned := segment(t, map[string]any{"alg": "none", "typ": "JWT"}) + "." + goodParts[1] + "."
	hmacInput := segment(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": goodHeader["kid"]}) + "." + goodParts[1]
	mac := hmac.New(sha256.New, publicDER)
	mac.Write([]byte(hmacInput))
	hmacToken := hmacInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	tests := []struct {
		name     string
		issuer   string // "" for VerifyAny
		token    string
		sentinel error
		msg      string
		subject  string
		groups   []string
	}{
		{name: "valid", issuer: "corp", token: good, subject: "agent-support", groups: []string{"support", "dba"}},
		{name: "valid, any issuer", token: good, subject: "agent-support", groups: []string{"support", "dba"}},
		{name: "valid, no groups", issuer: "corp", token: p.Token(t, "agent-plain", "plain-secret-0123", audience), subject: "agent-plain"},
		{name: "surrounding white space", issuer: "corp", token: " " + good + "\n", subject: "agent-support", groups: []string{"support", "dba"}},
		{name: "wrong audience", issuer: "corp", token: p.Token(t, "agent-support", "support-secret-0123", "billing"),
			sentinel: oidc.ErrInvalidToken, msg: `audience ["billing"] not accepted`},
		{name: "no audience", issuer: "corp", token: p.Token(t, "agent-support", "support-secret-0123", ""),
			sentinel: oidc.ErrInvalidToken, msg: "audience [] not accepted"},
		{name: "unsigned (alg none)", issuer: "corp", token: unsigned,
			sentinel: oidc.ErrInvalidToken, msg: `signature algorithm "none" is not accepted`},
		{name: "HMAC keyed with a public key", issuer: "corp", token: hmacToken,
			sentinel: oidc.ErrInvalidToken, msg: `signature algorithm "HS256" is not accepted`},
		{name: "tampered payload", issuer: "corp", token: tampered,
			sentinel: oidc.ErrInvalidToken, msg: "signature not valid"},
		{name: "signature of another token", issuer: "corp", token: goodParts[0] + "." + goodParts[1] + "." + strings.Split(p.Token(t, "agent-plain", "plain-secret-0123", audience), ".")[2],
			sentinel: oidc.ErrInvalidToken, msg: "signature not valid"},
		{name: "unpublished key, issuer's key id", issuer: "corp", token: signRS256(t, forger, goodHeader, goodClaims),
			sentinel: oidc.ErrInvalidToken, msg: "signature not valid"},
		{name: "unpublished key, unknown key id", issuer: "corp", token: signRS256(t, forger, with(goodHeader, "kid", "forged"), goodClaims),
			sentinel: oidc.ErrInvalidToken, msg: `signature not valid: no key published by issuer corp verifies it (key id "forged")`},
		{name: "unpublished key, no key id", issuer: "corp", token: signRS256(t, forger, map[string]any{"typ": "JWT"}, goodClaims),
			sentinel: oidc.ErrInvalidToken, msg: "signature not valid"},
		{name: "unconfigured issuer", token: signRS256(t, forger, goodHeader, with(goodClaims, "iss", "https://elsewhere.example/")),
			sentinel: oidc.ErrInvalidToken, msg: `issuer "https://elsewhere.example/" is not configured`},
		{name: "no issuer", token: signRS256(t, forger, goodHeader, with(goodClaims, "iss", nil)),
			sentinel: oidc.ErrInvalidToken, msg: "token has no issuer"},
		{name: "another issuer's token for corp", issuer: "corp", token: signRS256(t, forger, goodHeader, with(goodClaims, "iss", "https://elsewhere.example/")),
			sentinel: oidc.ErrInvalidToken, msg: `token is from issuer "https://elsewhere.example/", not from corp`},
		{name: "not a JWT", issuer: "corp", token: "password123", sentinel: oidc.ErrInvalidToken, msg: "not a JWT"},
		{name: "JWE", issuer: "corp", token: "a.b.c.d.e", sentinel: oidc.ErrInvalidToken, msg: "encrypted"},
		{name: "too large", issuer: "corp", token: goodParts[0] + "." + strings.Repeat("A", oidc.MaxTokenSize) + "." + goodParts[2],
			sentinel: oidc.ErrInvalidToken, msg: "more than the 16384 accepted"},
		{name: "unknown issuer name", issuer: "nope", token: good, sentinel: oidc.ErrUnknownIssuer, msg: `"nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c oidc.Claims
			var err error
			if tt.issuer == "" {
				c, err = v.VerifyAny(ctxTimeout(t), tt.token)
			} else {
				c, err = v.Verify(ctxTimeout(t), tt.issuer, tt.token)
			}
			wantErr(t, err, tt.sentinel, tt.msg)
			if tt.sentinel != nil {
				return
			}
			if c.Subject != tt.subject || !slices.Equal(c.Groups, tt.groups) {
				t.Errorf("subject %q groups %q, want %q %q", c.Subject, c.Groups, tt.subject, tt.groups)
			}
			if c.IssuerName != "corp" || c.Issuer != p.Issuer() || !slices.Contains(c.Audience, audience) {
				t.Errorf("issuer %q (%q), audience %q; want corp (%q) and %q", c.IssuerName, c.Issuer, c.Audience, p.Issuer(), audience)
			}
			if left := time.Until(c.Expiry); left < 50*time.Minute || left > time.Hour+time.Minute {
				t.Errorf("expiry %s is %s away, want about an hour", c.Expiry, left)
			}
		})
	}

	// The claims the configuration names are the ones read.
	t.Run("claims named by the configuration", func(t *testing.T) {
		mapped := corp
		mapped.SubjectClaim, mapped.GroupsClaim = "client_id", "scp"
		c, err := newVerifier(t, []oidc.Issuer{mapped}, oidc.Options{}).Verify(ctxTimeout(t), "corp", good)
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject != "agent-support" || !slices.Equal(c.Groups, []string{"read"}) {
			t.Errorf("subject %q groups %q, want agent-support [read]", c.Subject, c.Groups)
		}
		mapped.SubjectClaim = "email"
		_, err = newVerifier(t, []oidc.Issuer{mapped}, oidc.Options{}).Verify(ctxTimeout(t), "corp", good)
		wantErr(t, err, oidc.ErrInvalidToken, `token has no subject claim "email"`)
		mapped.SubjectClaim, mapped.GroupsClaim = "sub", "exp"
		_, err = newVerifier(t, []oidc.Issuer{mapped}, oidc.Options{}).Verify(ctxTimeout(t), "corp", good)
		wantErr(t, err, oidc.ErrInvalidToken, `groups claim "exp" is a number`)
	})

	// The issuer is compared exactly: the configured URL without the
	// trailing slash Hydra's issuer has is another issuer.
	t.Run("issuer compared exactly", func(t *testing.T) {
		noSlash := corp
		noSlash.URL = strings.TrimSuffix(p.Issuer(), "/")
		_, err := newVerifier(t, []oidc.Issuer{noSlash}, oidc.Options{}).Verify(ctxTimeout(t), "corp", good)
		wantErr(t, err, oidc.ErrInvalidToken, "is from issuer")
	})

	// Clock skew applies on both sides of the token's validity.
	t.Run("clock skew", func(t *testing.T) {
		var now atomic.Int64
		skewed := corp
		skewed.ClockSkew = 10 * time.Second
		sv := newVerifier(t, []oidc.Issuer{skewed}, oidc.Options{Now: func() time.Time { return time.Unix(0, now.Load()) }})
		exp := time.Unix(int64(goodClaims["exp"].(float64)), 0)
		nbf := time.Unix(int64(goodClaims["nbf"].(float64)), 0)
		for _, tc := range []struct {
			name string
			at   time.Time
			msg  string
		}{
			{name: "just before exp+skew", at: exp.Add(9 * time.Second)},
			{name: "just after exp+skew", at: exp.Add(11 * time.Second), msg: "token expired at " + exp.UTC().Format(time.RFC3339)},
			{name: "just after nbf-skew", at: nbf.Add(-9 * time.Second)},
			{name: "just before nbf-skew", at: nbf.Add(-11 * time.Second), msg: "token is not valid before"},
		} {
			now.Store(tc.at.UnixNano())
			_, err := sv.Verify(ctxTimeout(t), "corp", good)
			if tc.msg == "" {
				wantErr(t, err, nil, "")
			} else {
				wantErr(t, err, oidc.ErrInvalidToken, tc.msg)
			}
		}
	})
}

// A token whose lifetime is over is refused as expired.
func TestExpiredToken(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t, oidctest.Options{AccessTokenTTL: 6 * time.Second}) // room for a slow first discovery
	p.CreateClient(t, "agent", "agent-secret-0123", []string{audience}, nil)
	v := newVerifier(t, []oidc.Issuer{{Name: "corp", URL: p.Issuer(), Audience: audience, ClockSkew: time.Second}}, oidc.Options{})
	tok := p.Token(t, "agent", "agent-secret-0123", audience)
	c, err := v.Verify(ctxTimeout(t), "corp", tok)
	if err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	if left := time.Until(c.Expiry); left > 7*time.Second {
		t.Fatalf("token lives %s, want the 6s TTL", left)
	}
	time.Sleep(time.Until(c.Expiry.Add(time.Second + 500*time.Millisecond)))
	_, err = v.Verify(ctxTimeout(t), "corp", tok)
	wantErr(t, err, oidc.ErrInvalidToken, "token expired at "+c.Expiry.UTC().Format(time.RFC3339))
}

// A token from another issuer is refused unless that issuer is
// configured, and VerifyAny picks the issuer by the token.
func TestSecondIssuer(t *testing.T) {
	t.Parallel()
	p1 := oidctest.Start(t, oidctest.Options{})
	p2 := oidctest.Start(t, oidctest.Options{})
	// The same client on both: only the issuer tells the tokens apart.
	for _, p := range []*oidctest.Provider{p1, p2} {
		p.CreateClient(t, "agent", "agent-secret-0123", []string{audience}, nil, "support")
	}
	tok1 := p1.Token(t, "agent", "agent-secret-0123", audience)
	tok2 := p2.Token(t, "agent", "agent-secret-0123", audience)
	corp := oidc.Issuer{Name: "corp", URL: p1.Issuer(), Audience: audience}
	partner := oidc.Issuer{Name: "partner", URL: p2.Issuer(), Audience: audience}

	only1 := newVerifier(t, []oidc.Issuer{corp}, oidc.Options{})
	_, err := only1.Verify(ctxTimeout(t), "corp", tok2)
	wantErr(t, err, oidc.ErrInvalidToken, "is from issuer "+`"`+p2.Issuer()+`", not from corp`)
	_, err = only1.VerifyAny(ctxTimeout(t), tok2)
	wantErr(t, err, oidc.ErrInvalidToken, `issuer "`+p2.Issuer()+`" is not configured`)

	// The second issuer's token with the first issuer's iss: the signature
	// is the second's and the first does not publish its key.
	_, claims2 := parts(t, tok2)
	forged := strings.Split(tok2, ".")
	forged[1] = segment(t, with(claims2, "iss", p1.Issuer()))
	_, err = only1.Verify(ctxTimeout(t), "corp", strings.Join(forged, "."))
	wantErr(t, err, oidc.ErrInvalidToken, "signature not valid")

	both := newVerifier(t, []oidc.Issuer{corp, partner}, oidc.Options{})
	for _, tc := range []struct {
		tok, name, iss string
	}{{tok1, "corp", p1.Issuer()}, {tok2, "partner", p2.Issuer()}} {
		c, err := both.VerifyAny(ctxTimeout(t), tc.tok)
		if err != nil {
			t.Fatalf("VerifyAny of %s's token: %v", tc.name, err)
		}
		if c.IssuerName != tc.name || c.Issuer != tc.iss || c.Subject != "agent" || !slices.Equal(c.Groups, []string{"support"}) {
			t.Errorf("VerifyAny of %s's token: %+v", tc.name, c)
		}
	}
	_, err = both.Verify(ctxTimeout(t), "corp", tok2)
	wantErr(t, err, oidc.ErrInvalidToken, "not from corp")
}

// Tokens signed with a key the issuer added after the Verifier fetched its
// keys verify without a restart, whatever the key's algorithm.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t, oidctest.Options{})
	p.CreateClient(t, "agent", "agent-secret-0123", []string{audience}, nil)
	v := newVerifier(t, []oidc.Issuer{{Name: "corp", URL: p.Issuer(), Audience: audience}}, oidc.Options{})
	before := p.Token(t, "agent", "agent-secret-0123", audience)
	if _, err := v.Verify(ctxTimeout(t), "corp", before); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	for _, alg := range []string{"RS256", "ES256"} {
		kid := p.RotateKey(t, alg)
		tok := p.Token(t, "agent", "agent-secret-0123", audience)
		if h, _ := parts(t, tok); h["kid"] != kid || h["alg"] != alg {
			t.Fatalf("after rotating to %s: token signed by %v with %v, want the new key %s", alg, h["kid"], h["alg"], kid)
		}
		if _, err := v.Verify(ctxTimeout(t), "corp", tok); err != nil {
			t.Fatalf("token signed by the new %s key: %v", alg, err)
		}
	}
	if _, err := v.Verify(ctxTimeout(t), "corp", before); err != nil {
		t.Errorf("token signed by the old key, still published: %v", err)
	}
}

// An issuer that is down when the Verifier is made is unavailable, not a
// reason to refuse tokens, and works once it is up; keys that cannot be
// fetched make it unavailable again.
func TestIssuerDownAtStart(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	issuer := oidctest.IssuerURL(port)
	v := newVerifier(t, []oidc.Issuer{{Name: "corp", URL: issuer, Audience: audience}}, oidc.Options{})
	forger := rsaKey(t)
	claims := map[string]any{"iss": issuer, "sub": "agent", "aud": audience, "exp": time.Now().Add(time.Hour).Unix()}
	_, err := v.Verify(ctxTimeout(t), "corp", signRS256(t, forger, map[string]any{"kid": "k1"}, claims))
	wantErr(t, err, oidc.ErrIssuerUnavailable, "issuer corp")
	if errors.Is(err, oidc.ErrInvalidToken) {
		t.Errorf("an unavailable issuer's error also says the token is invalid: %v", err)
	}

	p := oidctest.Start(t, oidctest.Options{Port: port})
	p.CreateClient(t, "agent", "agent-secret-0123", []string{audience}, nil, "support")
	tok := p.Token(t, "agent", "agent-secret-0123", audience)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err = v.Verify(ctxTimeout(t), "corp", tok)
		if !errors.Is(err, oidc.ErrIssuerUnavailable) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after the issuer started: %v", err)
	}

	// Discovery done, keys cached: with the issuer gone, a token naming a
	// key not in the cache cannot be checked.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctxTimeout(t), "corp", tok); err != nil {
		t.Errorf("cached key, issuer down: %v", err)
	}
	_, err = v.Verify(ctxTimeout(t), "corp", signRS256(t, forger, map[string]any{"kid": "k2"}, claims))
	wantErr(t, err, oidc.ErrIssuerUnavailable, "fetching its signing keys")
}
