package oidc

import (
	"fmt"
	"math"
	"time"
)

// Claims is what a verified token says about its bearer.
type Claims struct {
	// IssuerName is the configured name of the issuer that verified the
	// token ("corp").
	IssuerName string
	// Issuer is the token's "iss", the issuer's URL.
	Issuer string
	// Subject is the configured subject claim's value.
	Subject string
	// Groups is the configured groups claim's value; nil when the token
	// has none.
	Groups []string
	// Audience is the token's "aud".
	Audience []string
	// Expiry is the token's "exp". The clock skew is not added: a binding
	// made from these claims ends here.
	Expiry time.Time
	// Raw holds every claim of the token as encoding/json decodes it
	// (numbers are float64).
	Raw map[string]any
}

// latestDate bounds NumericDate claims: 9999-12-31, beyond which no
// calendar or time.Time arithmetic is needed.
const latestDate = 253402300799

// numericDate reads the JWT NumericDate claim name (seconds since the
// epoch, maybe fractional) from raw; ok is false when it is absent.
func numericDate(raw map[string]any, name string) (t time.Time, ok bool, err error) {
	v, present := raw[name]
	if !present || v == nil {
		return time.Time{}, false, nil
	}
	f, isNum := v.(float64)
	if !isNum || math.IsNaN(f) || f < 0 || f > latestDate {
		return time.Time{}, false, fmt.Errorf("claim %s is not a date (seconds since 1970): %w", name, ErrInvalidToken)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// checkTimes applies exp, nbf and iat at now with skew on both sides: the
// token is accepted until exp+skew and from nbf-skew. exp is required: a
// token that never expires would bind a workload forever.
func checkTimes(raw map[string]any, now time.Time, skew time.Duration) (expiry time.Time, err error) {
	exp, ok, err := numericDate(raw, "exp")
	if err != nil {
		return time.Time{}, err
	}
	if !ok {
		return time.Time{}, fmt.Errorf("token has no expiry (exp); tokens that never expire are not accepted: %w", ErrInvalidToken)
	}
	if now.After(exp.Add(skew)) {
		return time.Time{}, fmt.Errorf("token expired at %s (now %s, clock skew %s): %w",
			exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew, ErrInvalidToken)
	}
	nbf, ok, err := numericDate(raw, "nbf")
	if err != nil {
		return time.Time{}, err
	}
	if ok && nbf.After(now.Add(skew)) {
		return time.Time{}, fmt.Errorf("token is not valid before %s (now %s, clock skew %s): %w",
			nbf.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew, ErrInvalidToken)
	}
	iat, ok, err := numericDate(raw, "iat")
	if err != nil {
		return time.Time{}, err
	}
	if ok && iat.After(now.Add(skew)) {
		return time.Time{}, fmt.Errorf("token was issued in the future, at %s (now %s, clock skew %s): %w",
			iat.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew, ErrInvalidToken)
	}
	return exp, nil
}

// subjectFrom reads the subject claim: a non-empty string.
func subjectFrom(raw map[string]any, claim string) (string, error) {
	v, ok := raw[claim]
	if !ok || v == nil {
		return "", fmt.Errorf("token has no subject claim %s: %w", quote(claim), ErrInvalidToken)
	}
	s, isString := v.(string)
	switch {
	case !isString:
		return "", fmt.Errorf("subject claim %s is %s, not a string: %w", quote(claim), jsonKind(v), ErrInvalidToken)
	case s == "":
		return "", fmt.Errorf("subject claim %s is empty: %w", quote(claim), ErrInvalidToken)
	}
	return s, nil
}

// audienceFrom reads "aud": one string or a list of strings (RFC 7519
// 4.1.3). It is read here, by its exact name, rather than taken from
// go-oidc, whose struct decoding would also take "AUD" for it.
func audienceFrom(raw map[string]any) ([]string, error) {
	switch a := raw["aud"].(type) {
	case nil:
		return nil, nil
	case string:
		return []string{a}, nil
	case []any:
		out := make([]string, 0, len(a))
		for i, e := range a {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("audience (aud): entry %d is %s, not a string: %w", i, jsonKind(e), ErrInvalidToken)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("audience (aud) is %s, not a string or a list of strings: %w", jsonKind(a), ErrInvalidToken)
	}
}

// groupsFrom reads the groups claim: absent or null (no groups), one
// string (one group, not split: a space in it is part of the name) or a
// list of non-empty strings.
func groupsFrom(raw map[string]any, claim string) ([]string, error) {
	v, ok := raw[claim]
	if !ok || v == nil {
		return nil, nil
	}
	switch g := v.(type) {
	case string:
		if g == "" {
			return nil, nil
		}
		return []string{g}, nil
	case []any:
		if len(g) == 0 {
			return nil, nil
		}
		out := make([]string, 0, len(g))
		for i, e := range g {
			s, isString := e.(string)
			if !isString || s == "" {
				return nil, fmt.Errorf("groups claim %s: entry %d is %s, not a non-empty string: %w", quote(claim), i, jsonKind(e), ErrInvalidToken)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("groups claim %s is %s, not a string or a list of strings: %w", quote(claim), jsonKind(v), ErrInvalidToken)
}

// jsonKind names the JSON type of a value decoded by encoding/json, for
// messages that must not quote it.
func jsonKind(v any) string {
	switch s := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		if s == "" {
			return "an empty string"
		}
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}
