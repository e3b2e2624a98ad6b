package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/proxy/tlsca"
)

// writeLeaf writes a certificate for 127.0.0.1 from the CA in caDir (a
// new one each call: the CA is loaded afresh, with no cache) and its key,
// and returns the certificate's DER.
func writeLeaf(t *testing.T, caDir, certFile, keyFile string) []byte {
	t.Helper()
	ca, err := tlsca.LoadOrCreate(caDir)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	return leaf.Certificate[0]
}

// TestAdminCertificateReload: a changed pair is served from the next
// handshake on; a change that does not load keeps the previous one.
func TestAdminCertificateReload(t *testing.T) {
	dir := t.TempDir()
	caDir, certFile, keyFile := filepath.Join(dir, "ca"), filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	first := writeLeaf(t, caDir, certFile, keyFile)
	c, err := loadAdminCertificate(&config.AdminTLS{CertFile: certFile, KeyFile: keyFile}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c.recheckAfter = 0
	served := func() []byte {
		t.Helper()
		cert, err := c.get(nil)
		if err != nil {
			t.Fatal(err)
		}
		return cert.Certificate[0]
	}
	if !bytes.Equal(served(), first) {
		t.Fatal("not the loaded certificate")
	}

	// Half a renewal: the new certificate, the old key.
	oldKey, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	writeLeaf(t, caDir, certFile, keyFile)
	if err := os.WriteFile(keyFile, oldKey, 0o600); err != nil {
		t.Fatal(err)
	}
	bumpModTime(t, certFile, keyFile)
	if !bytes.Equal(served(), first) {
		t.Error("a certificate that does not match its key replaced the served one")
	}
	// The rest of it.
	renewed := writeLeaf(t, caDir, certFile, keyFile)
	bumpModTime(t, certFile, keyFile)
	if !bytes.Equal(served(), renewed) {
		t.Error("the renewed pair is not served")
	}

	if _, err := loadAdminCertificate(&config.AdminTLS{CertFile: certFile, KeyFile: filepath.Join(dir, "missing.key")}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a missing key loaded")
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadAdminCertificate(&config.AdminTLS{CertFile: certFile, KeyFile: keyFile}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a key other users may read loaded")
	}
}

// bumpModTime gives the files a modification time no earlier write in the
// test had, whatever the file system's clock granularity.
func bumpModTime(t *testing.T, files ...string) {
	t.Helper()
	bumpModTimes++
	when := time.Now().Add(time.Duration(bumpModTimes) * time.Minute)
	for _, f := range files {
		if err := os.Chtimes(f, when, when); err != nil {
			t.Fatal(err)
		}
	}
}

var bumpModTimes int
