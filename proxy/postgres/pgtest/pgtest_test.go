package pgtest

import (
	"testing"
)

func TestStart(t *testing.T) {
	for name, o := range map[string]Options{
		"scram":     {},
		"md5":       {Auth: AuthMD5},
		"trust":     {Auth: AuthTrust, Host: "127.0.0.3"},
		"scram+tls": {TLS: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, o)
			s.CreateUser(t, "alice", "it's secret")
			s.Exec(t, "CREATE TABLE t (a int, b text); INSERT INTO t VALUES (1, 'x'), (2, NULL)")
			if got := s.Query(t, "SELECT a, b FROM t ORDER BY a"); got != "1|x\n2|" {
				t.Errorf("query: %q", got)
			}
			want := "SCRAM-SHA-256"
			if o.Auth == AuthMD5 {
				want = "md5"
			}
			if got := s.Query(t, "SELECT left(rolpassword, length('"+want+"')) FROM pg_authid WHERE rolname = 'alice'"); got != want {
				t.Errorf("alice's password is stored as %q, want %s", got, want)
			}
			if o.TLS {
				if got := s.Query(t, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); got != "t" {
					t.Errorf("superuser connection ssl = %q", got)
				}
			}
		})
	}
}
