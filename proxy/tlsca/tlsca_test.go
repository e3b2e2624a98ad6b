package tlsca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := LoadOrCreate(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"": 0o700, KeyFile: 0o600, CertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", filepath.Join(dir, name), fi.Mode().Perm(), want)
		}
	}

	cert := ca.Certificate()
	switch {
	case cert.Subject.CommonName != "interlock gateway CA":
		t.Errorf("CA common name %q", cert.Subject.CommonName)
	case !cert.IsCA || !cert.BasicConstraintsValid:
		t.Error("CA certificate is not a CA")
	case cert.MaxPathLen != 0 || !cert.MaxPathLenZero:
		t.Errorf("MaxPathLen %d, zero %v; want 0", cert.MaxPathLen, cert.MaxPathLenZero)
	case cert.KeyUsage&x509.KeyUsageCertSign == 0:
		t.Errorf("key usage %v lacks cert sign", cert.KeyUsage)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life < 10*365*24*time.Hour || life > 10*366*24*time.Hour+time.Hour {
		t.Errorf("CA validity %v, want 10 years", life)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key %T, want ECDSA P-256", cert.PublicKey)
	}

	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) {
		t.Error("reloading gave another CA certificate")
	}
	if !again.key.Public().(*ecdsa.PublicKey).Equal(ca.key.Public()) {
		t.Error("reloading gave another CA key")
	}
	onDisk, _ := os.ReadFile(filepath.Join(dir, CertFile))
	if !bytes.Equal(onDisk, ca.CertPEM()) {
		t.Error("CertPEM differs from ca.crt")
	}
	// A leaf from the reloaded CA verifies against the first one's pool.
	leaf, err := again.Leaf("db.internal")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "db.internal", Roots: ca.Pool()}); err != nil {
		t.Errorf("leaf of the reloaded CA: %v", err)
	}
}

// writeCA writes a certificate made from tmpl (self-signed, or signed by
// parent) and its key into dir.
func writeCA(t *testing.T, dir string, tmpl *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, CertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(t, filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOrCreateRefuses(t *testing.T) {
	other := t.TempDir()
	if _, err := LoadOrCreate(other); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := os.ReadFile(filepath.Join(other, KeyFile))
	caTemplate := func(mod func(*x509.Certificate)) *x509.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "test"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		mod(tmpl)
		return tmpl
	}

	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr string
	}{
		{"only the key", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, KeyFile), otherKey)
		}, "ca.crt is missing"},
		{"only the certificate", func(t *testing.T, dir string) {
			LoadOrCreate(dir)
			os.Remove(filepath.Join(dir, KeyFile))
		}, "ca.key is missing"},
		{"garbage certificate", func(t *testing.T, dir string) {
			LoadOrCreate(dir)
			write(t, filepath.Join(dir, CertFile), []byte("not a certificate"))
		}, "no CERTIFICATE PEM block"},
		{"garbage key", func(t *testing.T, dir string) {
			LoadOrCreate(dir)
			write(t, filepath.Join(dir, KeyFile), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
		}, "ca.key"},
		{"key of another CA", func(t *testing.T, dir string) {
			LoadOrCreate(dir)
			write(t, filepath.Join(dir, KeyFile), otherKey)
		}, "does not belong to"},
		{"not a CA", func(t *testing.T, dir string) {
			writeCA(t, dir, caTemplate(func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature }))
		}, "not a CA certificate"},
		{"expired", func(t *testing.T, dir string) {
			writeCA(t, dir, caTemplate(func(c *x509.Certificate) { c.NotAfter = time.Now().Add(-time.Minute) }))
		}, "expired at"},
		{"key readable by the group", func(t *testing.T, dir string) {
			LoadOrCreate(dir)
			if err := os.Chmod(filepath.Join(dir, KeyFile), 0o640); err != nil {
				t.Fatal(err)
			}
		}, "mode 0640, which lets others read or change it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			tt.setup(t, dir)
			before := snapshot(t, dir)
			_, err := LoadOrCreate(dir)
			if !errors.Is(err, ErrBadCA) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LoadOrCreate = %v, want ErrBadCA saying %q", err, tt.wantErr)
			}
			if after := snapshot(t, dir); after != before {
				t.Errorf("LoadOrCreate changed the folder:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// snapshot describes the files of dir and their content.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		b.WriteString(e.Name() + "=" + string(data) + ";")
	}
	return b.String()
}

