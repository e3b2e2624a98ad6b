package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIdentityOIDC(t *testing.T) {
	dir := t.TempDir()
	const target = "targets:\n  - {name: echo, protocol: tcp, address: \"127.0.0.2:7000\"}\n"
	issuers := func(body string) string { return target + "identity:\n  oidc:\n" + body }
	tests := []struct{ name, yaml, want string }{
		{"no issuer url", issuers("    - {name: corp, audience: interlock}\n"), "identity.oidc[0].issuer: the issuer URL is required"},
		{"not a url", issuers("    - {name: corp, issuer: \"not a url\", audience: interlock}\n"), `identity.oidc[0].issuer: "not a url" is not an http(s) URL`},
		{"plain http off loopback", issuers("    - {name: corp, issuer: \"http://idp.example/\", audience: interlock}\n"), "plain http is accepted only on loopback"},
		{"no audience", issuers("    - {name: corp, issuer: \"https://idp.example/\"}\n"), "identity.oidc[0].audience: required"},
		{"bad name", issuers("    - {name: Corp, issuer: \"https://idp.example/\", audience: a}\n"), `identity.oidc[0].name: "Corp" is not a valid issuer name`},
		{"duplicate", issuers("    - {name: corp, issuer: \"https://a.example/\", audience: a}\n    - {name: corp, issuer: \"https://b.example/\", audience: a}\n"), "identity.oidc[1].name: duplicate"},
		{"admin audience is the workloads'", issuers("    - {name: corp, issuer: \"https://idp.example/\", audience: a, admin_audience: a}\n"), `identity.oidc[0].admin_audience: "a" is also the workloads' audience`},
		{"skew", issuers("    - {name: corp, issuer: \"https://idp.example/\", audience: a, clock_skew: 1h}\n"), "identity.oidc[0].clock_skew: 1h0m0s is out of range"},
		{"unknown issuer", target + "workloads:\n  - {name: a, match: {cgroup: /a}, identity: {oidc: corp}}\n", `workloads[0].identity.oidc: no issuer "corp" in identity.oidc`},
		{"static and oidc", issuers("    - {name: corp, issuer: \"https://idp.example/\", audience: a}\n") + "workloads:\n  - {name: a, match: {cgroup: /a}, identity: {oidc: corp, subject: s}}\n", "takes its subject and groups from the token"},
		{"open admin tokens", "gateway:\n  admin_tokens_file: " + filepath.Join(dir, "open.yaml") + "\n" + target, "is open to other users"},
	}
	if err := os.WriteFile(filepath.Join(dir, "open.yaml"), []byte("[]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "demo.yaml"), []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	c, err := Parse(filepath.Join(dir, "demo.yaml"), []byte(issuers("    - {name: corp, issuer: \"http://127.0.0.1:4444/\", audience: interlock}\n")+
		"workloads:\n  - {name: support, match: {cgroup: /agents/support}, identity: {oidc: corp}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := c.OIDCIssuer("corp")
	if o == nil || o.GroupsClaim != "groups" || o.SubjectClaim != "sub" || o.ClockSkew.Duration != 30*time.Second {
		t.Errorf("defaults: %+v", o)
	}
	if w := c.Workload("support"); w.Identity.Subject != "" || w.Identity.OIDC != "corp" {
		t.Errorf("an OIDC workload got a static subject: %+v", w.Identity)
	}
}
