package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/interlock-dev/interlock/identity/adminauth"
	"github.com/interlock-dev/interlock/identity/keyfile"
	"github.com/interlock-dev/interlock/identity/oidc"
	"github.com/interlock-dev/interlock/proxy"
)

// gatewayStatus is the gateway's answer on /api/v1/status, and what
// `interlock status` prints next to the pinned kernel state.
type gatewayStatus struct {
	Version   string              `json:"version"`
	Mode      string              `json:"mode"`
	PID       int                 `json:"pid"`
	Ready     bool                `json:"ready"`
	Started   time.Time           `json:"started"`
	Listeners []listenerStatus    `json:"listeners"`
	Workloads []workloadStatus    `json:"workloads"`
	Guards    []guardStatus       `json:"guards,omitempty"`
	Targets   []targetStatus      `json:"targets"`
	Sessions  []proxy.SessionInfo `json:"sessions"`
	Logins    []loginStatus       `json:"logins,omitempty"`
	Policy    *policyState        `json:"policy,omitempty"`
}

// loginStatus is a workload's current OIDC login.
type loginStatus struct {
	Workload string    `json:"workload"`
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	Groups   []string  `json:"groups,omitempty"`
	Via      string    `json:"via"`
	Expires  time.Time `json:"expires"`
}

// guardStatus is a cgroup folder whose new children the kernel sends to
// the gateway until a pass has seen them.
type guardStatus struct {
	Path      string   `json:"path"`
	CgroupID  uint64   `json:"cgroup_id"`
	Watermark uint64   `json:"watermark"`
	Workloads []string `json:"workloads"`
}

type workloadStatus struct {
	Name     string `json:"name"`
	ID       uint32 `json:"id"`
	Match    string `json:"match"`
	Cgroup   string `json:"cgroup,omitempty"` // resolved folder below the cgroup root
	CgroupID uint64 `json:"cgroup_id,omitempty"`
	State    string `json:"state"` // "enforced" or "pending" (cgroup not found yet)
	Egress   string `json:"egress"`
}

type targetStatus struct {
	Name     string   `json:"name"`
	ID       uint32   `json:"id"`
	Protocol string   `json:"protocol"`
	Address  string   `json:"address"`
	Resolved []string `json:"resolved,omitempty"`
	Error    string   `json:"error,omitempty"`
}

func (g *gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	var metrics http.Handler = promhttp.HandlerFor(g.metrics, promhttp.HandlerOpts{Registry: g.metrics})
	if g.metricsToken != nil {
		metrics = g.requireMetricsToken(metrics)
	}
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !g.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(g.status())
	})
	g.approvalsAPI(mux)
	g.reloadAPI(mux)
	g.endSessionsAPI(mux)
	// Everything but metrics and health needs an administrator's identity.
	return g.adminAuth.Protect(mux, "/metrics", "/healthz", "/readyz")
}

// setUpAdminAuth loads the admin tokens and the OIDC verifier for the admin
// API. With neither, every API call is refused.
//
// Admin OIDC tokens are verified by a verifier of their own, over the
// identity.oidc issuers that have an admin_audience, each with that
// audience only: the workloads' verifier accepts the workloads' audience,
// and a workload's own login token must not make it an administrator.
// metricsTokenMin is the shortest metrics token accepted, as for admin
// tokens.
const metricsTokenMin = 16

// loadMetricsToken reads gateway.metrics_token_file: one token, not open
// to other users.
func loadMetricsToken(path string) ([]byte, error) {
	b, err := keyfile.ReadSecret(path, keyfile.Rules{What: "metrics token file", Forbidden: 0o007, Chmod: "640", Regular: true, Owner: true, MaxSize: 4096})
	if err != nil {
		return nil, fmt.Errorf("gateway.metrics_token_file: %w", err)
	}
	tok := bytes.TrimSpace(b)
	if len(tok) < metricsTokenMin || bytes.ContainsAny(tok, " \t\r\n") {
		return nil, fmt.Errorf("gateway.metrics_token_file: %s must hold one token of at least %d characters and no spaces", path, metricsTokenMin)
	}
	return tok, nil
}

// requireMetricsToken serves /metrics to the metrics token (Prometheus:
// authorization.credentials_file), or to an administrator.
func (g *gateway) requireMetricsToken(next http.Handler) http.Handler {
	admin := g.adminAuth.Require(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if ok && subtle.ConstantTimeCompare([]byte(tok), g.metricsToken) == 1 {
			next.ServeHTTP(w, r)
			return
		}
		admin.ServeHTTP(w, r)
	})
}