func TestLoadsOperatorCA(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, dir, &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "corp CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	})
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("db.internal")
	if err != nil {
		t.Fatal(err)
	}
	// The CA ends within the hour: the leaf may not outlive it.
	if leaf.Leaf.NotAfter.After(ca.Certificate().NotAfter) {
		t.Errorf("leaf ends %v, after its CA %v", leaf.Leaf.NotAfter, ca.Certificate().NotAfter)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "db.internal", Roots: ca.Pool()}); err != nil {
		t.Error(err)
	}
}

func TestLeaf(t *testing.T) {
	ca := newCA(t)
	tests := []struct {
		name     string // asked for
		verifyAs string // the name a client checks
		otherAs  string // a name the leaf must not pass for
		isIP     bool
	}{
		{"db.internal", "db.internal", "other.internal", false},
		{"DB.Internal.", "db.internal", "db.internal.evil", false},
		{"127.0.0.2", "127.0.0.2", "127.0.0.3", true},
		{"::1", "::1", "::2", true},
		{"[::1]", "::1", "127.0.0.1", true},
		{"::ffff:127.0.0.2", "127.0.0.2", "127.0.0.1", true},
		{"under_score.svc", "under_score.svc", "db.internal", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := ca.Leaf(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			leaf := cert.Leaf
			opts := x509.VerifyOptions{DNSName: tt.verifyAs, Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
			if _, err := leaf.Verify(opts); err != nil {
				t.Errorf("verifying as %s: %v", tt.verifyAs, err)
			}
			opts.DNSName = tt.otherAs
			if _, err := leaf.Verify(opts); err == nil {
				t.Errorf("leaf for %s verifies as %s", tt.name, tt.otherAs)
			}
			if tt.isIP != (len(leaf.IPAddresses) == 1 && len(leaf.DNSNames) == 0) ||
				!tt.isIP != (len(leaf.DNSNames) == 1 && len(leaf.IPAddresses) == 0) {
				t.Errorf("SANs: DNS %v IP %v", leaf.DNSNames, leaf.IPAddresses)
			}
			if life := time.Until(leaf.NotAfter); life < 23*time.Hour || life > 24*time.Hour {
				t.Errorf("leaf valid for another %v, want 24h", life)
			}
			if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
				t.Errorf("leaf key %T, want ECDSA P-256", leaf.PublicKey)
			}
			if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %v", leaf.SerialNumber)
			}
			if leaf.IsCA || len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
				t.Errorf("leaf IsCA %v, ext key usage %v", leaf.IsCA, leaf.ExtKeyUsage)
			}
			if !bytes.Equal(leaf.RawIssuer, ca.Certificate().RawSubject) {
				t.Error("leaf not issued by the CA")
			}
		})
	}
}

func TestLeafInvalidNames(t *testing.T) {
	ca := newCA(t)
	for _, name := range []string{
		"", ".", "a b", "a..b", "x/y", "db.internal:5432", "*.example.com", "-x.internal",
		"x-.internal", "é.internal", "a\x00b", strings.Repeat("a", 64) + ".internal",
		strings.Repeat("a.", 127) + "aa",
	} {
		if _, err := ca.Leaf(name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Leaf(%q) = %v, want ErrInvalidName", name, err)
		}
	}
}

