package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/identity/keyfile"
)

// adminCertificate is the admin API's certificate (gateway.admin_tls). It
// is read again when either file changes, so a renewed certificate needs
// no restart; a change that does not load keeps the previous certificate
// in service, with a warning.
type adminCertificate struct {
	certFile, keyFile string
	logger            *slog.Logger

	mu              sync.Mutex
	cert            *tls.Certificate
	certMod, keyMod time.Time // of the files last tried
	checked         time.Time // when the files' times were last read
	recheckAfter    time.Duration
}

// loadAdminCertificate reads the certificate and key; the gateway does not
// start when they do not load.
func loadAdminCertificate(t *config.AdminTLS, logger *slog.Logger) (*adminCertificate, error) {
	c := &adminCertificate{certFile: t.CertFile, keyFile: t.KeyFile, logger: logger, recheckAfter: time.Second}
	cert, certMod, keyMod, err := c.read()
	if err != nil {
		return nil, fmt.Errorf("gateway.admin_tls: %w", err)
	}
	c.cert, c.certMod, c.keyMod, c.checked = cert, certMod, keyMod, time.Now()
	return c, nil
}

func (c *adminCertificate) read() (*tls.Certificate, time.Time, time.Time, error) {
	certMod, err := modTime(c.certFile)
	if err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	keyMod, err := modTime(c.keyFile)
	if err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	key, err := keyfile.ReadPrivate(c.keyFile)
	if err != nil {
		return nil, time.Time{}, time.Time{}, fmt.Errorf("reading the admin key: %w", err)
	}
	chain, err := os.ReadFile(c.certFile)
	if err != nil {
		return nil, time.Time{}, time.Time{}, fmt.Errorf("reading the admin certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, time.Time{}, time.Time{}, fmt.Errorf("%s and %s: %w", c.certFile, c.keyFile, err)
	}
	return &cert, certMod, keyMod, nil
}

func modTime(path string) (time.Time, error) {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}, err
	}
	return st.ModTime(), nil
}

// get is tls.Config.GetCertificate. The files' times are looked at no
// more than once a second; each change is tried once (a renewal that
// writes the certificate before the key loads when the key lands).
func (c *adminCertificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) < c.recheckAfter {
		return c.cert, nil
	}
	c.checked = time.Now()
	certMod, errCert := modTime(c.certFile)
	keyMod, errKey := modTime(c.keyFile)
	if errCert != nil || errKey != nil || certMod.Equal(c.certMod) && keyMod.Equal(c.keyMod) {
		return c.cert, nil
	}
	c.certMod, c.keyMod = certMod, keyMod
	cert, _, _, err := c.read()
	if err != nil {
		c.logger.Warn("admin certificate changed but does not load; serving the previous one", "error", err)
		return c.cert, nil
	}
	c.cert = cert
	c.logger.Info("admin certificate reloaded", "cert_file", c.certFile)
	return c.cert, nil
}

// adminListener wraps the admin listener in TLS when gateway.admin_tls is
// set.
func adminListener(ln net.Listener, cfg *config.Config, logger *slog.Logger) (net.Listener, error) {
	t := cfg.Gateway.AdminTLS
	if t == nil {
		return ln, nil
	}
	c, err := loadAdminCertificate(t, logger)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(ln, &tls.Config{GetCertificate: c.get, MinVersion: tls.VersionTLS12}), nil
}

// adminHTTPClient is the client the CLI calls the admin API with: with
// gateway.admin_tls it verifies the gateway's certificate against ca_file
// (or the system's roots).
func adminHTTPClient(cfg *config.Config) (*http.Client, error) {
	t := cfg.Gateway.AdminTLS
	if t == nil {
		return http.DefaultClient, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("gateway.admin_tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("gateway.admin_tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}}, nil
}
