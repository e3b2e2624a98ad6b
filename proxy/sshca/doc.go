// Package sshca is the gateway's own SSH certificate authority for the SSH
// it terminates toward agents. The agent runs its unchanged ssh against the
// real host; the connection lands on the gateway, which answers with an
// OpenSSH host certificate for the name or address the agent dialled,
// signed by this CA. The operator adds one line to the agents' known_hosts
// (what `interlock ca ssh-known-hosts` prints, from [CA.KnownHostsLine]):
//
//	@cert-authority * ssh-ed25519 AAAA... interlock gateway SSH CA
//
// with "*" narrowed to patterns such as 127.0.0.2, db.example.com or
// *.corp if wanted. Upstream credentials never involve this CA.
//
// The CA lives in one folder (the gateway uses <state_dir>/ssh-ca, mode
// 0700): ca, the private key in OpenSSH PEM format, mode 0600, and ca.pub,
// its public key as an authorized_keys line with the comment "interlock
// gateway SSH CA". [LoadOrCreate] creates a new ed25519 CA when both files
// are missing, and otherwise loads them. An operator may supply their own
// unencrypted ed25519, ECDSA or RSA (2048 bits or more) key, for instance
// from ssh-keygen; an RSA CA signs with rsa-sha2-512, never SHA-1 ssh-rsa,
// which OpenSSH refuses.
//
// Host certificates ([CA.HostSigner]) name the given principals, are valid
// from 5 minutes ago (clients whose clock is behind) for 24 hours, carry a
// random 64-bit serial, the key id "interlock host <first principal>", and
// no critical options or extensions. OpenSSH checks the host name the user
// typed (lower-cased) or, with CheckHostIP, the address; the principal is
// the bare host even on a port other than 22. So principals are names in
// lower case and IP literals in canonical form ("[0:0::1]" becomes "::1").
// All certificates of one CA value certify the same ed25519 host key,
// generated at load and never written: clients trust the CA, not the key,
// so nothing is lost when it changes at restart. Certificates are cached
// per principal set, at most 1024 of them, and minted again once less than
// half their lifetime is left.
//
// On a port other than 22 ssh looks up "[host]:port" in known_hosts, then
// (OpenSSH 9.2, as tested) the bare host; patterns of either form work.
//
// For clients that cannot use certificates, [LoadOrCreateHostKey] keeps a
// plain host key per target in a file, and [KnownHostsLineForKey] prints the
// known_hosts line that pins it.
//
// Error contract:
//   - [LoadOrCreate] never replaces or repairs what is there: a folder with
//     only one of the two files, a file that does not parse, an encrypted
//     key, a public key that does not belong to the private key, or a
//     private key that group or others may access (OpenSSH refuses those
//     too) is an error naming the file, wrapping [ErrBadCA].
//     [LoadOrCreateHostKey] likewise, wrapping [ErrBadHostKey].
//   - [CA.HostSigner] returns an error wrapping [ErrInvalidPrincipal] for an
//     empty set (a certificate without principals is valid for every host),
//     more than 256 principals, or a principal that is empty, longer than
//     255 bytes, not UTF-8, or has white space, control characters, a comma,
//     a port, or a character with a meaning in OpenSSH patterns or
//     known_hosts (* ? ! # | @ [ ]): principals come from the address an
//     agent dialled, and OpenSSH matches host certificate principals as
//     patterns.
//   - [CA.KnownHostsLine] and [KnownHostsLineForKey] return an error
//     wrapping [ErrInvalidPattern] for a pattern or host that would break
//     the line (empty, white space, control characters, commas; for hosts
//     also the characters refused in principals and a port that is not 1
//     to 65535).
package sshca
