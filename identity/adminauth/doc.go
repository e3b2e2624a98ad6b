// Package adminauth owns "who is calling the admin API": it authenticates
// requests to the gateway's admin listener and gives the CLI its credential.
//
// The admin tokens file maps each bearer token to a subject and groups:
//
//	# /etc/interlock/admin-tokens.yaml, mode 0600
//	- token: "3f1c…"   # at least 16 bytes of printable ASCII, no spaces
//	  subject: alice
//	  groups: [dba]
//
// It owns:
//   - the tokens file (LoadTokens, Tokens.Reload). It must be a regular file
//     with no group or other permission bits (chmod 600) belonging to root
//     or to the user running the gateway; otherwise it is refused with the
//     fix in the message. Only the SHA-256 of each token is kept, and Lookup
//     compares the presented token's hash with every entry in constant time
//     without stopping at a match. Reload keeps the old set when the new
//     file is invalid, so a bad edit does not lock admins out; a file with
//     no entries is valid and revokes every token.
//   - Authenticator: reads "Authorization: Bearer <token>", tries the static
//     tokens, then, for a token shaped like a JWT, the OIDC TokenVerifier the
//     gateway supplies (the OIDC package stays unknown to this one).
//   - The middleware (Require, Protect) that answers unauthenticated
//     requests and puts the caller's Identity in the request context
//     (FromContext), and its brute-force damping: a token bucket per client
//     address (per /64 for IPv6) that failed attempts drain. A static token
//     is looked up first and, when it matches, served whatever the bucket
//     holds: guessing one of at least 16 bytes is hopeless, and callers
//     sharing an address (everything on loopback) share the bucket, so a
//     local process that keeps failing must not keep the admins out. Every
//     other credential (a guess, an OIDC token, whose check costs a
//     signature check and may make the verifier fetch keys) needs an
//     attempt from the bucket and is answered 429 with Retry-After when it
//     is empty; the attempt is given back unless the credential was
//     invalid. So an OIDC admin sharing an address with a process that
//     keeps failing waits while it fails; a static token is the way in
//     then. The map of buckets is bounded (4096 addresses; the rest share
//     one bucket).
//   - ClientToken: the CLI's credential from --token-file or
//     INTERLOCK_TOKEN.
//
// Identity embeds identity.Identity (subject, groups, issuer: "" for a
// static token) and adds Method ("token" or "oidc"), so an admin caller can
// be named wherever a workload identity is.
//
// Tokens never appear in errors or logs: the tokens file parser reports
// positions and describes values by kind, the YAML library's quoted source
// is cut from its messages, and a verifier error that quotes the token is
// redacted.
//
// Error contract: callers branch on the sentinel errors with errors.Is.
//   - ErrNoCredentials: the request has no Authorization header (401 with
//     WWW-Authenticate: Bearer realm="interlock"), or ClientToken found no
//     credential.
//   - ErrInvalidCredentials: the credential proves nothing: unknown token,
//     not Bearer, several Authorization headers, a token the verifier
//     refused (401). Only these count as failed attempts.
//   - ErrUnavailable: the verifier could not check the token now (503). A
//     TokenVerifier returns it, wrapped, for provider outages.
//   - ErrInsecureFile: a tokens file or CLI token file with permissions or
//     an owner that let others read or change it.
//   - ErrInvalidTokensFile: the tokens file's content is wrong; the error is
//     a *FileError with the file, line and column.
//
// Other errors are wrapped with what was being done ("loading admin tokens:
// open /etc/…: no such file or directory").
package adminauth
