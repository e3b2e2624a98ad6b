package oidc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Sentinel errors; see the package documentation for when each is returned.
var (
	ErrInvalidToken      = errors.New("invalid token")
	ErrIssuerUnavailable = errors.New("OIDC issuer unavailable")
	ErrUnknownIssuer     = errors.New("unknown OIDC issuer")
	ErrInvalidConfig     = errors.New("invalid OIDC issuer configuration")
)

// DefaultFetchTimeout bounds one discovery or key set request when
// Options.HTTPClient has no timeout of its own. go-oidc fetches keys in a
// goroutine every waiting verification shares, so an unbounded request to
// a hung issuer would stall all of them.
const DefaultFetchTimeout = 10 * time.Second

// Options are a Verifier's collaborators; the zero value works.
type Options struct {
	// HTTPClient fetches discovery documents and key sets; default a
	// client with DefaultFetchTimeout. Its transport is wrapped to bound
	// response sizes; a zero Timeout becomes DefaultFetchTimeout.
	HTTPClient *http.Client
	// Logger receives discovery successes and failures; default discard.
	Logger *slog.Logger
	// Now is the clock tokens' exp, nbf and iat are checked against;
	// default time.Now. Discovery backoff uses the real clock.
	Now func() time.Time

	// keyFetchInterval replaces keyFetchInterval in tests; 0 is the
	// default.
	keyFetchInterval time.Duration
}

// Verifier verifies tokens from the configured issuers. It is safe for
// concurrent use.
type Verifier struct {
	issuers []*issuerState // in configuration order
	byName  map[string]*issuerState
	now     func() time.Time
}

// New returns a Verifier for issuers. It checks the configuration and
// fills defaults but does not wait for any issuer: it starts each issuer's
// discovery in the background (ended early when ctx ends) and a failure
// there only means the first verification tries again once the backoff
// allows. Configuration errors wrap ErrInvalidConfig.
func New(ctx context.Context, issuers []Issuer, o Options) (*Verifier, error) {
	client := httpClient(o.HTTPClient)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{byName: make(map[string]*issuerState, len(issuers)), now: o.Now}
	if v.now == nil {
		v.now = time.Now
	}
	for _, cfg := range issuers {
		if err := cfg.fill(); err != nil {
			return nil, err
		}
		if _, dup := v.byName[cfg.Name]; dup {
			return nil, fmt.Errorf("issuer %s: configured twice: %w", cfg.Name, ErrInvalidConfig)
		}
		s := &issuerState{cfg: cfg, client: client, log: log, keyFetchInterval: o.keyFetchInterval}
		v.issuers = append(v.issuers, s)
		v.byName[cfg.Name] = s
	}
	for _, s := range v.issuers {
		s.start(ctx)
	}
	return v, nil
}

// httpClient is a copy of c (or a new client) whose transport bounds
// responses and whose requests time out.
func httpClient(c *http.Client) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	}
	next := out.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	out.Transport = boundedTransport{next: next}
	if out.Timeout == 0 {
		out.Timeout = DefaultFetchTimeout
	}
	return &out
}

// Verify verifies rawToken as a token from the issuer configured as
// issuerName and returns its claims. Surrounding white space is ignored
// (tokens come from files and password fields). A name that is not
// configured returns an error wrapping ErrUnknownIssuer.
func (v *Verifier) Verify(ctx context.Context, issuerName, rawToken string) (Claims, error) {
	s, ok := v.byName[issuerName]
	if !ok {
		return Claims{}, fmt.Errorf("verifying a token for issuer %s: %w", quote(issuerName), ErrUnknownIssuer)
	}
	rawToken = strings.TrimSpace(rawToken)
	peek, err := peekToken(rawToken)
	if err != nil {
		return Claims{}, err
	}
	if peek.Issuer != s.cfg.URL {
		return Claims{}, fmt.Errorf("token is from issuer %s, not from %s (%s): %w", quote(peek.Issuer), s.cfg.Name, s.cfg.URL, ErrInvalidToken)
	}
	return v.verify(ctx, s, rawToken, peek)
}

