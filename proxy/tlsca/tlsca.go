package tlsca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/interlock-dev/interlock/identity/keyfile"
	"github.com/interlock-dev/interlock/proxy/mintcache"
)

// Sentinel errors.
var (
	// ErrBadCA: the CA folder holds something LoadOrCreate will not use.
	ErrBadCA = errors.New("unusable gateway CA")
	// ErrInvalidName: a leaf was asked for a name that is neither a DNS name
	// nor an IP literal.
	ErrInvalidName = errors.New("invalid server name")
)

// Files in the CA folder.
const (
	CertFile = "ca.crt"
	KeyFile  = "ca.key"
)

const (
	caCommonName = "interlock gateway CA"
	caYears      = 10
	leafLifetime = 24 * time.Hour
	// backdate covers clients whose clock is a little behind the gateway's.
	backdate = 5 * time.Minute
	// maxLeaves bounds the leaf cache: names come from clients' SNI.
	maxLeaves = 1024
)

// CA is the gateway's certificate authority. It is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	pool    *x509.CertPool

	now    func() time.Time // test seam
	leaves *mintcache.Cache[*tls.Certificate]
}

// LoadOrCreate loads the CA from dir, or creates it there (folder 0700,
// ca.key 0600, ca.crt 0644) when neither file exists. See the package
// documentation for what it refuses.
func LoadOrCreate(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating CA folder: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	keyPEM, certPEM, err := keyfile.ReadPair(keyPath, certPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return create(certPath, keyPath, time.Now())
	case err != nil:
		return nil, fmt.Errorf("loading CA: %w: %w", ErrBadCA, err)
	}
	ca, err := parse(certPEM, certPath, keyPEM, keyPath, time.Now())
	if err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	return ca, nil
}

// create makes a new CA and writes it; files it created are removed again
// when a later step fails, and files it did not create are never touched.
func create(certPath, keyPath string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("creating CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("creating CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: caCommonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.AddDate(caYears, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding CA key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})

	if err := keyfile.WriteNew(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing CA key: %w", err)
	}
	if err := keyfile.WriteNew(certPath, certPEM, 0o644); err != nil {
		os.Remove(keyPath)
		return nil, fmt.Errorf("writing CA certificate: %w", err)
	}
	if err := keyfile.SyncDir(filepath.Dir(keyPath)); err != nil {
		return nil, fmt.Errorf("writing CA: %w", err)
	}
	return parse(certPEM, certPath, keyPEM, keyPath, now)
}

// parse checks a CA certificate and key pair.
func parse(certPEM []byte, certPath string, keyPEM []byte, keyPath string, now time.Time) (*CA, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: %s: no CERTIFICATE PEM block", ErrBadCA, certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadCA, certPath, err)
	}
	switch {
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return nil, fmt.Errorf("%w: %s: not a CA certificate", ErrBadCA, certPath)
	case cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("%w: %s: key usage does not allow signing certificates", ErrBadCA, certPath)
	case now.After(cert.NotAfter):
		return nil, fmt.Errorf("%w: %s: expired at %s", ErrBadCA, certPath, cert.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		return nil, fmt.Errorf("%w: %s: not valid before %s", ErrBadCA, certPath, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadCA, keyPath, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: %s does not belong to %s", ErrBadCA, keyPath, certPath)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	c := &CA{
		cert:    cert,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		key:     key,
		pool:    pool,
		now:     time.Now,
	}
	c.leaves = mintcache.New[*tls.Certificate](maxLeaves, func() time.Time { return c.now() })
	return c, nil
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	return signer, nil
}

// randomSerial is a random positive serial number of at most 128 bits.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generating serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// Certificate is the CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// CertPEM is the CA certificate in PEM, for agents' trust stores.
func (c *CA) CertPEM() []byte { return append([]byte(nil), c.certPEM...) }

// Pool is a new pool holding only the CA certificate.
func (c *CA) Pool() *x509.CertPool { return c.pool.Clone() }

// Leaf returns a certificate for name, a DNS name or an IP literal (an IPv6
// literal may come in brackets; a zone is dropped). Names are compared
// without case and without a trailing dot. Concurrent calls for the same
// name share one minting.
func (c *CA) Leaf(name string) (*tls.Certificate, error) {
	key, ip, err := normalizeName(name)
	if err != nil {
		return nil, err
	}
	return c.leaves.Get(key, func() (*tls.Certificate, time.Time, error) { return c.mint(key, ip) })
}

// mint creates a leaf for key, which is normalised; ip is set for an IP.
func (c *CA) mint(key string, ip netip.Addr) (*tls.Certificate, time.Time, error) {
	now := c.now()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("minting certificate for %s: %w", key, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("minting certificate for %s: %w", key, err)
	}
	notBefore := now.Add(-backdate)
	if notBefore.Before(c.cert.NotBefore) {
		notBefore = c.cert.NotBefore
	}
	notAfter := now.Add(leafLifetime)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if len(key) <= 64 { // the X.509 upper bound for a common name
		tmpl.Subject.CommonName = key
	}
	if ip.IsValid() {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	} else {
		tmpl.DNSNames = []string{key}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, priv.Public(), c.key)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("minting certificate for %s: %w", key, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("minting certificate for %s: %w", key, err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}
	return cert, now.Add(notAfter.Sub(now) / 2), nil
}

// ServerConfig is a TLS server configuration (TLS 1.2 or later) that answers
// each handshake with a leaf for the server name the client sent (SNI), or
// for fallback, typically the IP the client dialled, when it sent none.
// With neither, the handshake fails.
func (c *CA) ServerConfig(fallback string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := hello.ServerName
			if name == "" {
				name = fallback
			}
			if name == "" {
				return nil, fmt.Errorf("%w: the client sent no server name and there is no fallback", ErrInvalidName)
			}
			return c.Leaf(name)
		},
	}
}

// normalizeName returns the cache key for name and, for an IP literal, the
// address.
func normalizeName(name string) (string, netip.Addr, error) {
	s := name
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		ip = ip.WithZone("").Unmap()
		return ip.String(), ip, nil
	}
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if !validDNSName(s) {
		return "", netip.Addr{}, fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	return s, netip.Addr{}, nil
}

// validDNSName accepts lower-case host names: labels of 1 to 63 letters,
// digits, hyphens and underscores, not starting or ending with a hyphen,
// 253 characters in all. Wildcards are not names a client dials.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
