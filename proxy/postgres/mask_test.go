package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
)

// testMasker compiles a real policy with one mask: the email column of any
// table, ssn of public.customers only, and the email and card detectors.
func testMasker(t *testing.T) *policy.Masker {
	t.Helper()
	p, err := policy.Compile(policy.Config{Masks: []policy.MaskConfig{
		{Name: "pii", Columns: []string{"email", "public.customers.ssn"}, Detectors: []string{"email", "credit_card"}},
	}}, policy.Env{Targets: map[string]string{"shop": "postgres"}})
	if err != nil {
		t.Fatal(err)
	}
	m := p.Masker(policy.Request{Target: policy.Target{Name: "shop", Protocol: "postgres"}})
	if m == nil {
		t.Fatal("no masker for shop")
	}
	return m
}

// fakeCatalog answers the rewriter's catalog lookups: OID 100 is
// public.customers with columns id, email, ssn, note; OID 200 is
// public.orders.
type fakeCatalog struct{}

func (fakeCatalog) Query(_ context.Context, sql string, args ...any) ([][]string, error) {
	switch {
	case strings.Contains(sql, "c.relname FROM"):
		switch args[0] {
		case uint32(100):
			return [][]string{{"public", "customers"}}, nil
		case uint32(200):
			return [][]string{{"public", "orders"}}, nil
		}
		return nil, nil
	case strings.Contains(sql, "attname"):
		return [][]string{{"id"}, {"email"}, {"ssn"}, {"note"}}, nil
	case strings.Contains(sql, "|| '.' ||"):
		return [][]string{{"public.customers"}}, nil
	}
	return nil, errors.New("unexpected catalog query: " + sql)
}

func (f fakeCatalog) TableName(ctx context.Context, oid uint32) (string, error) {
	if oid == 0 {
		return "", nil
	}
	return lookUpTableName(ctx, f.Query, oid)
}

func field(name string, table, typ uint32) pgproto3.FieldDescription {
	return pgproto3.FieldDescription{Name: []byte(name), TableOID: table, DataTypeOID: typ}
}

func TestMaskRows(t *testing.T) {
	rw := NewMaskRewriter(nil, testMasker(t), fakeCatalog{})
	rd := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		field("id", 100, 23), field("email", 100, oidText), field("ssn", 100, oidText),
		field("note", 100, oidText), field("ssn", 200, oidText),
	}}
	if err := rw.Describe(rd, nil); err != nil {
		t.Fatal(err)
	}
	dr := &pgproto3.DataRow{Values: [][]byte{
		[]byte("1"), []byte("ada@example.com"), []byte("123-45-6789"),
		[]byte("paid with 4111 1111 1111 1111, mail bob@example.org"), []byte("other table ssn"),
	}}
	hits := rw.Row(dr)
	want := []string{"1", "[masked]", "[masked]", "paid with [masked:credit_card], mail [masked:email]", "other table ssn"}
	for i, w := range want {
		if string(dr.Values[i]) != w {
			t.Errorf("column %d = %q, want %q", i, dr.Values[i], w)
		}
	}
	if hits["pii"] != 4 {
		t.Errorf("hits %v, want 4 for pii", hits)
	}

	// NULL stays NULL, even in a masked column.
	dr = &pgproto3.DataRow{Values: [][]byte{[]byte("2"), nil, nil, nil, nil}}
	rw.Row(dr)
	for i, v := range dr.Values[1:] {
		if v != nil {
			t.Errorf("NULL in column %d became %q", i+1, v)
		}
	}
}