func TestLeafCache(t *testing.T) {
	ca := newCA(t)
	now := time.Now()
	ca.now = func() time.Time { return now }

	first, err := ca.Leaf("db.internal")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := ca.Leaf("DB.internal."); again != first {
		t.Error("same name, second call: a new certificate")
	}
	now = now.Add(11 * time.Hour)
	if again, _ := ca.Leaf("db.internal"); again != first {
		t.Error("11h later: a new certificate, want the cached one")
	}
	now = now.Add(2 * time.Hour) // 13h: less than half the lifetime left
	fresh, err := ca.Leaf("db.internal")
	if err != nil {
		t.Fatal(err)
	}
	if fresh == first || fresh.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Error("13h later: still the first certificate, want a fresh one")
	}
	if !fresh.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Error("refreshed certificate does not last longer")
	}
}

func TestLeafCacheBounded(t *testing.T) {
	ca := newCA(t)
	ca.leaves.Max = 4
	for i := range 20 {
		if _, err := ca.Leaf(string(rune('a'+i)) + ".internal"); err != nil {
			t.Fatal(err)
		}
	}
	n := ca.leaves.Len()
	if n != 4 {
		t.Errorf("cache holds %d leaves, want 4", n)
	}
}

func TestLeafConcurrent(t *testing.T) {
	ca := newCA(t)
	names := []string{"a.internal", "b.internal", "127.0.0.2", "::1"}
	const workers = 16
	got := make([][]*tls.Certificate, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for _, name := range names {
				cert, err := ca.Leaf(name)
				if err != nil {
					t.Error(err)
					return
				}
				got[w] = append(got[w], cert)
			}
		})
	}
	wg.Wait()
	for w := range workers {
		for i, cert := range got[w] {
			if cert != got[0][i] {
				t.Errorf("worker %d got another certificate for %s", w, names[i])
			}
			if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: names[i], Roots: ca.Pool()}); err != nil {
				t.Error(err)
			}
		}
	}
}

// handshake runs a TLS handshake over loopback TCP (net.Pipe is unbuffered:
// a client that fails verification and a server still writing its flight
// would block each other) and returns both sides' errors and what the
// server saw.
func handshake(t *testing.T, server *tls.Config, client *tls.Config) (serverState tls.ConnectionState, serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			serverErr = err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		srv := tls.Server(c, server)
		serverErr = srv.Handshake()
		serverState = srv.ConnectionState()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	clientErr = tls.Client(c, client).Handshake()
	c.Close()
	<-done
	return serverState, serverErr, clientErr
}

func TestServerConfigHandshake(t *testing.T) {
	ca := newCA(t)
	tests := []struct {
		name       string
		fallback   string
		serverName string // the client's; an IP is not sent as SNI
		wantSNI    string // what the server sees
		wantErr    bool
	}{
		{name: "SNI", fallback: "127.0.0.2", serverName: "db.internal", wantSNI: "db.internal"},
		{name: "no SNI, fallback IP", fallback: "127.0.0.2", serverName: "127.0.0.2"},
		{name: "no SNI, fallback IPv6", fallback: "::1", serverName: "::1"},
		{name: "no SNI, fallback is not what the client dialled", fallback: "127.0.0.2", serverName: "127.0.0.3", wantErr: true},
		{name: "no SNI, no fallback", serverName: "127.0.0.2", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ca.ServerConfig(tt.fallback)
			if cfg.MinVersion != tls.VersionTLS12 {
				t.Errorf("MinVersion %x", cfg.MinVersion)
			}
			state, serverErr, clientErr := handshake(t, cfg, &tls.Config{ServerName: tt.serverName, RootCAs: ca.Pool()})
			if tt.wantErr {
				if clientErr == nil {
					t.Fatal("handshake succeeded")
				}
				return
			}
			if serverErr != nil || clientErr != nil {
				t.Fatalf("handshake: server %v, client %v", serverErr, clientErr)
			}
			if state.ServerName != tt.wantSNI {
				t.Errorf("server saw SNI %q, want %q", state.ServerName, tt.wantSNI)
			}
		})
	}
}
