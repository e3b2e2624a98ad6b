package oidctest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	p := strings.Split(tok, ".")
	if len(p) != 3 {
		t.Fatalf("token has %d parts, want a JWS", len(p))
	}
	b, err := base64.RawURLEncoding.DecodeString(p[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func strs(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

// The provider issues client-credentials JWTs with its issuer, the
// audience asked for, the client as subject and the client's groups.
func TestProviderTokens(t *testing.T) {
	// Settings a developer's shell might hold must not reach Hydra.
	t.Setenv("DSN", "postgres://nowhere.invalid/hydra")
	t.Setenv("SERVE_PUBLIC_PORT", "1")
	p := Start(t, Options{AccessTokenTTL: 90 * time.Second})
	if !strings.HasPrefix(p.Issuer(), "http://127.0.0.1:") || !strings.HasSuffix(p.Issuer(), "/") {
		t.Fatalf("issuer %q", p.Issuer())
	}
	p.CreateClient(t, "agent one", "secret:with%chars", []string{"interlock"}, []string{"read", "write"}, "support", "dba")

	tok := p.Token(t, "agent one", "secret:with%chars", "interlock", "read")
	c := claimsOf(t, tok)
	if c["iss"] != p.Issuer() || c["sub"] != "agent one" || !slices.Equal(strs(c["aud"]), []string{"interlock"}) {
		t.Errorf("claims %v", c)
	}
	if got := strs(c["groups"]); !slices.Equal(got, []string{"support", "dba"}) {
		t.Errorf("groups %q, want [support dba]", got)
	}
	if got := strs(c["scp"]); !slices.Equal(got, []string{"read"}) {
		t.Errorf("scp %q, want [read]", got)
	}
	if _, ok := c["ext"]; ok {
		t.Errorf("claims mirrored under ext: %v", c)
	}
	exp, _ := c["exp"].(float64)
	iat, _ := c["iat"].(float64)
	// Hydra fixes exp when the request arrives and iat when it signs.
	if life := exp - iat; life < 80 || life > 90 {
		t.Errorf("token lives %vs, want the 90s TTL", life)
	}

	p.SetGroups("agent one")
	if c := claimsOf(t, p.Token(t, "agent one", "secret:with%chars", "interlock")); c["groups"] != nil {
		t.Errorf("groups %v after SetGroups with none", c["groups"])
	}

	if _, err := p.TokenContext(t.Context(), "agent one", "wrong", "interlock"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong secret: %v", err)
	}
	if _, err := p.TokenContext(t.Context(), "agent one", "secret:with%chars", "billing"); err == nil {
		t.Error("a token for an audience the client may not ask for was issued")
	}
}

// Close stops the Hydra it started and removes its files, and says so
// again when called twice.
func TestClose(t *testing.T) {
	p, err := Launch(Options{})
	redirecttest.UnavailableIf(t, err, ErrUnavailable)
	if err != nil {
		t.Fatal(err)
	}
	pid, dir := p.Pid(), p.dir
	if pid == 0 || syscall.Kill(pid, 0) != nil {
		t.Fatalf("hydra pid %d is not running", pid)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("hydra pid %d still exists after Close (%v)", pid, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists after Close (%v)", dir, err)
	}
}

func TestBinary(t *testing.T) {
	t.Setenv(BinaryEnv, filepath.Join(t.TempDir(), "hydra"))
	if _, err := Binary(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), BinaryEnv) {
		t.Errorf("missing $%s: %v", BinaryEnv, err)
	}
	if _, err := Launch(Options{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Launch without a binary: %v", err)
	}
}
