// Package tlsca is the gateway's own certificate authority for the TLS it
// terminates toward agents. The agent dials the real hostname (or IP), the
// gateway answers with a leaf certificate for exactly that name, minted on
// the fly and signed by this CA; the CA certificate is the one thing an
// operator adds to the agents' trust store. Upstream credentials never
// involve this CA.
//
// The CA lives in one folder (the gateway uses <state_dir>/ca): ca.crt, the
// certificate in PEM, and ca.key, its private key in PEM (PKCS #8), mode
// 0600. [LoadOrCreate] creates a new ECDSA P-256 CA, valid ten years, when
// both files are missing, and otherwise loads them. An operator may supply
// their own CA in these two files (ECDSA, RSA or Ed25519 key).
//
// Leaf certificates are ECDSA P-256, valid 24 hours (never beyond the CA),
// with a random 128-bit serial, for server authentication, carrying the
// name as a DNS SAN or, for an IP literal, an IP SAN. They are cached per
// name, at most 1024 of them, and minted again once less than half their
// lifetime is left, so a handshake never gets a certificate about to expire.
//
// Error contract:
//   - [LoadOrCreate] never replaces or repairs what is there: a folder with
//     only one of the two files, a file that does not parse, a key that does
//     not belong to the certificate, or a certificate that is not a CA or
//     has expired is an error naming the file, wrapping [ErrBadCA].
//   - [CA.Leaf] returns an error wrapping [ErrInvalidName] for a name that is
//     neither a DNS name nor an IP literal (names come from the client's
//     SNI, so they are untrusted).
package tlsca
