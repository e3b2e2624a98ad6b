package adminauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/interlock-dev/interlock/identity"
)

// Claims is what a TokenVerifier proved about a token's bearer.
type Claims struct {
	Issuer  string // the issuer URL; required
	Subject string // required
	Groups  []string
}

// TokenVerifier checks a raw OIDC token against every configured issuer. An
// error means the token is not valid, except one wrapping ErrUnavailable,
// which means it could not be checked now. Errors must not hold the token.
type TokenVerifier interface {
	VerifyAny(ctx context.Context, raw string) (Claims, error)
}

// VerifierFunc adapts a function to TokenVerifier.
type VerifierFunc func(ctx context.Context, raw string) (Claims, error)

// VerifyAny calls f.
func (f VerifierFunc) VerifyAny(ctx context.Context, raw string) (Claims, error) { return f(ctx, raw) }

// Defaults for brute-force damping and OIDC verification.
const (
	DefaultFailureBurst  = 10              // failed attempts an address may make at once
	DefaultFailureRefill = 6 * time.Second // then one more per this long
	maxTrackedAddresses  = 4096
	verifyTimeout        = 10 * time.Second
)

// Authenticator finds the admin caller of an HTTP request from its bearer
// token. It is safe for concurrent use.
type Authenticator struct {
	tokens  *Tokens
	oidc    TokenVerifier
	log     *slog.Logger
	limiter *failureLimiter // nil: no damping
	now     func() time.Time
}

// Option configures an Authenticator.
type Option func(*Authenticator)

// WithLogger logs failed attempts (Warn) and accepted callers (Debug) to l;
// the default discards them. Tokens are never logged.
func WithLogger(l *slog.Logger) Option {
	return func(a *Authenticator) { a.log = l }
}

// WithFailureLimit sets the brute-force damping of Require: an address may
// fail burst times at once, then once per refill; past that it gets 429
// until it has waited. burst <= 0 turns damping off.
func WithFailureLimit(burst int, refill time.Duration) Option {
	return func(a *Authenticator) {
		if burst <= 0 || refill <= 0 {
			a.limiter = nil
			return
		}
		a.limiter = newFailureLimiter(burst, refill, maxTrackedAddresses)
	}
}

// New returns an authenticator that accepts the static tokens and, when oidc
// is not nil, tokens oidc verifies. Either may be nil (pass a literal nil,
// not a nil pointer in the interface); with both nil every request is
// refused. Reloading tokens is seen at once. Damping defaults to DefaultFailureBurst and
// DefaultFailureRefill.
func New(tokens *Tokens, oidc TokenVerifier, opts ...Option) *Authenticator {
	a := &Authenticator{
		tokens:  tokens,
		oidc:    oidc,
		log:     slog.New(slog.DiscardHandler),
		limiter: newFailureLimiter(DefaultFailureBurst, DefaultFailureRefill, maxTrackedAddresses),
		now:     time.Now,
	}
	for _, o := range opts {
		o(a)
	}
	if a.limiter != nil {
		a.limiter.now = a.now
	}
	return a
}

// Authenticate returns the caller r's "Authorization: Bearer" token proves:
// a static token first, then, when the token looks like a JWT, the OIDC
// verifier. Without the header it returns ErrNoCredentials; a credential
// that proves nothing returns an error wrapping ErrInvalidCredentials; a
// verifier that cannot check now, one wrapping ErrUnavailable.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	raw, err := bearerToken(r.Header)
	if err != nil {
		return Identity{}, err
	}
	if id, ok := a.lookupStatic(raw); ok {
		return id, nil
	}
	return a.verifyOIDC(r.Context(), raw)
}

// lookupStatic finds raw among the static tokens, in constant time.
func (a *Authenticator) lookupStatic(raw string) (Identity, bool) {
	if a.tokens == nil {
		return Identity{}, false
	}
	return a.tokens.Lookup(raw)
}

// verifyOIDC is Authenticate for a bearer token that is no static token.
func (a *Authenticator) verifyOIDC(ctx context.Context, raw string) (Identity, error) {
	if !looksLikeJWT(raw) {
		return Identity{}, fmt.Errorf("bearer token matches no admin token: %w", ErrInvalidCredentials)
	}
	if a.oidc == nil {
		return Identity{}, fmt.Errorf("bearer token is a JWT and no OIDC issuer is configured: %w", ErrInvalidCredentials)
	}
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	c, err := a.oidc.VerifyAny(ctx, raw)
	if err != nil {
		err = redactToken(err, raw)
		if errors.Is(err, ErrUnavailable) {
			return Identity{}, fmt.Errorf("verifying OIDC token: %w", err)
		}
		return Identity{}, fmt.Errorf("verifying OIDC token: %w: %w", ErrInvalidCredentials, err)
	}
	if c.Issuer == "" || c.Subject == "" {
		return Identity{}, fmt.Errorf("verifying OIDC token: the verifier returned no issuer or subject: %w", ErrInvalidCredentials)
	}
	return Identity{
		Identity: identity.Identity{Subject: c.Subject, Groups: slices.Clone(c.Groups), Issuer: c.Issuer},
		Method:   MethodOIDC,
	}, nil
}

// bearerToken returns the token of the request's one Authorization header.
// Its errors never hold the header's value: without a space, all of it may
// be the token.
func bearerToken(h http.Header) (string, error) {
	vals := h.Values("Authorization")
	switch {
	case len(vals) == 0 || (len(vals) == 1 && strings.TrimSpace(vals[0]) == ""):
		return "", ErrNoCredentials
	case len(vals) > 1:
		return "", fmt.Errorf("more than one Authorization header: %w", ErrInvalidCredentials)
	}
	scheme, rest, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("authorization is not a Bearer token: %w", ErrInvalidCredentials)
	}
	tok := strings.TrimSpace(rest)
	if tok == "" {
		return "", fmt.Errorf("empty bearer token: %w", ErrInvalidCredentials)
	}
	return tok, nil
}

// looksLikeJWT reports whether s has a JWS compact form's shape: three
// base64url parts, the last (the signature) possibly empty, which the
// verifier then refuses. Static tokens that do not match are not sent to the
// verifier, so a mistyped token never reaches an identity provider.
func looksLikeJWT(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	for _, p := range parts {
		if strings.ContainsFunc(p, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_')
		}) {
			return false
		}
	}
	return true
}

// redactToken keeps a verifier's error from carrying the token into an error
// or a log line, should the verifier quote it.
func redactToken(err error, raw string) error {
	msg := err.Error()
	sig := raw[strings.LastIndexByte(raw, '.')+1:]
	if !strings.Contains(msg, raw) && (len(sig) < 8 || !strings.Contains(msg, sig)) {
		return err
	}
	msg = strings.ReplaceAll(msg, raw, "[token]")
	if len(sig) >= 8 {
		msg = strings.ReplaceAll(msg, sig, "[signature]")
	}
	if errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%s: %w", msg, ErrUnavailable)
	}
	return errors.New(msg)
}
