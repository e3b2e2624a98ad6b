package main

import (
	"context"
	"fmt"
	"time"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/identity/oidc"
)

// setUpVerifier builds the OIDC verifier of identity.oidc; discovery runs
// in the background, so an issuer that is down at start-up only delays the
// first logins.
func (g *gateway) setUpVerifier(ctx context.Context) error {
	if len(g.cfg.Identity.OIDC) == 0 {
		return nil
	}
	var issuers []oidc.Issuer
	for _, o := range g.cfg.Identity.OIDC {
		issuers = append(issuers, oidc.Issuer{
			Name: o.Name, URL: o.Issuer, Audience: o.Audience,
			GroupsClaim: o.GroupsClaim, SubjectClaim: o.SubjectClaim, ClockSkew: o.ClockSkew.Duration,
		})
	}
	v, err := oidc.New(ctx, issuers, oidc.Options{Logger: g.logger})
	if err != nil {
		return fmt.Errorf("OIDC issuers: %w", err)
	}
	g.verifier = oidcVerifier{v}
	return nil
}

// oidcVerifier adapts the OIDC verifier to the gateway's tokenVerifier.
type oidcVerifier struct{ v *oidc.Verifier }

func (o oidcVerifier) Verify(ctx context.Context, issuer, raw string) (identity.Identity, time.Time, error) {
	c, err := o.v.Verify(ctx, issuer, raw)
	if err != nil {
		return identity.Identity{}, time.Time{}, err
	}
	return identity.Identity{Subject: c.Subject, Groups: c.Groups, Issuer: c.Issuer}, c.Expiry, nil
}

func (o oidcVerifier) VerifyAny(ctx context.Context, raw string) (identity.Identity, time.Time, error) {
	c, err := o.v.VerifyAny(ctx, raw)
	if err != nil {
		return identity.Identity{}, time.Time{}, err
	}
	return identity.Identity{Subject: c.Subject, Groups: c.Groups, Issuer: c.Issuer}, c.Expiry, nil
}
