package sshca

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/interlock-dev/interlock/identity/keyfile"
)

// hostKeyComment is the comment inside host key files the gateway creates.
const hostKeyComment = "interlock gateway host key"

// LoadOrCreateHostKey loads the plain host key at path, or creates a new
// ed25519 one there (mode 0600, its folder 0700) when the file does not
// exist. It is the alternative to host certificates for clients that
// cannot use them: the operator pins the key with [KnownHostsLineForKey].
// An operator may supply their own ed25519, ECDSA or RSA key (RSA signs
// with rsa-sha2-512 or rsa-sha2-256 only). A file that is group or world
// accessible, does not parse or is encrypted is an error naming it,
// wrapping [ErrBadHostKey]; it is never replaced.
func LoadOrCreateHostKey(path string) (ssh.Signer, error) {
	keyPEM, err := keyfile.ReadPrivate(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return createHostKey(path)
	case err != nil:
		return nil, fmt.Errorf("loading host key: %w: %s: %w", ErrBadHostKey, path, err)
	}
	signer, err := parseSigner(keyPEM, true)
	if err != nil {
		return nil, fmt.Errorf("loading host key: %w: %s: %w", ErrBadHostKey, path, err)
	}
	return signer, nil
}

func createHostKey(path string) (ssh.Signer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating host key folder: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("creating host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, hostKeyComment)
	if err != nil {
		return nil, fmt.Errorf("encoding host key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(block)
	if err := keyfile.WriteNew(path, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing host key: %w", err)
	}
	if err := keyfile.SyncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("writing host key: %w", err)
	}
	signer, err := parseSigner(keyPEM, true)
	if err != nil {
		return nil, fmt.Errorf("creating host key: %w: %s: %w", ErrBadHostKey, path, err)
	}
	return signer, nil
}

// KnownHostsLineForKey is the plain known_hosts line pinning key for hosts,
// each "host" or "host:port" ("[::1]:2222" for an IPv6 address with a
// port). A host on port 22 is written bare, one on any other port as
// "[host]:port", as ssh looks it up; names are lower-cased and IP literals
// written canonically. Duplicates are dropped. A host that is empty, has
// white space, control or OpenSSH pattern characters, or a bad port is an
// error wrapping [ErrInvalidPattern].
//
//	[127.0.0.2]:2222,db.example.com ssh-ed25519 AAAA...
func KnownHostsLineForKey(hosts []string, key ssh.PublicKey) (string, error) {
	if key == nil {
		return "", errors.New("writing known_hosts line: no key")
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return "", errors.New("writing known_hosts line: a certificate is trusted through its CA (CA.KnownHostsLine), not pinned")
	}
	if len(hosts) == 0 {
		return "", fmt.Errorf("writing known_hosts line: %w: no hosts", ErrInvalidPattern)
	}
	formatted := make([]string, 0, len(hosts))
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		f, err := knownHostsHost(h)
		if err != nil {
			return "", fmt.Errorf("writing known_hosts line: %w: %q: %w", ErrInvalidPattern, h, err)
		}
		if !seen[f] {
			seen[f] = true
			formatted = append(formatted, f)
		}
	}
	return strings.Join(formatted, ",") + " " + authorizedKey(key), nil
}
