package oidc

import (
	"cmp"
	"fmt"
	"net/url"
	"time"
)

// Defaults filled by Issuer.fill.
const (
	DefaultSubjectClaim = "sub"
	DefaultGroupsClaim  = "groups"
	DefaultClockSkew    = 30 * time.Second
	// MaxClockSkew is the largest ClockSkew accepted: beyond it a clock is
	// broken, not skewed, and an expired token would live on for too long.
	MaxClockSkew = 5 * time.Minute
)

// Issuer is one trusted OIDC issuer.
type Issuer struct {
	// Name is how the configuration refers to the issuer ("corp").
	Name string
	// URL is the issuer identifier; a token's "iss" must equal it exactly
	// (a trailing slash matters), and discovery is at
	// URL/.well-known/openid-configuration.
	URL string
	// Audience must be one of the token's "aud" values. Required.
	Audience string
	// GroupsClaim names the claim holding the groups; default "groups".
	GroupsClaim string
	// SubjectClaim names the claim holding the subject; default "sub".
	SubjectClaim string
	// ClockSkew is how far the issuer's clock may be from ours; default
	// 30s, at most MaxClockSkew.
	ClockSkew time.Duration
}

// fill checks the issuer and fills its defaults.
func (is *Issuer) fill() error {
	if is.Name == "" {
		return fmt.Errorf("issuer %q: name is empty: %w", is.URL, ErrInvalidConfig)
	}
	u, err := url.Parse(is.URL)
	switch {
	case is.URL == "":
		return fmt.Errorf("issuer %s: url is empty: %w", is.Name, ErrInvalidConfig)
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return fmt.Errorf("issuer %s: url %q is not an absolute http(s) URL: %w", is.Name, is.URL, ErrInvalidConfig)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("issuer %s: url %q has a query, fragment or user info, which an issuer identifier cannot have: %w", is.Name, is.URL, ErrInvalidConfig)
	}
	if is.Audience == "" {
		return fmt.Errorf("issuer %s: audience is empty; set the audience tokens for interlock carry: %w", is.Name, ErrInvalidConfig)
	}
	is.GroupsClaim = cmp.Or(is.GroupsClaim, DefaultGroupsClaim)
	is.SubjectClaim = cmp.Or(is.SubjectClaim, DefaultSubjectClaim)
	switch {
	case is.ClockSkew == 0:
		is.ClockSkew = DefaultClockSkew
	case is.ClockSkew < 0 || is.ClockSkew > MaxClockSkew:
		return fmt.Errorf("issuer %s: clock skew %s is out of range (0 to %s): %w", is.Name, is.ClockSkew, MaxClockSkew, ErrInvalidConfig)
	}
	return nil
}
