// Package pgxsuite runs the pgx v5 test suite through the gateway: a
// compatibility test of the PostgreSQL handler against the tests of the
// driver most Go agents use. It holds no code; everything is in the test
// files, and `make test-pgx` runs it (about three minutes, most of it the
// gateway under the race detector).
//
// TestPgxSuite starts a real PostgreSQL (pgtest, SCRAM, with TLS), prepares
// database pgx_test with pgx's own testsetup/postgresql_setup.sql (run by
// psql, as pgx's CI does: hstore, ltree, the uint64 domain, its roles),
// starts the gateway in-process on 127.0.0.1 (the postgres handler in a
// proxy.Server, every caller attributed to one workload as explicit mode
// does, policy "default: allow", the real recordings store, agent TLS on,
// upstream TLS verify-full, logging in upstream as pgx_scram, a superuser
// role of pgx's setup like every role pgx tests with), and runs
// `go test -json` of each package in packages from the module cache, with
// the tests listed in excluded.txt skipped. Packages run two at a time, as
// `go test ./...` in pgx's CI runs them against one database; stdlib runs
// alone, since one of its tests opens 50 connections.
//
// The pgx tests read their connection strings from the environment:
//
//   - PGX_TEST_DATABASE and PGX_TEST_TCP_CONN_STRING point at the gateway
//     as user "agent" with no password (agents authenticate by workload).
//   - PGX_TEST_TLS_CONN_STRING points at the gateway with sslmode=verify-ca
//     and the gateway's own CA: the gateway mints its certificate for the
//     address the agent dialled, which in explicit mode is the target's
//     (127.0.0.2), not the listener's, so verify-full cannot match.
//   - Left unset, so pgx skips those tests itself: the unix socket string
//     (the gateway listens on TCP only), the plain, md5 and SCRAM password
//     strings and SCRAM-PLUS (the gateway asks an agent for no password,
//     so they would pass without testing what they name; channel binding
//     needs a SCRAM exchange with the gateway, which there is not), the TLS
//     client certificate string (agents are not identified by
//     certificate), and PgBouncer, CrateDB, OAuth and libpq's URI
//     regression binary (none runs here).
//
// Counts are of top-level tests; subtests are counted apart. The test
// fails when a test not in excluded.txt fails, when a package fails
// without a failing test (build error, panic, timeout), when excluded.txt
// names a test its package does not have, or when a session's recording
// does not verify as a complete chain. It logs pass, fail and skip counts
// per package, the exclusions with their reasons, and the denials the
// gateway recorded (each should be a by-design one, such as SQL the
// gateway cannot parse).
//
// Environment:
//
//   - INTERLOCK_PGX_SUITE=1 runs the test; without it the test is skipped.
//   - INTERLOCK_PGX_SUITE_OUT=DIR keeps the gateway's log, each package's
//     `go test -json` stream and the recordings in DIR.
//   - INTERLOCK_PGX_SUITE_PACKAGES (comma-separated import paths) and
//     INTERLOCK_PGX_SUITE_RUN (a -run pattern) narrow the run, to
//     reproduce one test; with a -run pattern excluded.txt does not apply,
//     so an excluded test can be checked again.
//   - INTERLOCK_PGX_SUITE_POLICY=FILE runs the gateway under the policy in
//     FILE (YAML, as the policy section of the configuration) instead of
//     "default: allow"; a mask that matches nothing, for one, puts every
//     result through the masking rewriter. excluded.txt is written for the
//     default policy.
package pgxsuite
