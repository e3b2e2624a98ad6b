package oidc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/coreos/go-oidc/v3/oidc"
)

// maxResponseSize bounds a discovery document or key set. go-oidc reads
// whole bodies; an issuer (or whoever answers in its place) must not be
// able to make the gateway buffer more.
const maxResponseSize = 1 << 20

// errFetch marks a failed discovery or key set request. The transport
// wraps it into every error it returns, and go-oidc keeps transport errors
// wrapped (%w) up to its key set, so a key set failure can be told from a
// signature that does not verify without reading messages.
var errFetch = errors.New("fetch failed")

// boundedTransport is the issuers' HTTP transport: it caps and buffers
// response bodies, and turns answers that cannot be a discovery document or
// a key set (an error status, a body that is not JSON) into errors wrapping
// errFetch.
type boundedTransport struct {
	next http.RoundTripper
}

func (t boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errFetch, err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return resp, nil // http.Client follows the redirect
	}
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: GET %s: %s: %s", errFetch, req.URL.Redacted(), resp.Status, bytes.TrimSpace(cut(body, 200)))
	case readErr != nil:
		return nil, fmt.Errorf("%w: GET %s: reading the response: %w", errFetch, req.URL.Redacted(), readErr)
	case len(body) > maxResponseSize:
		return nil, fmt.Errorf("%w: GET %s: response is larger than %d bytes", errFetch, req.URL.Redacted(), maxResponseSize)
	case !json.Valid(body):
		return nil, fmt.Errorf("%w: GET %s: response is not JSON", errFetch, req.URL.Redacted())
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

func cut(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// fetchFailed says whether err, returned by go-oidc's key set, means the
// keys could not be fetched (or the caller stopped waiting for them) rather
// than that no fetched key verifies the signature.
func fetchFailed(err error) bool {
	var ue *url.Error
	return errors.Is(err, errFetch) || errors.As(err, &ue) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// keySet is go-oidc's RemoteKeySet with its outcome recorded in the
// context's sigOutcome: go-oidc flattens key set errors to text (%v), and
// the outcome is what tells ErrIssuerUnavailable from a bad signature.
type keySet struct {
	remote *oidc.RemoteKeySet
}

// sigOutcome is filled by keySet during one verification.
type sigOutcome struct {
	called bool  // go-oidc got as far as checking the signature
	err    error // what the key set said
}

type sigOutcomeKey struct{}

func (k keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.remote.VerifySignature(ctx, jwt)
	if o, ok := ctx.Value(sigOutcomeKey{}).(*sigOutcome); ok {
		o.called, o.err = true, err
	}
	return payload, err
}
