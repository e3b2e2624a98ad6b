package oidctest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// AccessTokenKeySet is the Hydra key set that signs JWT access tokens;
// adding a key to it (RotateKey) makes the new key the signing key.
const AccessTokenKeySet = "hydra.jwt.access-token"

// Options say how to start a provider; the zero value issues tokens that
// live an hour, on a free port.
type Options struct {
	// AccessTokenTTL is how long issued access tokens live; default an
	// hour. Whole milliseconds.
	AccessTokenTTL time.Duration
	// Port is the public port, which the issuer URL names (IssuerURL); 0
	// picks a free one.
	Port int
}

// Provider is a running Hydra.
type Provider struct {
	publicPort, adminPort int
	dir, logFile          string
	hook                  *tokenHook
	http                  *http.Client

	daemon *redirecttest.Daemon // nil until Hydra started

	closeOnce sync.Once
	closeErr  error
}

// Start starts a provider for tb and stops it, removing its files, when tb
// ends.
func Start(tb testing.TB, o Options) *Provider {
	tb.Helper()
	return redirecttest.Launched(tb, "oidctest", ErrUnavailable, func() (*Provider, error) { return Launch(o) })
}

// Issuer is the issuer URL, the "iss" of every token:
// http://127.0.0.1:<port>/.
func (p *Provider) Issuer() string { return IssuerURL(p.publicPort) }

// PublicURL is the public listener's base URL, without a trailing slash.
func (p *Provider) PublicURL() string { return strings.TrimSuffix(p.Issuer(), "/") }

// AdminURL is the admin listener's base URL, without a trailing slash.
func (p *Provider) AdminURL() string {
	return "http://" + net.JoinHostPort(host, strconv.Itoa(p.adminPort))
}

// Pid is the process id of the Hydra this provider started; 0 before it
// started.
func (p *Provider) Pid() int {
	if p.daemon == nil {
		return 0
	}
	return p.daemon.Pid()
}

// LogTail is the end of Hydra's log, for a test failure message.
func (p *Provider) LogTail() string { return redirecttest.LogTail(p.logFile) }

// Close stops the Hydra this provider started and its token hook, and
// removes its files. Calling it again returns the first result.
func (p *Provider) Close() error {
	p.closeOnce.Do(func() {
		p.stop()
		var errs []error
		if p.hook != nil {
			errs = append(errs, p.hook.close())
		}
		if err := os.RemoveAll(p.dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", p.dir, err))
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// CreateClient registers an OAuth 2.0 client that may use the client
// credentials grant, authenticating with HTTP basic auth, for audience and
// scopes; its tokens carry groups in a "groups" claim (none: no claim).
func (p *Provider) CreateClient(tb testing.TB, id, secret string, audience, scopes []string, groups ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.CreateClientContext(ctx, id, secret, audience, scopes, groups...); err != nil {
		tb.Fatalf("oidctest: %v", err)
	}
}

// CreateClientContext is [Provider.CreateClient] for callers without a
// testing.TB.
func (p *Provider) CreateClientContext(ctx context.Context, id, secret string, audience, scopes []string, groups ...string) error {
	body := map[string]any{
		"client_id":                  id,
		"client_secret":              secret,
		"grant_types":                []string{"client_credentials"},
		"audience":                   audience,
		"scope":                      strings.Join(scopes, " "),
		"token_endpoint_auth_method": "client_secret_basic",
	}
	if err := p.adminJSON(ctx, "/admin/clients", body, http.StatusCreated, nil); err != nil {
		return fmt.Errorf("creating client %s: %w", id, err)
	}
	p.hook.setGroups(id, groups)
	return nil
}

// SetGroups replaces the groups clientID's next tokens carry.
func (p *Provider) SetGroups(clientID string, groups ...string) {
	p.hook.setGroups(clientID, groups)
}

// Token gets an access token with the client credentials grant, as an
// agent does: clientID and secret in basic auth, for audience ("" for
// none) and scopes.
func (p *Provider) Token(tb testing.TB, clientID, secret, audience string, scopes ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := p.TokenContext(ctx, clientID, secret, audience, scopes...)
	if err != nil {
		tb.Fatalf("oidctest: %v", err)
	}
	return tok
}

// TokenContext is [Provider.Token] for callers without a testing.TB.
func (p *Provider) TokenContext(ctx context.Context, clientID, secret, audience string, scopes ...string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if audience != "" {
		form.Set("audience", audience)
	}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.PublicURL()+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// RFC 6749 2.3.1: the id and secret are form-encoded inside basic auth.
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	var out struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := p.do(req, http.StatusOK, &out); err != nil {
		return "", fmt.Errorf("getting a token for client %s: %w", clientID, err)
	}
	if out.AccessToken == "" {
		return "", fmt.Errorf("getting a token for client %s: the response has no access_token", clientID)
	}
	return out.AccessToken, nil
}

// RotateKey adds a new key with algorithm alg ("RS256", "ES256", …) to
// the access token key set; Hydra signs the following tokens with it and
// publishes it beside the old ones. It returns the new key's id.
func (p *Provider) RotateKey(tb testing.TB, alg string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kid, err := p.RotateKeyContext(ctx, alg)
	if err != nil {
		tb.Fatalf("oidctest: %v", err)
	}
	return kid
}

// RotateKeyContext is [Provider.RotateKey] for callers without a
// testing.TB.
func (p *Provider) RotateKeyContext(ctx context.Context, alg string) (string, error) {
	var out struct {
		Keys []struct {
			KeyID string `json:"kid"`
		} `json:"keys"`
	}
	body := map[string]string{"alg": alg, "use": "sig"}
	if err := p.adminJSON(ctx, "/admin/keys/"+AccessTokenKeySet, body, http.StatusCreated, &out); err != nil {
		return "", fmt.Errorf("rotating the access token key to %s: %w", alg, err)
	}
	if len(out.Keys) == 0 || out.Keys[0].KeyID == "" {
		return "", fmt.Errorf("rotating the access token key to %s: the response names no key", alg)
	}
	return out.Keys[0].KeyID, nil
}

// adminJSON posts body as JSON to the admin API and decodes the answer
// into out (unless nil), which must come with status want.
func (p *Provider) adminJSON(ctx context.Context, path string, body any, want int, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.AdminURL()+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return p.do(req, want, out)
}

// do sends req and decodes a response of status want into out (unless
// nil); another status is an error quoting the response.
func (p *Provider) do(req *http.Request, want int, out any) error {
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the response: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decoding the response: %w", req.Method, req.URL.Path, err)
	}
	return nil
}