func (g *gateway) setUpAdminAuth(ctx context.Context) error {
	if f := g.cfg.Gateway.MetricsTokenFile; f != "" {
		tok, err := loadMetricsToken(f)
		if err != nil {
			return err
		}
		g.metricsToken = tok
	}
	var tokens *adminauth.Tokens
	if f := g.cfg.Gateway.AdminTokensFile; f != "" {
		t, err := adminauth.LoadTokens(f)
		if err != nil {
			return fmt.Errorf("admin tokens: %w", err)
		}
		tokens = t
		g.tokens = t // reloaded with the policy (g.reload)
	}
	var issuers []oidc.Issuer
	for _, o := range g.cfg.Identity.OIDC {
		if o.AdminAudience == "" {
			continue
		}
		issuers = append(issuers, oidc.Issuer{
			Name: o.Name, URL: o.Issuer, Audience: o.AdminAudience,
			GroupsClaim: o.GroupsClaim, SubjectClaim: o.SubjectClaim, ClockSkew: o.ClockSkew.Duration,
		})
	}
	var verifier adminauth.TokenVerifier
	if len(issuers) > 0 {
		v, err := oidc.New(ctx, issuers, oidc.Options{Logger: g.logger})
		if err != nil {
			return fmt.Errorf("admin OIDC issuers: %w", err)
		}
		verifier = adminauth.VerifierFunc(func(ctx context.Context, raw string) (adminauth.Claims, error) {
			c, err := v.VerifyAny(ctx, raw)
			if errors.Is(err, oidc.ErrIssuerUnavailable) {
				// An outage or the per-issuer key fetch limit: 503, and
				// no failed attempt against the caller's address.
				return adminauth.Claims{}, fmt.Errorf("%w: %w", adminauth.ErrUnavailable, err)
			}
			if err != nil {
				return adminauth.Claims{}, err
			}
			return adminauth.Claims{Issuer: c.Issuer, Subject: c.Subject, Groups: c.Groups}, nil
		})
	}
	g.adminAuth = adminauth.New(tokens, verifier, adminauth.WithLogger(g.logger))
	return nil
}

func (g *gateway) status() gatewayStatus {
	st := gatewayStatus{
		Version:  version,
		Mode:     g.mode(),
		PID:      os.Getpid(),
		Ready:    g.ready.Load(),
		Started:  g.started,
		Sessions: g.server.Active(),
	}
	if p := g.policyInfo(); p.SHA256 != "" {
		st.Policy = &p
	}
	if g.logins != nil {
		for _, l := range g.logins.List() {
			st.Logins = append(st.Logins, loginStatus{Workload: l.Workload, Subject: l.Identity.Subject, Issuer: l.Identity.Issuer,
				Groups: l.Identity.Groups, Via: l.Via, Expires: l.Expires})
		}
	}
	g.mu.Lock()
	st.Listeners = slices.Clone(g.listeners)
	g.mu.Unlock()

	resolved := map[uint32]string{}
	ids := map[uint32]uint64{}
	if g.watcher != nil {
		for _, b := range g.watcher.Current() {
			resolved[b.WorkloadID] = b.Path
			ids[b.WorkloadID] = b.CgroupID
		}
		for _, gd := range g.watcher.Guards() {
			gs := guardStatus{Path: gd.Path, CgroupID: gd.CgroupID, Watermark: gd.Watermark}
			for _, id := range gd.Workloads {
				gs.Workloads = append(gs.Workloads, workloadName(g.cfg, id))
			}
			st.Guards = append(st.Guards, gs)
		}
	}
	for i := range g.cfg.Workloads {
		w := &g.cfg.Workloads[i]
		ws := workloadStatus{Name: w.Name, ID: w.ID(), Egress: w.Egress.Default, State: "pending"}
		if w.Match.Cgroup != "" {
			ws.Match = "cgroup " + w.Match.Cgroup
		} else {
			ws.Match = "systemd_unit " + w.Match.SystemdUnit
		}
		if p, ok := resolved[w.ID()]; ok {
			ws.Cgroup, ws.CgroupID, ws.State = p, ids[w.ID()], "enforced"
		}
		if g.explicit {
			ws.State = "explicit"
		}
		st.Workloads = append(st.Workloads, ws)
	}

	var addrs map[uint32][]string
	var failing map[uint32]string
	if g.resolver != nil {
		res, fail := g.resolver.Resolved()
		addrs = map[uint32][]string{}
		for id, ps := range res {
			for _, p := range ps {
				addrs[id] = append(addrs[id], strings.TrimSuffix(strings.TrimSuffix(p.String(), "/32"), "/128"))
			}
		}
		failing = fail
	}
	for i := range g.cfg.Targets {
		t := &g.cfg.Targets[i]
		st.Targets = append(st.Targets, targetStatus{
			Name: t.Name, ID: t.ID(), Protocol: t.Protocol, Address: t.Address,
			Resolved: addrs[t.ID()], Error: failing[t.ID()],
		})
	}
	return st
}
