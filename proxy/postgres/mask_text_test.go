package postgres_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy/postgres"
)

// emailDetectorConn is a raw connection, ready, through a gateway that
// allows procedural statements and masks emails wherever they are.
func emailDetectorConn(t *testing.T) *raw {
	t.Helper()
	e := newEnv(t, envOptions{policy: procedural + `
masks:
  - name: pii
    detectors: [email]
`, rewriter: postgres.NewMaskRewriter})
	r := e.rawConn(t, nil)
	r.ready()
	return r
}

// TestMaskOutsideResults: a value a statement reads can come back outside
// the result — in an error, a notice, a notification or a reported
// setting — and the detectors see those too.
func TestMaskOutsideResults(t *testing.T) {
	r := emailDetectorConn(t)
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

// TestMaskNoticeFields: a RAISE sets an error's or notice's schema,
// table, column, data type and constraint names to anything, a value
// included; the detectors see them as they see its message.
func TestMaskNoticeFields(t *testing.T) {
	r := emailDetectorConn(t)
	const using = `USING DETAIL = v, HINT = v, COLUMN = v, TABLE = v, SCHEMA = v, DATATYPE = v, CONSTRAINT = v`
	for _, sql := range []string{
		`DO $$ DECLARE v text := (SELECT email FROM customers WHERE id = 1); BEGIN RAISE NOTICE 'n' ` + using + `; END $$`,
		`DO $$ DECLARE v text := (SELECT email FROM customers WHERE id = 1); BEGIN RAISE EXCEPTION 'e' ` + using + `; END $$`,
	} {
		r.send(&pgproto3.Query{String: sql})
		var fields []string
		for {
			m, err := r.fe.Receive()
			if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			var er *pgproto3.ErrorResponse
			switch m := m.(type) {
			case *pgproto3.ErrorResponse:
				er = m
			case *pgproto3.NoticeResponse:
				er = (*pgproto3.ErrorResponse)(m)
			}
			if er != nil {
				fields = append(fields, er.Detail, er.Hint, er.ColumnName, er.TableName, er.SchemaName, er.DataTypeName, er.ConstraintName)
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		if len(fields) != 7 {
			t.Fatalf("%s: fields %q", sql, fields)
		}
		for i, f := range fields {
			if f != "[masked:email]" {
				t.Errorf("%s: field %d = %q", sql, i, f)
			}
		}
	}
}
