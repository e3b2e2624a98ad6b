package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/identity/adminauth"
	"github.com/interlock-dev/interlock/policy/review"
)

const adminTestToken = "0123456789abcdef0123"

// adminTestGateway is a gateway with an admin tokens file (alice, dba) and,
// when issuerURL is set, the OIDC issuer "corp" (workloads' audience
// "interlock", administrators' "interlock-admin"), wired by setUpAdminAuth
// as the gateway does.
func adminTestGateway(t *testing.T, issuerURL string) *gateway {
	t.Helper()
	dir := t.TempDir()
	tf := filepath.Join(dir, "admin-tokens.yaml")
	if err := os.WriteFile(tf, []byte("- token: \""+adminTestToken+"\"\n  subject: alice\n  groups: [dba]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gateway{cfg: &config.Config{}, logger: slog.New(slog.DiscardHandler)}
	g.cfg.Gateway.AdminTokensFile = tf
	if issuerURL != "" {
		g.cfg.Identity.OIDC = []config.OIDCIssuer{{Name: "corp", Issuer: issuerURL, Audience: "interlock", AdminAudience: "interlock-admin"}}
	}
	if err := g.setUpAdminAuth(t.Context()); err != nil {
		t.Fatal(err)
	}
	return g
}

func jwtSegment(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// adminGet sends GET path with the bearer token to a server of the
// gateway's admin middleware and returns the status and the body.
func adminGet(t *testing.T, srv *httptest.Server, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// An identity provider that cannot be reached makes OIDC admin tokens
// uncheckable, not invalid: 503, and no failed attempt charged to the
// caller's address (which every loopback caller shares).
func TestAdminOIDCOutageIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	iss := "http://" + ln.Addr().String() + "/"
	ln.Close() // nobody listens: the issuer is down
	g := adminTestGateway(t, iss)
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	srv := httptest.NewServer(g.adminAuth.Require(ok))
	defer srv.Close()

	jwt := jwtSegment(t, map[string]any{"alg": "RS256", "kid": "k1"}) + "." +
		jwtSegment(t, map[string]any{"iss": iss, "sub": "erin", "aud": "interlock-admin", "exp": time.Now().Add(time.Hour).Unix()}) +
		".c2lnbmF0dXJlLW9mLWVyaW4"
	for i := range 12 { // more than the default burst of failures
		if code, body := adminGet(t, srv, "/api/v1/status", jwt); code != http.StatusServiceUnavailable {
			t.Fatalf("OIDC admin during an outage, attempt %d: %d %s; want 503", i+1, code, body)
		}
	}
	// Nothing was charged: a bad guess is still a plain 401, not 429.
	if code, body := adminGet(t, srv, "/api/v1/status", "not-a-valid-token-xxxxxxxx"); code != http.StatusUnauthorized {
		t.Errorf("a bad token after the outage's refusals: %d %s; want 401", code, body)
	}
	if code, body := adminGet(t, srv, "/api/v1/status", adminTestToken); code != http.StatusOK {
		t.Errorf("the static token after the outage's refusals: %d %s; want 200", code, body)
	}
}

func TestAdminServerTimeouts(t *testing.T) {
	srv := newAdminServer(http.NotFoundHandler())
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Errorf("admin server timeouts: header %v, read %v, idle %v; a slow or idle local connection would be held forever",
			srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout)
	}
}

func TestAdminExposureWarning(t *testing.T) {
	for _, tc := range []struct {
		addr string
		tls  bool
		warn bool
	}{
		{"127.0.0.1:9470", false, false},
		{"[::1]:9470", false, false},
		{"[::ffff:127.0.0.1]:9470", false, false},
		{"0.0.0.0:9470", false, true},
		{"10.1.2.3:9470", false, true},
		{"[::]:9470", false, true},
		{"0.0.0.0:9470", true, false},
	} {
		var logs strings.Builder
		cfg := &config.Config{}
		if tc.tls {
			cfg.Gateway.AdminTLS = &config.AdminTLS{CertFile: "admin.crt", KeyFile: "admin.key"}
		}
		g := &gateway{cfg: cfg, logger: slog.New(slog.NewTextHandler(&logs, nil)), adminAddr: netip.MustParseAddrPort(tc.addr)}
		g.warnIfAdminExposed()
		if got := strings.Contains(logs.String(), "admin listener is not on loopback"); got != tc.warn {
			t.Errorf("admin on %s: warned %v, want %v\n%s", tc.addr, got, tc.warn, logs.String())
		}
	}
}

// A decision is logged with the reason as stored (cut to the store's
// limit), not the request body's, which may be 64 KiB.
func TestDecisionLogsStoredReason(t *testing.T) {
	g := adminTestGateway(t, "")
	var logs bytes.Buffer
	g.logger = slog.New(slog.NewTextHandler(&logs, nil))
	store, err := review.Open(filepath.Join(t.TempDir(), "approvals.db"), review.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	g.approvals = store
	held, err := store.Submit(t.Context(), review.Request{
		SessionID: "s1", Target: "shop", Protocol: "postgres", Workload: "support",
		Requester: identity.Identity{Subject: "agent"}, Command: "UPDATE t SET a = 1", Kind: "write", Operation: "UPDATE",
		Rule: "writes", Approvers: []string{"dba"}, Timeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	g.approvalsAPI(mux)
	srv := httptest.NewServer(g.adminAuth.Require(mux))
	defer srv.Close()

	body, _ := json.Marshal(map[string]string{"reason": strings.Repeat("no ", 20000)})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/approvals/"+held.ID+"/deny", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminTestToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var v approvalView
	err = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || v.State != "rejected" {
		t.Fatalf("deny: %s %+v %v", resp.Status, v, err)
	}
	var line string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "review decided") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no decision logged:\n%.2000s", logs.String())
	}
	if len(line) > len(v.Reason)+1024 || !strings.Contains(line, v.Reason) {
		t.Errorf("the decision's log line is %d bytes for a stored reason of %d: want the stored reason", len(line), len(v.Reason))
	}
}

// The same subject from two issuers is two people: show and approve name
// the issuer next to the requester and the decider.
func TestApprovalShowsIssuers(t *testing.T) {
	v := viewOf(review.Request{ID: "ab2cd3ef4g", State: review.Approved,
		Requester: identity.Identity{Subject: "alice", Issuer: "https://idp-a.example/"},
		Decider:   identity.Identity{Subject: "alice", Issuer: "https://idp-b.example/"}})
	if v.Issuer != "https://idp-a.example/" || v.DeciderIssuer != "https://idp-b.example/" {
		t.Fatalf("view issuers: requester %q, decider %q", v.Issuer, v.DeciderIssuer)
	}
	var b bytes.Buffer
	writeApproval(&b, v)
	for _, want := range []string{"requested by alice (issuer https://idp-a.example/)", "by alice (issuer https://idp-b.example/)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("show prints\n%s\nwithout %q", b.String(), want)
		}
	}
	if got := withIssuer("alice", ""); got != "alice" {
		t.Errorf("a static identity shows as %q, want alice", got)
	}
}

// testIssuer is an OIDC issuer on loopback that signs what a test asks.
type testIssuer struct {
	url string
	key *rsa.PrivateKey
}

func startTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &testIssuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": is.url, "jwks_uri": is.url + "jwks",
			"authorization_endpoint": is.url + "auth", "token_endpoint": is.url + "token",
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]any{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
			"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes())}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	is.url = srv.URL + "/"
	return is
}

// token is a signed token for subject, in group dba, for audience.
func (is *testIssuer) token(t *testing.T, subject, audience string) string {
	t.Helper()
	in := jwtSegment(t, map[string]any{"alg": "RS256", "kid": "k1", "typ": "JWT"}) + "." +
		jwtSegment(t, map[string]any{"iss": is.url, "sub": subject, "aud": audience, "groups": []string{"dba"},
			"exp": time.Now().Add(time.Hour).Unix()})
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, is.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// A workload's own login token (the workloads' audience) is no admin
// credential; a token for the issuer's admin_audience is, and an issuer
// without admin_audience makes no administrators at all.
func TestAdminOIDCNeedsAdminAudience(t *testing.T) {
	idp := startTestIssuer(t)
	whoami := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := adminauth.FromContext(r.Context())
		_, _ = w.Write([]byte(c.Subject))
	})

	g := adminTestGateway(t, idp.url)
	srv := httptest.NewServer(g.adminAuth.Require(whoami))
	defer srv.Close()
	if code, body := adminGet(t, srv, "/api/v1/approvals", idp.token(t, "svc-support", "interlock")); code != http.StatusUnauthorized {
		t.Errorf("a workload's login token on the admin API: %d %s; want 401", code, body)
	}
	if code, body := adminGet(t, srv, "/api/v1/approvals", idp.token(t, "erin", "interlock-admin")); code != http.StatusOK || body != "erin" {
		t.Errorf("an admin-audience token: %d %s; want 200 erin", code, body)
	}

	// The same issuer with no admin_audience: no OIDC administrators.
	g.cfg.Identity.OIDC[0].AdminAudience = ""
	if err := g.setUpAdminAuth(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(g.adminAuth.Require(whoami))
	defer srv2.Close()
	for _, aud := range []string{"interlock", "interlock-admin"} {
		if code, body := adminGet(t, srv2, "/api/v1/approvals", idp.token(t, "erin", aud)); code != http.StatusUnauthorized {
			t.Errorf("no admin_audience, a token for %s: %d %s; want 401", aud, code, body)
		}
	}
}

// With gateway.metrics_token_file, /metrics answers its token or an
// administrator's, nothing else; health stays open.
func TestMetricsToken(t *testing.T) {
	const metricsToken = "metrics-token-0123456789"
	g := adminTestGateway(t, "")
	f := filepath.Join(t.TempDir(), "metrics.token")
	if err := os.WriteFile(f, []byte(metricsToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.cfg.Gateway.MetricsTokenFile = f
	if err := g.setUpAdminAuth(t.Context()); err != nil {
		t.Fatal(err)
	}
	g.metrics = prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "interlock_test_total", Help: "a test counter"})
	g.metrics.MustRegister(c)
	c.Inc()
	srv := httptest.NewServer(g.adminHandler())
	defer srv.Close()

	for _, tc := range []struct {
		name, path, token string
		want              int
	}{
		{"no token", "/metrics", "", http.StatusUnauthorized},
		{"wrong token", "/metrics", "metrics-token-0123456788", http.StatusUnauthorized},
		{"metrics token", "/metrics", metricsToken, http.StatusOK},
		{"admin token", "/metrics", adminTestToken, http.StatusOK},
		{"metrics token is no admin", "/api/v1/approvals", metricsToken, http.StatusUnauthorized},
		{"health", "/healthz", "", http.StatusOK},
	} {
		code, body := adminGet(t, srv, tc.path, tc.token)
		if code != tc.want {
			t.Errorf("%s: GET %s: %d %s, want %d", tc.name, tc.path, code, body, tc.want)
		}
		if code == http.StatusOK && tc.path == "/metrics" && !strings.Contains(body, "interlock_test_total 1") {
			t.Errorf("%s: /metrics without the counter:\n%s", tc.name, body)
		}
	}

	for _, bad := range []struct {
		content string
		mode    os.FileMode
	}{
		{"short\n", 0o600},
		{"two tokens-0123456789 here-0123456789\n", 0o600},
		{metricsToken + "\n", 0o604},
	} {
		if err := os.WriteFile(f, []byte(bad.content), bad.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, bad.mode); err != nil {
			t.Fatal(err)
		}
		if _, err := loadMetricsToken(f); err == nil {
			t.Errorf("metrics token file %q mode %#o loaded", bad.content, bad.mode)
		}
	}
}
