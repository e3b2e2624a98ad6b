package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/proxy/tlsca"
)

// TestAdminTLS: with gateway.admin_tls the admin API speaks HTTPS only,
// the CLI verifies it with ca_file, and a renewed certificate is served
// without a restart.
func TestAdminTLS(t *testing.T) {
	e := newE2E(t)
	caDir := filepath.Join(e.dir, "admin-ca")
	certFile := filepath.Join(e.dir, "admin.crt")
	keyFile := filepath.Join(e.dir, "admin.key")
	first := writeLeaf(t, caDir, certFile, keyFile)
	caFile := filepath.Join(caDir, "ca.crt")
	e.gatewayExtra = fmt.Sprintf("  admin_tls: {cert_file: %s, key_file: %s, ca_file: %s}\n", certFile, keyFile, caFile)
	ca, err := tlsca.LoadOrCreate(caDir)
	if err != nil {
		t.Fatal(err)
	}
	pool := ca.Pool()
	e.adminScheme = "https"
	e.adminClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	e.writeConfig(fmt.Sprintf(`targets:
  - name: echo
    protocol: tcp
    address: 127.0.0.2:%d
`, freePort(t, "127.0.0.2")))
	e.start()

	if out := e.run("status"); !strings.Contains(out, "running (pid") {
		t.Errorf("interlock status over TLS does not reach the gateway:\n%s", out)
	}
	if out, err := e.runAs("alice", "approvals", "list"); err != nil {
		t.Errorf("interlock approvals list over TLS: %v\n%s", err, out)
	}

	// Plain HTTP is not served.
	resp, err := http.Get("http://" + e.admin + "/api/v1/status")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS admin listener: %s, want 400", resp.Status)
		}
	}

	served := func() []byte {
		conn, err := tls.Dial("tcp", e.admin, &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	if !bytes.Equal(served(), first) {
		t.Fatal("the admin listener does not serve the configured certificate")
	}
	// Renewal: new files in place; the gateway serves them within seconds.
	time.Sleep(10 * time.Millisecond) // a new modification time on coarse clocks
	renewed := writeLeaf(t, caDir, certFile, keyFile)
	waitFor(t, func() bool { return bytes.Equal(served(), renewed) }, "the renewed admin certificate to be served")
}