func TestMaskBinary(t *testing.T) {
	rw := NewMaskRewriter(nil, testMasker(t), fakeCatalog{})
	// Binary text-like columns are their text: masked as usual; binary
	// jsonb keeps its version byte.
	rd := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		field("email", 100, oidVarchar), field("doc", 0, oidJSONB), field("n", 0, 23),
	}}
	if err := rw.Describe(rd, []int16{1}); err != nil {
		t.Fatal(err)
	}
	dr := &pgproto3.DataRow{Values: [][]byte{
		[]byte("ada@example.com"), append([]byte{1}, `{"mail":"ada@example.com"}`...), {0, 0, 0, 7},
	}}
	rw.Row(dr)
	if string(dr.Values[0]) != "[masked]" {
		t.Errorf("binary varchar email = %q", dr.Values[0])
	}
	if string(dr.Values[1]) != "\x01{\"mail\":\"[masked:email]\"}" {
		t.Errorf("binary jsonb = %q", dr.Values[1])
	}
	if string(dr.Values[2]) != "\x00\x00\x00\x07" {
		t.Errorf("binary int4 changed: %q", dr.Values[2])
	}

	// A masked column of a binary type that cannot be rewritten refuses
	// the result instead of leaking it.
	rd = &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{field("email", 100, 17 /* bytea */)}}
	if err := rw.Describe(rd, []int16{1}); !errors.Is(err, ErrCannotMask) {
		t.Errorf("binary bytea email column: %v, want ErrCannotMask", err)
	}
}

func TestMaskCopy(t *testing.T) {
	classifier := sqlfacts.NewClassifier(0)
	stmt := func(sql string) sqlfacts.Statement {
		st, err := classifier.Classify(sql)
		if err != nil || len(st) != 1 {
			t.Fatalf("classify %q: %v", sql, err)
		}
		return st[0]
	}
	tests := []struct {
		name, sql, row, want string
	}{
		{"text", "COPY public.customers TO STDOUT", "1\tada@example.com\t123\tcard 4111-1111-1111-1111\n", "1\t[masked]\t[masked]\tcard [masked:credit_card]\n"},
		{"text null", "COPY public.customers TO STDOUT", "2\t\\N\t\\N\tplain\n", "2\t\\N\t\\N\tplain\n"},
		{"column list", "COPY customers (note, email) TO STDOUT", "x@example.com\ty@example.com\n", "[masked:email]\t[masked]\n"},
		// Unqualified, with a column list: which table is unknown, so the
		// schema-qualified ssn rule applies too (masking over leaking).
		{"unqualified column list", "COPY customers (ssn, id) TO STDOUT", "123-45\t7\n", "[masked]\t7\n"},
		{"csv", "COPY public.customers TO STDOUT (FORMAT csv)", "1,\"ada@example.com\",,\"a, b\"\n", "1,[masked],,\"a, b\"\n"},
		// Unqualified without columns: the search_path decides the table,
		// and the gateway cannot see it.
		{"unqualified table", "COPY customers TO STDOUT", "", ""},
		{"query, detectors only", "COPY (SELECT note FROM customers) TO STDOUT", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rw := NewMaskRewriter(nil, testMasker(t), fakeCatalog{})
			st := stmt(tt.sql)
			ncols := strings.Count(tt.row, "\t") + 1
			if strings.Contains(tt.sql, "csv") {
				ncols = 4
			}
			err := rw.CopyOut(&pgproto3.CopyOutResponse{ColumnFormatCodes: make([]uint16, ncols)}, st)
			if tt.row == "" {
				// The mask has column rules, so a COPY whose columns'
				// table cannot be known is refused.
				if !errors.Is(err, ErrCannotMask) {
					t.Errorf("%s with column masks: %v, want ErrCannotMask", tt.sql, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d := &pgproto3.CopyData{Data: []byte(tt.row)}
			rw.CopyData(d)
			if string(d.Data) != tt.want {
				t.Errorf("row %q became %q, want %q", tt.row, d.Data, tt.want)
			}
		})
	}

	rw := NewMaskRewriter(nil, testMasker(t), fakeCatalog{})
	if err := rw.CopyOut(&pgproto3.CopyOutResponse{OverallFormat: 1, ColumnFormatCodes: []uint16{1}}, stmt("COPY customers TO STDOUT (FORMAT binary)")); !errors.Is(err, ErrCannotMask) {
		t.Errorf("binary COPY: %v, want ErrCannotMask", err)
	}
}
