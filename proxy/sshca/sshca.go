package sshca

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/interlock-dev/interlock/identity/keyfile"
	"github.com/interlock-dev/interlock/proxy/mintcache"
)

// Sentinel errors.
var (
	// ErrBadCA: the CA folder holds something LoadOrCreate will not use.
	ErrBadCA = errors.New("unusable gateway SSH CA")
	// ErrBadHostKey: a host key file LoadOrCreateHostKey will not use.
	ErrBadHostKey = errors.New("unusable gateway SSH host key")
	// ErrInvalidPrincipal: a host certificate was asked for a name or
	// address that cannot be a principal.
	ErrInvalidPrincipal = errors.New("invalid SSH certificate principal")
	// ErrInvalidPattern: a host or pattern that cannot go into a
	// known_hosts line.
	ErrInvalidPattern = errors.New("invalid known_hosts host pattern")
)

// Files in the CA folder.
const (
	KeyFile       = "ca"
	PublicKeyFile = "ca.pub"
)

const (
	// Comment is the comment of ca.pub and of the @cert-authority line.
	Comment = "interlock gateway SSH CA"

	certLifetime = 24 * time.Hour
	// backdate covers clients whose clock is a little behind the gateway's.
	backdate = 5 * time.Minute
	// maxCerts bounds the certificate cache: principals come from the
	// addresses agents dial.
	maxCerts = 1024
	// maxPrincipals bounds one certificate; a target has a handful of names.
	maxPrincipals = 256
)

// CA is the gateway's SSH certificate authority. It is safe for concurrent
// use.
type CA struct {
	signer ssh.Signer // the CA key; RSA restricted to rsa-sha2-512
	// hostKey is the one key under every host certificate of this CA value.
	// It lives in memory only: clients trust the CA, not the key, so a
	// new key at each start costs nothing and leaves nothing to protect on
	// disk.
	hostKey ssh.Signer

	now   func() time.Time // test seam
	certs *mintcache.Cache[ssh.Signer]
}

// LoadOrCreate loads the CA from dir, or creates it there (folder 0700, ca
// 0600, ca.pub 0644) with a new ed25519 key when neither file exists. See
// the package documentation for what it refuses.
func LoadOrCreate(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating SSH CA folder: %w", err)
	}
	keyPath, pubPath := filepath.Join(dir, KeyFile), filepath.Join(dir, PublicKeyFile)
	keyPEM, pubLine, err := keyfile.ReadPair(keyPath, pubPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return create(keyPath, pubPath)
	case err != nil:
		return nil, fmt.Errorf("loading SSH CA: %w: %w", ErrBadCA, err)
	}
	ca, err := parse(keyPEM, keyPath, pubLine, pubPath)
	if err != nil {
		return nil, fmt.Errorf("loading SSH CA: %w", err)
	}
	return ca, nil
}

// create makes a new CA and writes it; files it created are removed again
// when a later step fails, and files it did not create are never touched.
func create(keyPath, pubPath string) (*CA, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("creating SSH CA key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, Comment)
	if err != nil {
		return nil, fmt.Errorf("encoding SSH CA key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding SSH CA public key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(block)
	pubLine := []byte(authorizedKey(sshPub) + " " + Comment + "\n")

	if err := keyfile.WriteNew(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing SSH CA key: %w", err)
	}
	if err := keyfile.WriteNew(pubPath, pubLine, 0o644); err != nil {
		os.Remove(keyPath)
		return nil, fmt.Errorf("writing SSH CA public key: %w", err)
	}
	if err := keyfile.SyncDir(filepath.Dir(keyPath)); err != nil {
		return nil, fmt.Errorf("writing SSH CA: %w", err)
	}
	ca, err := parse(keyPEM, keyPath, pubLine, pubPath)
	if err != nil {
		return nil, fmt.Errorf("creating SSH CA: %w", err)
	}
	return ca, nil
}

// parse checks a CA key pair.
func parse(keyPEM []byte, keyPath string, pubLine []byte, pubPath string) (*CA, error) {
	signer, err := parseSigner(keyPEM, false)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadCA, keyPath, err)
	}
	pub, _, options, rest, err := ssh.ParseAuthorizedKey(pubLine)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %w", ErrBadCA, pubPath, err)
	case len(options) > 0:
		return nil, fmt.Errorf("%w: %s: options before the key", ErrBadCA, pubPath)
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, fmt.Errorf("%w: %s: more than one line", ErrBadCA, pubPath)
	case !bytes.Equal(pub.Marshal(), signer.PublicKey().Marshal()):
		return nil, fmt.Errorf("%w: %s does not belong to %s", ErrBadCA, pubPath, keyPath)
	}
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("creating gateway host key: %w", err)
	}
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		return nil, fmt.Errorf("creating gateway host key: %w", err)
	}
	c := &CA{signer: signer, hostKey: hostKey, now: time.Now}
	c.certs = mintcache.New[ssh.Signer](maxCerts, func() time.Time { return c.now() })
	return c, nil
}

