package adminauth

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
)

// Require serves next only to authenticated callers, with their Identity in
// the request's context (FromContext). Others get a JSON {"error": "..."}:
// 401 with a WWW-Authenticate challenge for a missing or invalid
// credential, 503 when the OIDC verifier cannot check now, and 429 with
// Retry-After for an address that failed too often (see WithFailureLimit).
//
// A static token is looked up before the limiter is asked, and one that
// matches is served whatever the address's bucket holds: guessing a token
// of at least 16 bytes is hopeless anyway, and an empty bucket must not
// keep a valid admin out while some other process on the same address
// (everything on loopback) keeps failing. Every other credential needs an
// attempt from the bucket, since checking it may cost a signature check
// and a key fetch from the identity provider; only invalid credentials
// keep the attempt, so a valid OIDC token or an outage costs nothing.
func (a *Authenticator) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := a.authenticateLimited(w, r)
		if err != nil {
			if !errors.Is(err, errThrottled) {
				a.refuse(w, r, err)
			}
			return
		}
		a.log.Debug("admin request authenticated", "remote", r.RemoteAddr, "method", r.Method,
			"path", r.URL.Path, "subject", id.Subject, "issuer", id.Issuer, "auth", id.Method)
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
	})
}

// errThrottled: authenticateLimited has already answered 429.
var errThrottled = errors.New("throttled")

// authenticateLimited is Authenticate with the failure limiter between the
// static tokens and everything else (see Require).
func (a *Authenticator) authenticateLimited(w http.ResponseWriter, r *http.Request) (id Identity, err error) {
	raw, err := bearerToken(r.Header)
	if errors.Is(err, ErrNoCredentials) {
		return Identity{}, err
	}
	if err == nil {
		if id, ok := a.lookupStatic(raw); ok {
			return id, nil
		}
	}
	if a.limiter != nil {
		b, wait, ok := a.limiter.take(clientKey(r.RemoteAddr))
		if !ok {
			secs := max(1, int(math.Ceil(wait.Seconds())))
			a.log.Warn("admin request refused: too many failed attempts",
				"remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "retry_after_s", secs)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, http.StatusTooManyRequests,
				"too many failed authentication attempts from this address; retry in "+strconv.Itoa(secs)+"s")
			return Identity{}, errThrottled
		}
		defer func() { // the attempt is kept only by a failure
			if !errors.Is(err, ErrInvalidCredentials) {
				a.limiter.giveBack(b)
			}
		}()
	}
	if err != nil {
		return Identity{}, err
	}
	return a.verifyOIDC(r.Context(), raw)
}

// Protect serves the paths in public (exact matches of r.URL.Path, like
// "/healthz") straight from next and everything else through Require, so a
// route added later is protected unless listed.
func (a *Authenticator) Protect(next http.Handler, public ...string) http.Handler {
	open := make(map[string]bool, len(public))
	for _, p := range public {
		open[p] = true
	}
	guarded := a.Require(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if open[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

// refuse answers a request Authenticate refused; the reason goes to the log,
// the client learns only which of the three cases it is.
func (a *Authenticator) refuse(w http.ResponseWriter, r *http.Request, err error) {
	attrs := []any{"remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "reason", err.Error()}
	switch {
	case errors.Is(err, ErrNoCredentials):
		a.log.Debug("admin request without credentials", attrs...)
		w.Header().Set("WWW-Authenticate", `Bearer realm="interlock"`)
		writeError(w, http.StatusUnauthorized, "authentication required: send Authorization: Bearer <token>")
	case errors.Is(err, ErrUnavailable):
		a.log.Warn("admin credentials could not be checked", attrs...)
		writeError(w, http.StatusServiceUnavailable, "credentials cannot be checked now; try again later")
	default:
		a.log.Warn("admin authentication failed", attrs...)
		w.Header().Set("WWW-Authenticate", `Bearer realm="interlock", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid credentials")
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
