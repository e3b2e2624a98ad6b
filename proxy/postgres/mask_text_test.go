package postgres_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy/postgres"
)

// TestMaskOutsideResults: a value a statement reads can come back outside
// the result — in an error, a notice, a notification or a reported
// setting — and the detectors see those too.
func TestMaskOutsideResults(t *testing.T) {
	e := newEnv(t, envOptions{policy: procedural + `
masks:
  - name: pii
    detectors: [email]
`, rewriter: postgres.NewMaskRewriter})
	r := e.rawConn(t, nil)
	r.ready()
	for _, tc := range []struct{ sql, leak string }{
		{"SELECT email::int FROM customers WHERE id = 1", "error"},
		{"DO $$ BEGIN RAISE NOTICE 'found %', (SELECT email FROM customers WHERE id = 2); END $$", "notice"},
		{"LISTEN ch; SELECT pg_notify('ch', email) FROM customers WHERE id = 1", "notification"},
		{"SELECT set_config('application_name', email, false) FROM customers WHERE id = 2", "parameter status"},
	} {
		r.send(&pgproto3.Query{String: tc.sql})
		var got []string
		for {
			m, err := r.fe.Receive()
			if err != nil {
				t.Fatalf("%s: %v", tc.sql, err)
			}
			switch m := m.(type) {
			case *pgproto3.ErrorResponse:
				got = append(got, m.Message)
			case *pgproto3.NoticeResponse:
				got = append(got, m.Message)
			case *pgproto3.NotificationResponse:
				got = append(got, m.Payload)
			case *pgproto3.ParameterStatus:
				got = append(got, m.Value)
			case *pgproto3.DataRow:
				for _, v := range m.Values {
					got = append(got, string(v))
				}
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		all := strings.Join(got, " | ")
		if strings.Contains(all, "@example.") || !strings.Contains(all, "[masked:email]") {
			t.Errorf("%s (%s): %s", tc.sql, tc.leak, all)
		}
	}
}