// authorizedKey is key in authorized_keys form, "type base64", without a
// comment or newline.
func authorizedKey(key ssh.PublicKey) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n")
}

// PublicKey is the CA's public key, what agents trust.
func (c *CA) PublicKey() ssh.PublicKey { return c.signer.PublicKey() }

// KnownHostsLine is the known_hosts line that makes an OpenSSH client trust
// host certificates of this CA for hosts matching patterns ("*" when none
// are given):
//
//	@cert-authority 127.0.0.2,db.example.com ssh-ed25519 AAAA... interlock gateway SSH CA
//
// Patterns use OpenSSH's syntax; a pattern with white space, a control
// character or a comma is an error wrapping [ErrInvalidPattern].
func (c *CA) KnownHostsLine(patterns ...string) (string, error) {
	if len(patterns) == 0 {
		patterns = []string{"*"}
	}
	for _, p := range patterns {
		if err := checkPattern(p); err != nil {
			return "", fmt.Errorf("writing known_hosts line: %w", err)
		}
	}
	return "@cert-authority " + strings.Join(patterns, ",") + " " + authorizedKey(c.PublicKey()) + " " + Comment, nil
}

// HostSigner returns a host key signer presenting a host certificate of this
// CA valid for principals: the host names and IP literals an agent may
// have dialled (see the package documentation for how they are compared).
// The set is what counts: order and duplicates do not matter. Concurrent
// calls for the same set share one minting.
func (c *CA) HostSigner(principals []string) (ssh.Signer, error) {
	names, err := normalizePrincipals(principals)
	if err != nil {
		return nil, err
	}
	key := strings.Join(names, ",") // commas cannot occur in a principal
	return c.certs.Get(key, func() (ssh.Signer, time.Time, error) { return c.mint(names) })
}

// mint signs a host certificate for principals, which are normalised,
// sorted and unique.
func (c *CA) mint(principals []string) (ssh.Signer, time.Time, error) {
	now := c.now()
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return nil, time.Time{}, fmt.Errorf("minting host certificate for %s: %w", principals[0], err)
	}
	validBefore := now.Add(certLifetime)
	cert := &ssh.Certificate{
		Key:             c.hostKey.PublicKey(),
		Serial:          binary.BigEndian.Uint64(serial[:]),
		CertType:        ssh.HostCert,
		KeyId:           "interlock host " + principals[0],
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-backdate).Unix()),
		ValidBefore:     uint64(validBefore.Unix()),
	}
	if err := cert.SignCert(rand.Reader, c.signer); err != nil {
		return nil, time.Time{}, fmt.Errorf("minting host certificate for %s: %w", principals[0], err)
	}
	signer, err := ssh.NewCertSigner(cert, c.hostKey)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("minting host certificate for %s: %w", principals[0], err)
	}
	return signer, now.Add(certLifetime / 2), nil
}