// VerifyAny verifies rawToken against the configured issuer whose URL is
// the token's "iss" (read before verification, only to choose). When
// several configured issuers share the URL (different audiences), the
// first that accepts the token wins, and otherwise the first one's error
// is returned.
func (v *Verifier) VerifyAny(ctx context.Context, rawToken string) (Claims, error) {
	rawToken = strings.TrimSpace(rawToken)
	peek, err := peekToken(rawToken)
	if err != nil {
		return Claims{}, err
	}
	var first error
	for _, s := range v.issuers {
		if s.cfg.URL != peek.Issuer {
			continue
		}
		c, err := v.verify(ctx, s, rawToken, peek)
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
	}
	if first != nil {
		return Claims{}, first
	}
	if peek.Issuer == "" {
		return Claims{}, fmt.Errorf("token has no issuer (iss): %w", ErrInvalidToken)
	}
	return Claims{}, fmt.Errorf("issuer %s is not configured: %w", quote(peek.Issuer), ErrInvalidToken)
}

// verify checks a token whose unverified issuer is s's.
func (v *Verifier) verify(ctx context.Context, s *issuerState, rawToken string, peek unverified) (Claims, error) {
	if !slices.Contains(acceptedAlgs, peek.Alg) {
		return Claims{}, fmt.Errorf("signature algorithm %s is not accepted (only %s): %w",
			quote(peek.Alg), strings.Join(acceptedAlgs, ", "), ErrInvalidToken)
	}
	ov, err := s.verifier(ctx)
	if err != nil {
		return Claims{}, err
	}
	outcome := &sigOutcome{}
	tok, err := ov.Verify(context.WithValue(ctx, sigOutcomeKey{}, outcome), rawToken)
	switch {
	case err == nil:
	case outcome.err != nil && fetchFailed(outcome.err):
		return Claims{}, fmt.Errorf("issuer %s: fetching its signing keys: %w: %w", s.cfg.Name, ErrIssuerUnavailable, outcome.err)
	case outcome.err != nil:
		return Claims{}, fmt.Errorf("signature not valid: no key published by issuer %s verifies it (key id %s): %w",
			s.cfg.Name, quote(peek.KeyID), ErrInvalidToken)
	case !outcome.called:
		// go-oidc refused the token before looking at keys: it does not
		// parse as a JWS with an accepted algorithm.
		return Claims{}, fmt.Errorf("malformed token: %s: %w", strings.TrimPrefix(err.Error(), "oidc: "), ErrInvalidToken)
	default:
		// Signed by the issuer yet refused: the issuer check, or claims
		// go-oidc cannot decode.
		return Claims{}, fmt.Errorf("issuer %s: %s: %w", s.cfg.Name, strings.TrimPrefix(err.Error(), "oidc: "), ErrInvalidToken)
	}

	var raw map[string]any
	if err := tok.Claims(&raw); err != nil {
		return Claims{}, fmt.Errorf("decoding the claims: %w: %w", err, ErrInvalidToken)
	}
	// Every claim below is read from raw, by its exact name: JWT claim
	// names are case-sensitive. The issuer needs no second look: peekToken
	// read "iss" exactly from these very bytes and go-oidc checked its own
	// reading, so both agree with the configuration.
	aud, err := audienceFrom(raw)
	if err != nil {
		return Claims{}, err
	}
	if !slices.Contains(aud, s.cfg.Audience) {
		return Claims{}, fmt.Errorf("audience %s not accepted: issuer %s requires %s: %w",
			quoteList(aud), s.cfg.Name, quote(s.cfg.Audience), ErrInvalidToken)
	}
	expiry, err := checkTimes(raw, v.now(), s.cfg.ClockSkew)
	if err != nil {
		return Claims{}, err
	}
	subject, err := subjectFrom(raw, s.cfg.SubjectClaim)
	if err != nil {
		return Claims{}, err
	}
	groups, err := groupsFrom(raw, s.cfg.GroupsClaim)
	if err != nil {
		return Claims{}, err
	}
	return Claims{
		IssuerName: s.cfg.Name,
		Issuer:     tok.Issuer,
		Subject:    subject,
		Groups:     groups,
		Audience:   aud,
		Expiry:     expiry,
		Raw:        raw,
	}, nil
}

// quoteList quotes untrusted values for a message, at most a few.
func quoteList(vs []string) string {
	if len(vs) == 0 {
		return "[]"
	}
	const max = 5
	q := make([]string, 0, min(len(vs), max)+1)
	for i, s := range vs {
		if i == max {
			q = append(q, fmt.Sprintf("… %d more", len(vs)-max))
			break
		}
		q = append(q, quote(s))
	}
	return "[" + strings.Join(q, " ") + "]"
}
