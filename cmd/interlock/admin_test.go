package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/identity/oidc"
)

const adminTestToken = "0123456789abcdef0123"

// adminTestGateway is a gateway with an admin tokens file (alice, dba) and,
// when issuerURL is set, the OIDC issuer "corp" (audience "interlock"),
// wired by setUpAdminAuth as the gateway does.
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
		v, err := oidc.New(t.Context(), []oidc.Issuer{{Name: "corp", URL: issuerURL, Audience: "interlock"}}, oidc.Options{})
		if err != nil {
			t.Fatal(err)
		}
		g.verifier = oidcVerifier{v}
	}
	if err := g.setUpAdminAuth(); err != nil {
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
		jwtSegment(t, map[string]any{"iss": iss, "sub": "erin", "aud": "interlock", "exp": time.Now().Add(time.Hour).Unix()}) +
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
