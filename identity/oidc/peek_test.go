package oidc

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestPeekToken(t *testing.T) {
	hdr := b64(`{"alg":"RS256","kid":"k1","typ":"JWT"}`)
	tests := []struct {
		name  string
		raw   string
		want  unverified
		error string // "" for success
	}{
		{name: "token", raw: hdr + "." + b64(`{"iss":"https://idp.example/","sub":"a"}`) + ".sig",
			want: unverified{Alg: "RS256", KeyID: "k1", Issuer: "https://idp.example/"}},
		{name: "no iss", raw: hdr + "." + b64(`{"sub":"a"}`) + ".", want: unverified{Alg: "RS256", KeyID: "k1"}},
		{name: "null iss", raw: hdr + "." + b64(`{"iss":null}`) + ".", want: unverified{Alg: "RS256", KeyID: "k1"}},
		{name: "names are case-sensitive", raw: b64(`{"alg":"RS256","Alg":"none","KID":"x"}`) + "." + b64(`{"ISS":"https://evil.example/"}`) + ".",
			want: unverified{Alg: "RS256"}},
		{name: "kid not a string", raw: b64(`{"alg":"RS256","kid":7}`) + "." + b64(`{}`) + ".", error: "kid is not a string"},
		{name: "no kid", raw: b64(`{"alg":"ES256"}`) + "." + b64(`{}`) + ".x", want: unverified{Alg: "ES256"}},
		{name: "iss not a string", raw: hdr + "." + b64(`{"iss":42}`) + ".", error: "token claims: iss is not a string"},
		{name: "alg not a string", raw: b64(`{"alg":1}`) + "." + b64(`{}`) + ".", error: "token header: alg is not a string"},
		{name: "no alg", raw: b64(`{"typ":"JWT"}`) + "." + b64(`{}`) + ".", error: "no signature algorithm"},
		{name: "empty alg", raw: b64(`{"alg":""}`) + "." + b64(`{}`) + ".", error: "no signature algorithm"},
		{name: "header not JSON", raw: b64(`alg`) + "." + b64(`{}`) + ".", error: "token header: not a JSON object"},
		{name: "header a list", raw: b64(`["alg"]`) + "." + b64(`{}`) + ".", error: "token header: not a JSON object"},
		{name: "claims a string", raw: hdr + "." + b64(`"iss"`) + ".", error: "token claims: not a JSON object"},
		{name: "claims with trailing data", raw: hdr + "." + b64(`{} {}`) + ".", error: "token claims: not a JSON object"},
		{name: "padded base64", raw: hdr + "." + base64.URLEncoding.EncodeToString([]byte(`{"a":1}`)) + ".", error: "not base64url"},
		{name: "standard base64", raw: hdr + "." + base64.RawStdEncoding.EncodeToString([]byte(`{"iss":"???"}`)) + ".", error: "not base64url"},
		{name: "two parts", raw: hdr + ".x", error: "has 2 dot-separated parts"},
		{name: "empty", raw: "", error: "has 1 dot-separated parts"},
		{name: "JWE", raw: "a.b.c.d.e", error: "encrypted"},
		{name: "too large", raw: strings.Repeat("a", MaxTokenSize+1), error: "more than the 16384 accepted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := peekToken(tt.raw)
			if tt.error == "" {
				if err != nil || got != tt.want {
					t.Fatalf("peekToken = %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.error) {
				t.Fatalf("peekToken error %v; want one wrapping ErrInvalidToken saying %q", err, tt.error)
			}
		})
	}
}

// FuzzPeekIssuer feeds untrusted bytes to the pre-verification peek: it
// must never panic, must refuse with ErrInvalidToken, and what it accepts
// must be what a plain decode of the claims says.
func FuzzPeekIssuer(f *testing.F) {
	f.Add(b64(`{"alg":"RS256","kid":"k"}`) + "." + b64(`{"iss":"https://idp.example/"}`) + ".c2ln")
	f.Add("a.b.c")
	f.Add("..")
	f.Add(b64(`{"alg":"none"}`) + "." + b64(`{"iss":"\u0000"}`) + ".")
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := peekToken(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
			if strings.Contains(err.Error(), raw) && len(raw) > 8 {
				t.Fatalf("error %q quotes the token", err)
			}
			return
		}
		if got.Alg == "" {
			t.Fatal("accepted a token without alg")
		}
		p := strings.Split(raw, ".")
		if len(p) != 3 {
			t.Fatalf("accepted a token of %d parts", len(p))
		}
		b, err := base64.RawURLEncoding.DecodeString(p[1])
		if err != nil {
			t.Fatalf("accepted claims that are not base64url: %v", err)
		}
		var claims map[string]any
		if err := json.Unmarshal(b, &claims); err != nil {
			t.Fatalf("accepted claims that are not a JSON object: %v", err)
		}
		iss, _ := claims["iss"].(string)
		if iss != got.Issuer {
			t.Fatalf("issuer %q, a plain decode says %q", got.Issuer, iss)
		}
	})
}
