package oidc

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Discovery timing. A failed discovery is retried no sooner than after the
// backoff, which doubles from minBackoff to maxBackoff: an issuer that is
// down costs one request per backoff, however many tokens arrive.
const (
	discoveryTimeout = 10 * time.Second
	minBackoff       = time.Second
	maxBackoff       = time.Minute
)

// issuerState is one configured issuer and its discovery.
type issuerState struct {
	cfg    Issuer
	client *http.Client
	log    *slog.Logger
	// keyFetchInterval replaces keyFetchInterval in tests; 0 is the default.
	keyFetchInterval time.Duration

	mu      sync.Mutex
	ready   *oidc.IDTokenVerifier // set once discovery succeeded
	running chan struct{}         // non-nil while a discovery runs; closed when it ends
	lastErr error                 // the last discovery failure
	retryAt time.Time             // no new attempt before this
	backoff time.Duration         // the wait after the next failure
}

// verifier returns the issuer's go-oidc verifier, discovering the issuer
// first when that has not succeeded yet. A discovery runs detached from
// ctx, so a caller that gives up does not fail it for the others; the
// caller stops waiting when ctx ends. Errors wrap ErrIssuerUnavailable.
func (s *issuerState) verifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	s.mu.Lock()
	if s.ready != nil {
		v := s.ready
		s.mu.Unlock()
		return v, nil
	}
	if s.running == nil {
		if wait := time.Until(s.retryAt); wait > 0 {
			err := s.lastErr
			s.mu.Unlock()
			return nil, fmt.Errorf("issuer %s: discovery failed, next attempt in %s: %w: %w",
				s.cfg.Name, wait.Round(time.Millisecond), ErrIssuerUnavailable, err)
		}
		s.startLocked(context.Background())
	}
	running := s.running
	s.mu.Unlock()

	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("issuer %s: waiting for discovery: %w: %w", s.cfg.Name, ErrIssuerUnavailable, context.Cause(ctx))
	case <-running:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready != nil {
		return s.ready, nil
	}
	return nil, fmt.Errorf("issuer %s: %w: %w", s.cfg.Name, ErrIssuerUnavailable, s.lastErr)
}

// start begins a discovery in the background unless one runs or has
// succeeded. parent ends it early; its values are kept.
func (s *issuerState) start(parent context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready == nil && s.running == nil {
		s.startLocked(parent)
	}
}

func (s *issuerState) startLocked(parent context.Context) {
	done := make(chan struct{})
	s.running = done
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(parent, discoveryTimeout)
		defer cancel()
		v, err := s.discover(ctx)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.running = nil
		if err != nil && parent.Err() != nil {
			// Ended by New's context, not by the issuer: no backoff, the
			// next verification tries at once.
			s.lastErr = err
			return
		}
		if err != nil {
			s.backoff = min(max(s.backoff*2, minBackoff), maxBackoff)
			s.lastErr = err
			s.retryAt = time.Now().Add(s.backoff)
			s.log.Warn("OIDC issuer discovery failed", "issuer", s.cfg.Name, "url", s.cfg.URL,
				"error", err, "retry_in", s.backoff)
			return
		}
		s.ready, s.lastErr = v, nil
	}()
}

// discover fetches the discovery document and builds the verifier on its
// jwks_uri.
func (s *issuerState) discover(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, s.client), s.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("discovering %s: %w", s.cfg.URL, err)
	}
	var doc struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil {
		return nil, fmt.Errorf("discovering %s: reading the document: %w", s.cfg.URL, err)
	}
	if u, err := url.Parse(doc.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("discovering %s: jwks_uri %s is not an absolute http(s) URL", s.cfg.URL, quote(doc.JWKSURL))
	}
	// The key set fetches in goroutines of its own, with this context's
	// values (the HTTP client) and never its cancellation; the client's
	// timeout bounds each fetch.
	// Its own client limits how often it fetches (see keyFetchBurst).
	keyClient := *s.client
	keyClient.Transport = limitedTransport{next: s.client.Transport, limit: newFetchLimiter(s.keyFetchInterval), issuer: s.cfg.Name, log: s.log}
	keys := keySet{remote: oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), &keyClient), doc.JWKSURL)}
	v := oidc.NewVerifier(s.cfg.URL, keys, &oidc.Config{
		// Audience and times are checked by Verifier.verify, with messages
		// of its own and one clock skew (see the package documentation).
		SkipClientIDCheck:    true,
		SkipExpiryCheck:      true,
		SupportedSigningAlgs: acceptedAlgs,
	})
	s.log.Info("OIDC issuer discovered", "issuer", s.cfg.Name, "url", s.cfg.URL, "jwks_uri", doc.JWKSURL)
	return v, nil
}
