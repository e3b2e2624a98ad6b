// Package oidctest runs a real OIDC provider, Ory Hydra, as its own process
// on loopback for tests, the way pgtest runs PostgreSQL: Start for a test
// (stopped and its files removed when the test ends), Launch and Close for
// a program.
//
// The binary is $INTERLOCK_HYDRA (make test sets it), else bin/hydra in the
// repository (the folder holding go.mod, found from the working directory
// up), built by `make bin/hydra`. Without it a test is skipped with the
// reason, or fails when INTERLOCK_REQUIRE_PRIVILEGED=1 says the environment
// must run it (CI).
//
// Each Provider is one Hydra with an in-memory database, listening on
// 127.0.0.1 (public port: the issuer; admin port: client and key
// management), issuing JWT access tokens signed RS256, with the issuer URL
// http://127.0.0.1:<port>/. Hydra reads only the configuration file the
// harness writes: its environment is emptied, because Hydra takes any
// variable named like a setting (DSN, SERVE_PUBLIC_PORT, …) as an override.
//
// Tokens are obtained the way an agent gets one: the client credentials
// grant, with the client's id and secret (Token).
//
// Groups. Hydra puts no client attribute in a client-credentials token
// (not its metadata), so the harness runs Hydra's token hook: a small HTTP
// server in this process, on loopback and requiring a per-provider key,
// that Hydra asks before issuing every token. It answers with the groups
// recorded for the client (CreateClient, SetGroups), which Hydra writes as
// a top-level "groups" claim (oauth2.allowed_top_level_claims). That is
// the shape corporate identity providers give groups in, and it exercises
// the verifier's default groups claim. A client with no groups gets a
// token without the claim. The granted scopes are in "scp" as usual.
//
// Error contract: Launch returns an error wrapping ErrUnavailable when this
// machine cannot run Hydra at all (no binary), and other errors for a
// Hydra that failed to start (with the end of its log). The test helpers
// report failures with tb.Fatalf.
package oidctest
