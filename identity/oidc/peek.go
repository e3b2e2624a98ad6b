package oidc

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// MaxTokenSize bounds a raw token before anything parses it. Real access
// and ID tokens are one to a few KiB; the bound keeps a hostile workload
// from making the gateway decode megabytes.
const MaxTokenSize = 16 << 10

// acceptedAlgs are the signature algorithms a token may use: the
// asymmetric ones. "none" proves nothing, and an HMAC key would be a
// secret shared with the issuer that a verifier holding only public keys
// must never accept (the classic trick is an HS256 token keyed with the
// issuer's public key).
var acceptedAlgs = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// unverified is what peekToken reads from a token before its signature is
// checked. Nothing in it may be trusted: it only chooses the issuer to
// verify against and refuses hopeless tokens before any network traffic.
type unverified struct {
	Alg    string
	KeyID  string
	Issuer string // "" when the token has no "iss"
}

// peekToken reads the header and the issuer of a compact JWS without
// verifying anything. Every error wraps ErrInvalidToken.
func peekToken(raw string) (unverified, error) {
	if len(raw) > MaxTokenSize {
		return unverified{}, fmt.Errorf("token is %d bytes, more than the %d accepted: %w", len(raw), MaxTokenSize, ErrInvalidToken)
	}
	parts := strings.Split(raw, ".")
	switch len(parts) {
	case 3:
	case 5:
		return unverified{}, fmt.Errorf("token is encrypted (JWE); only signed tokens (JWS) are accepted: %w", ErrInvalidToken)
	default:
		return unverified{}, fmt.Errorf("token is not a JWT: it has %d dot-separated parts, not 3: %w", len(parts), ErrInvalidToken)
	}
	// Maps, not structs: encoding/json matches struct fields ignoring
	// case, and JOSE names are case-sensitive ("ISS" is not "iss").
	var header, payload map[string]json.RawMessage
	if err := decodeSegment(parts[0], &header); err != nil {
		return unverified{}, fmt.Errorf("token header: %w: %w", err, ErrInvalidToken)
	}
	if err := decodeSegment(parts[1], &payload); err != nil {
		return unverified{}, fmt.Errorf("token claims: %w: %w", err, ErrInvalidToken)
	}
	var u unverified
	var err error
	if u.Alg, err = stringMember(header, "alg"); err != nil {
		return unverified{}, fmt.Errorf("token header: %w: %w", err, ErrInvalidToken)
	}
	if u.Alg == "" {
		return unverified{}, fmt.Errorf("token header has no signature algorithm (alg): %w", ErrInvalidToken)
	}
	if u.KeyID, err = stringMember(header, "kid"); err != nil {
		return unverified{}, fmt.Errorf("token header: %w: %w", err, ErrInvalidToken)
	}
	if u.Issuer, err = stringMember(payload, "iss"); err != nil {
		return unverified{}, fmt.Errorf("token claims: %w: %w", err, ErrInvalidToken)
	}
	return u, nil
}

// stringMember is the string member name of a JSON object; "" when it is
// absent or null.
func stringMember(obj map[string]json.RawMessage, name string) (string, error) {
	raw, ok := obj[name]
	if !ok {
		return "", nil
	}
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s is not a string", name)
	}
	if s == nil {
		return "", nil
	}
	return *s, nil
}

// decodeSegment decodes one base64url segment of a compact JWS into v: the
// segment must hold a JSON object.
func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return fmt.Errorf("not base64url: %w", err)
	}
	if len(b) == 0 || !json.Valid(b) || firstNonSpace(b) != '{' {
		return fmt.Errorf("not a JSON object")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("unexpected JSON: %w", err)
	}
	return nil
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c
	}
	return 0
}

// quote is an untrusted string for an error message: quoted, so control
// characters cannot forge log lines, and cut short, so a claim cannot flood
// a log.
func quote(s string) string {
	const max = 128
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
