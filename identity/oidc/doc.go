// Package oidc owns "is this workload's token genuine": it verifies OIDC
// (JWT) tokens from the issuers the configuration trusts and turns a good
// one into Claims — issuer, subject, groups, audience, expiry — for the
// identity package to bind to a workload.
//
// It owns:
//   - Issuer, the configuration of one trusted issuer, and its defaults
//     (subject from "sub", groups from "groups", 30s clock skew).
//   - Verifier: discovery, signing keys and verification, on
//     github.com/coreos/go-oidc/v3. Discovery is lazy: New never talks to an
//     issuer, so the gateway starts while an identity provider is down. The
//     first use of an issuer (and a background attempt started by New)
//     fetches /.well-known/openid-configuration; a failure is remembered and
//     retried no sooner than after a backoff that doubles from 1s to 1m. The
//     signing keys (jwks_uri) are go-oidc's RemoteKeySet: cached, and
//     fetched again whenever a token names a key id not in the cache, so a
//     rotated key works without a restart. go-oidc also fetches again for a
//     token no cached key verifies (a forged one too); concurrent fetches
//     are shared, and each issuer's fetches are limited (keyFetchBurst at
//     once, then one per keyFetchInterval; a token past the limit fails
//     with ErrIssuerUnavailable), so made-up tokens cannot make the
//     gateway hammer its identity provider. A caller that takes tokens from
//     untrusted workloads should still limit their attempts (each costs a
//     signature check). A key the issuer withdraws stays trusted until the
//     next fetch.
//   - What a token must be: at most MaxTokenSize bytes; a compact JWS (a
//     JWE, "alg": "none" and HMAC algorithms are refused: only RS*, PS*,
//     ES* and EdDSA); signed by a key the issuer publishes; "iss" exactly
//     the configured URL; "aud" containing the configured audience; "exp"
//     present and not past; "nbf" and "iat", when present, not in the
//     future. The subject claim must be a non-empty string; the groups claim
//     may be absent (no groups), one string (one group) or a list of
//     strings. Claim and header names are matched exactly ("AUD" is not
//     "aud"): they are read from maps, never through encoding/json's
//     case-insensitive struct fields.
//
// Clock skew applies on both sides: a token is accepted until exp+skew, and
// from nbf-skew (and iat-skew). go-oidc's own time check is switched off
// (Config.SkipExpiryCheck) and these checks are done here against
// Options.Now: go-oidc measures nbf with a fixed five-minute leeway from the
// same clock it checks exp against, so shifting its clock by the skew would
// give exp and nbf different leeways. go-oidc still checks the algorithm,
// the signature and the issuer.
//
// Untrusted bytes are read before the signature is checked only to pick the
// issuer and refuse a bad algorithm early (peekToken, fuzzed as
// FuzzPeekIssuer); nothing read there is trusted afterwards.
//
// Error contract: callers branch on the sentinel errors with errors.Is.
//   - ErrInvalidToken: the token proves nothing. Every verification failure
//     wraps it with a reason a person can act on ("token expired at …",
//     "audience … not accepted", "issuer … is not configured",
//     "signature …"). Reasons quote claim values, never the token.
//   - ErrIssuerUnavailable: the token could not be checked now: discovery
//     or the signing keys could not be fetched (the error says why and, for
//     discovery, when the next attempt is), or ctx ended while waiting for
//     them. Retrying later may succeed.
//   - ErrUnknownIssuer: Verify was given an issuer name that is not
//     configured (a configuration error, not a token problem).
//   - ErrInvalidConfig: New was given an issuer it cannot use; the error
//     names the issuer and the field.
package oidc
