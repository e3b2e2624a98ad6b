package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStatusTokenFile: `interlock status` takes its admin credential from
// --token-file, as the other admin commands do, and from INTERLOCK_TOKEN
// without it; a token file that does not read is an error, not a silent
// kernel-only report.
func TestStatusTokenFile(t *testing.T) {
	g := adminTestGateway(t, "")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeAPI(w, http.StatusOK, gatewayStatus{Version: "test", Mode: "kernel", PID: 4242, Ready: true, Started: time.Now()})
	})
	srv := httptest.NewServer(g.adminAuth.Require(mux))
	defer srv.Close()
	cfg, tokenFile := adminTestConfig(t, srv)
	status := func(t *testing.T, args ...string) statusReport {
		t.Helper()
		out, err := runCLI(t, append([]string{"status", "--config", cfg, "-o", "json"}, args...)...)
		if err != nil {
			t.Fatalf("status %v: %v\n%s", args, err, out)
		}
		var r statusReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("status %v: %v\n%s", args, err, out)
		}
		return r
	}

	t.Setenv("INTERLOCK_TOKEN", "")
	if r := status(t, "--token-file", tokenFile); r.Gateway == nil || r.Gateway.PID != 4242 {
		t.Errorf("with --token-file: gateway %+v, error %q", r.Gateway, r.GatewayError)
	}
	if r := status(t); r.Gateway != nil || !strings.Contains(r.GatewayError, "401") {
		t.Errorf("without a token: gateway %+v, error %q; want a 401", r.Gateway, r.GatewayError)
	}
	t.Setenv("INTERLOCK_TOKEN", adminTestToken)
	if r := status(t); r.Gateway == nil || r.Gateway.PID != 4242 {
		t.Errorf("with INTERLOCK_TOKEN: gateway %+v, error %q", r.Gateway, r.GatewayError)
	}
	missing := filepath.Join(t.TempDir(), "none")
	if out, err := runCLI(t, "status", "--config", cfg, "--token-file", missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("status --token-file with a missing file: %v\n%s", err, out)
	}
}
