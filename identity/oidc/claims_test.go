package oidc

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func claimsJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestGroupsFrom(t *testing.T) {
	tests := []struct {
		claims string
		want   []string
		error  string
	}{
		{claims: `{}`},
		{claims: `{"groups":null}`},
		{claims: `{"groups":[]}`},
		{claims: `{"groups":""}`},
		{claims: `{"groups":"dba"}`, want: []string{"dba"}},
		{claims: `{"groups":"dba support"}`, want: []string{"dba support"}},
		{claims: `{"groups":["dba","support"]}`, want: []string{"dba", "support"}},
		{claims: `{"groups":["dba",1]}`, error: `groups claim "groups": entry 1 is a number`},
		{claims: `{"groups":["dba",""]}`, error: "entry 1 is an empty string"},
		{claims: `{"groups":[["dba"]]}`, error: "entry 0 is a list"},
		{claims: `{"groups":{"dba":true}}`, error: "is an object, not a string or a list of strings"},
		{claims: `{"groups":true}`, error: "is a boolean"},
		{claims: `{"groups":7}`, error: "is a number"},
	}
	for _, tt := range tests {
		t.Run(tt.claims, func(t *testing.T) {
			got, err := groupsFrom(claimsJSON(t, tt.claims), "groups")
			if tt.error != "" {
				if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("error %v, want one saying %q", err, tt.error)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) || (tt.want == nil) != (got == nil) {
				t.Fatalf("groups %#v, %v; want %#v", got, err, tt.want)
			}
		})
	}
}

func TestSubjectFrom(t *testing.T) {
	tests := []struct {
		claims, want, error string
	}{
		{claims: `{"sub":"agent"}`, want: "agent"},
		{claims: `{}`, error: `token has no subject claim "sub"`},
		{claims: `{"sub":null}`, error: "token has no subject claim"},
		{claims: `{"sub":""}`, error: "is empty"},
		{claims: `{"sub":12}`, error: "is a number, not a string"},
		{claims: `{"sub":["a"]}`, error: "is a list, not a string"},
	}
	for _, tt := range tests {
		t.Run(tt.claims, func(t *testing.T) {
			got, err := subjectFrom(claimsJSON(t, tt.claims), "sub")
			if tt.error != "" {
				if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("error %v, want one saying %q", err, tt.error)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("subject %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestCheckTimes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const skew = 30 * time.Second
	tests := []struct {
		name, claims, error string
	}{
		{name: "valid", claims: `{"exp":1800000100,"nbf":1800000000,"iat":1800000000}`},
		{name: "fractional exp", claims: `{"exp":1800000000.5}`},
		{name: "expired within skew", claims: `{"exp":1799999971}`},
		{name: "expired beyond skew", claims: `{"exp":1799999969}`, error: "token expired at 2027-01-15T07:59:29Z (now 2027-01-15T08:00:00Z, clock skew 30s)"},
		{name: "no exp", claims: `{"nbf":1800000000}`, error: "token has no expiry"},
		{name: "null exp", claims: `{"exp":null}`, error: "token has no expiry"},
		{name: "exp a string", claims: `{"exp":"tomorrow"}`, error: "claim exp is not a date"},
		{name: "exp negative", claims: `{"exp":-1}`, error: "claim exp is not a date"},
		{name: "exp past year 9999", claims: `{"exp":1e300}`, error: "claim exp is not a date"},
		{name: "nbf within skew", claims: `{"exp":1800000100,"nbf":1800000029}`},
		{name: "nbf beyond skew", claims: `{"exp":1800000100,"nbf":1800000031}`, error: "token is not valid before"},
		{name: "nbf a list", claims: `{"exp":1800000100,"nbf":[1]}`, error: "claim nbf is not a date"},
		{name: "iat within skew", claims: `{"exp":1800000100,"iat":1800000029}`},
		{name: "iat beyond skew", claims: `{"exp":1800000100,"iat":1800000031}`, error: "issued in the future"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp, err := checkTimes(claimsJSON(t, tt.claims), now, skew)
			if tt.error != "" {
				if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("error %v, want one saying %q", err, tt.error)
				}
				return
			}
			if err != nil || exp.IsZero() {
				t.Fatalf("checkTimes = %s, %v", exp, err)
			}
		})
	}
}

func TestIssuerFill(t *testing.T) {
	ok := Issuer{Name: "corp", URL: "https://idp.example/", Audience: "interlock"}
	tests := []struct {
		name   string
		change func(*Issuer)
		error  string
	}{
		{name: "defaults", change: func(*Issuer) {}},
		{name: "no name", change: func(i *Issuer) { i.Name = "" }, error: "name is empty"},
		{name: "no url", change: func(i *Issuer) { i.URL = "" }, error: "url is empty"},
		{name: "relative url", change: func(i *Issuer) { i.URL = "idp.example" }, error: "not an absolute http(s) URL"},
		{name: "other scheme", change: func(i *Issuer) { i.URL = "ftp://idp.example/" }, error: "not an absolute http(s) URL"},
		{name: "query", change: func(i *Issuer) { i.URL = "https://idp.example/?tenant=1" }, error: "has a query"},
		{name: "no audience", change: func(i *Issuer) { i.Audience = "" }, error: "audience is empty"},
		{name: "negative skew", change: func(i *Issuer) { i.ClockSkew = -time.Second }, error: "out of range"},
		{name: "huge skew", change: func(i *Issuer) { i.ClockSkew = time.Hour }, error: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := ok
			tt.change(&is)
			err := is.fill()
			if tt.error != "" {
				if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("error %v, want one saying %q", err, tt.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if is.SubjectClaim != "sub" || is.GroupsClaim != "groups" || is.ClockSkew != 30*time.Second {
				t.Fatalf("defaults not filled: %+v", is)
			}
		})
	}
	if _, err := New(t.Context(), []Issuer{ok, ok}, Options{}); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "configured twice") {
		t.Fatalf("two issuers of one name: %v", err)
	}
}
