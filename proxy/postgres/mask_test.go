package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
)

// testMasker compiles a real policy with one mask: the email column of any
// table, ssn of public.customers and of people (and so its partitions)
// only, and the email and card detectors.
func testMasker(t *testing.T) *policy.Masker {
	t.Helper()
	p, err := policy.Compile(policy.Config{Masks: []policy.MaskConfig{
		{Name: "pii", Columns: []string{"email", "public.customers.ssn", "people.ssn"}, Detectors: []string{"email", "credit_card"}},
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

// fakeCatalog answers the rewriter's catalogue look-ups: OID 100 is
// public.customers (id, email, ssn, note, doc jsonb, and gen, generated);
// 200 is public.orders (id, ssn); 300 is public.people_1, a partition of
// public.people (id, ssn). Of the types, 50000 is a domain over text, 50001
// an array of it, 50002 a composite type, 50003 an enum and 50004 a range;
// there is no other. err, when set, fails every look-up; queries, when
// set, counts the type look-ups.
type fakeCatalog struct {
	err     error
	queries *int
}

var fakeTypes = map[uint32]string{50000: "textsend", 50001: "array_send", 50002: "record_send", 50003: "enum_send", 50004: "range_send"}

var fakeTables = map[uint32]Table{
	100: {Name: "public.customers", Columns: []TableColumn{
		{Name: "id", Type: 23}, {Name: "email", Type: oidText}, {Name: "ssn", Type: oidText},
		{Name: "note", Type: oidText}, {Name: "doc", Type: oidJSONB}, {Name: "gen", Type: oidText, Generated: true},
	}},
	200: {Name: "public.orders", Columns: []TableColumn{{Name: "id", Type: 23}, {Name: "ssn", Type: oidText}}},
	300: {Name: "public.people_1", Columns: []TableColumn{{Name: "id", Type: 23}, {Name: "ssn", Type: oidText}}, Ancestors: []string{"public.people"}},
}

func (f fakeCatalog) Query(_ context.Context, sql string, args ...any) ([][]string, error) {
	if f.err != nil {
		return nil, f.err
	}
	if sql == copyTableQuery {
		switch args[0] {
		case `"public"."customers"`:
			return [][]string{{"100", "false"}}, nil
		case `"public"."people_1"`:
			return [][]string{{"300", "false"}}, nil
		case `"public"."locked"`:
			return [][]string{{"100", "true"}}, nil
		}
		return nil, errors.New("no such relation")
	}
	if sql == tableQuery {
		// The answer lookUpTable reads.
		t, ok := fakeTables[args[0].(uint32)]
		if !ok {
			return nil, nil
		}
		schema, name, _ := strings.Cut(t.Name, ".")
		rows := [][]string{{"table", schema, name, "", ""}}
		for _, a := range t.Ancestors {
			schema, name, _ := strings.Cut(a, ".")
			rows = append(rows, []string{"ancestor", schema, name, "", ""})
		}
		for i, c := range t.Columns {
			gen := ""
			if c.Generated {
				gen = "generated"
			}
			rows = append(rows, []string{"column", strconv.Itoa(i + 1), c.Name, strconv.FormatUint(uint64(c.Type), 10), gen})
		}
		return rows, nil
	}
	if sql == typeKindQuery {
		if f.queries != nil {
			*f.queries++
		}
		if send, ok := fakeTypes[args[0].(uint32)]; ok {
			return [][]string{{send}}, nil
		}
		return nil, nil
	}
	return nil, errors.New("unexpected catalog query: " + sql)
}

func (f fakeCatalog) Table(_ context.Context, oid uint32) (Table, error) {
	if f.err != nil {
		return Table{}, f.err
	}
	return fakeTables[oid], nil
}

// field is a result column named name, of type typ, read from column attnum
// of table (0, 0: computed).
func field(name string, table uint32, attnum uint16, typ uint32) pgproto3.FieldDescription {
	return pgproto3.FieldDescription{Name: []byte(name), TableOID: table, TableAttributeNumber: attnum, DataTypeOID: typ}
}

func TestMaskRows(t *testing.T) {
	rw := NewMaskRewriter(nil, testMasker(t), fakeCatalog{})
	rd := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		field("id", 100, 1, 23), field("email", 100, 2, oidText), field("ssn", 100, 3, oidText),
		field("note", 100, 4, oidText), field("ssn", 200, 2, oidText),
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
		field("email", 100, 2, oidVarchar), field("doc", 0, 0, oidJSONB), field("n", 0, 0, 23),
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
	rd = &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{field("email", 100, 2, 17 /* bytea */)}}
	if err := rw.Describe(rd, []int16{1}); !errors.Is(err, ErrCannotMask) {
		t.Errorf("binary bytea email column: %v, want ErrCannotMask", err)
	}
}

// A column mask follows the column a value was read from, not the name the
// result gives it; a computed column goes by its result name; and when the
// catalogue cannot say which column it is, every table column is masked.
func TestMaskColumnIdentity(t *testing.T) {
	tests := []struct {
		name   string
		cat    fakeCatalog
		f      pgproto3.FieldDescription
		masked bool
	}{
		{"ssn aliased", fakeCatalog{}, field("s", 100, 3, oidText), true},
		{"note aliased as email", fakeCatalog{}, field("email", 100, 4, oidText), false},
		{"computed, by its name", fakeCatalog{}, field("email", 0, 0, oidText), true},
		{"computed, other name", fakeCatalog{}, field("lower", 0, 0, oidText), false},
		{"another table's ssn", fakeCatalog{}, field("ssn", 200, 2, oidText), false},
		{"a partition of people", fakeCatalog{}, field("x", 300, 2, oidText), true},
		{"a column added since the look-up", fakeCatalog{}, field("x", 100, 9, oidText), true},
		{"a table the catalogue cannot see", fakeCatalog{}, field("email", 999, 1, oidText), true},
		{"look-up failed", fakeCatalog{err: errors.New("down")}, field("note", 100, 4, oidText), true},
		{"look-up failed, computed", fakeCatalog{err: errors.New("down")}, field("n", 0, 0, oidText), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rw := NewMaskRewriter(nil, testMasker(t), tt.cat)
			if err := rw.Describe(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{tt.f}}, nil); err != nil {
				t.Fatal(err)
			}
			dr := &pgproto3.DataRow{Values: [][]byte{[]byte("123-45-6789")}}
			rw.Row(dr)
			if got := string(dr.Values[0]) == "[masked]"; got != tt.masked {
				t.Errorf("value %q, masked %v", dr.Values[0], tt.masked)
			}
		})
	}
}

// Masked json and jsonb values stay valid JSON.
func TestMaskJSON(t *testing.T) {
	rw := NewMaskRewriter(nil, testMasker(t), fakeCatalog{})
	rd := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		field("email", 0, 0, oidJSON), field("email", 0, 0, oidJSONB), field("email", 0, 0, oidJSONB),
		field("j", 0, 0, oidJSONB), field("j", 0, 0, oidJSON), field("j", 0, 0, oidJSONB),
	}}
	if err := rw.Describe(rd, []int16{0, 0, 1, 0, 1, 1}); err != nil {
		t.Fatal(err)
	}
	dr := &pgproto3.DataRow{Values: [][]byte{
		[]byte(`{"a": 1}`), []byte(`{"a": 1}`), []byte("\x01{\"a\": 1}"),
		[]byte(`{"card": 4111111111111111, "n": [-4111111111111111, 1E-4111111111111111], "m": "bob@example.org"}`),
		[]byte(`["bob@example.org", 1]`),
		[]byte("\x01[4111111111111111]"),
	}}
	rw.Row(dr)
	want := []string{
		`"[masked]"`, `"[masked]"`, "\x01\"[masked]\"",
		`{"card": "[masked:credit_card]", "n": ["-[masked:credit_card]", "1E-[masked:credit_card]"], "m": "[masked:email]"}`,
		`["[masked:email]", 1]`,
		"\x01[\"[masked:credit_card]\"]",
	}
	for i, w := range want {
		if string(dr.Values[i]) != w {
			t.Errorf("column %d = %q, want %q", i, dr.Values[i], w)
		}
	}

	// A private key without an END line is masked to the value's end,
	// closing quote and all: the whole value is masked instead.
	if got := jsonAfterScan([]byte(`["[masked:private_key]`)); string(got) != `"[masked]"` {
		t.Errorf("broken JSON: %q", got)
	}
}

// binaryArray encodes a one-dimensional binary array of elem; a nil
// element is NULL.
func binaryArray(elem uint32, values ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, 1)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, elem)
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)))
	b = binary.BigEndian.AppendUint32(b, 1)
	return appendValues(b, values)
}

func appendValues(b []byte, values [][]byte) []byte {
	for _, v := range values {
		if v == nil {
			b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

// binaryRecord encodes a binary record of fields (type, value) pairs.
func binaryRecord(fields ...any) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(fields)/2))
	for i := 0; i < len(fields); i += 2 {
		b = binary.BigEndian.AppendUint32(b, fields[i].(uint32))
		b = appendValues(b, [][]byte{fields[i+1].([]byte)})
	}
	return b
}

// The detectors see the text inside binary arrays and records, and the
// lengths of what they rewrite are written anew.
func TestMaskBinaryArraysAndRecords(t *testing.T) {
	rw := NewMaskRewriter(nil, testMasker(t), fakeCatalog{})
	rd := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		field("array_agg", 0, 0, oidTextArray), field("row", 0, 0, oidRecord), field("a", 0, 0, oidRecordArray),
	}}
	if err := rw.Describe(rd, []int16{1}); err != nil {
		t.Fatal(err)
	}
	int4 := []byte{0, 0, 0, 7}
	dr := &pgproto3.DataRow{Values: [][]byte{
		binaryArray(oidText, []byte("ada@example.com"), nil, []byte("plain")),
		binaryRecord(uint32(23), int4, uint32(oidVarchar), []byte("bob@example.org"), uint32(oidTextArray), binaryArray(oidText, []byte("4111 1111 1111 1111"))),
		binaryArray(oidRecord, binaryRecord(uint32(oidJSONB), []byte("\x01{\"m\": \"cy@example.net\"}"))),
	}}
	hits := rw.Row(dr)
	want := [][]byte{
		binaryArray(oidText, []byte("[masked:email]"), nil, []byte("plain")),
		binaryRecord(uint32(23), int4, uint32(oidVarchar), []byte("[masked:email]"), uint32(oidTextArray), binaryArray(oidText, []byte("[masked:credit_card]"))),
		binaryArray(oidRecord, binaryRecord(uint32(oidJSONB), []byte("\x01{\"m\": \"[masked:email]\"}"))),
	}
	for i, w := range want {
		if !bytes.Equal(dr.Values[i], w) {
			t.Errorf("column %d = %q, want %q", i, dr.Values[i], w)
		}
	}
	if hits["pii"] != 4 {
		t.Errorf("hits %v, want 4", hits)
	}

	// A column mask on one is still refused: its values are not text.
	rd = &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{field("email", 0, 0, oidTextArray)}}
	if err := rw.Describe(rd, []int16{1}); !errors.Is(err, ErrCannotMask) {
		t.Errorf("masked binary text[]: %v, want ErrCannotMask", err)
	}
}

// Binary values of types beyond the built-in text ones: refcursor,
// cstring, jsonpath, pg_stats' anyarray, and the types a record or array
// names by an OID the gateway looks up (a domain over text, an array of
// it, a composite type, an enum). A value holding a type the catalogue
// cannot describe is withheld: NULL.
func TestMaskBinaryTypes(t *testing.T) {
	mail := []byte("ada@example.com")
	masked := []byte("[masked:email]")
	tests := []struct {
		name    string
		cat     fakeCatalog
		typ     uint32
		in, out []byte // out nil: NULL
	}{
		{"refcursor", fakeCatalog{}, oidRefcursor, mail, masked},
		{"refcursor[]", fakeCatalog{}, oidRefcursorArray, binaryArray(oidRefcursor, mail), binaryArray(oidRefcursor, masked)},
		{"cstring", fakeCatalog{}, oidCString, mail, masked},
		{"jsonpath", fakeCatalog{}, oidJSONPath, []byte("\x01$.a ? (@ == \"ada@example.com\")"), []byte("\x01$.a ? (@ == \"[masked:email]\")")},
		{"jsonpath[]", fakeCatalog{}, oidJSONPathArray, binaryArray(oidJSONPath, []byte("\x01$.ada@example.com")), binaryArray(oidJSONPath, []byte("\x01$.[masked:email]"))},
		{"pg_stats anyarray of text", fakeCatalog{}, oidAnyArray, binaryArray(oidText, mail, []byte("x")), binaryArray(oidText, masked, []byte("x"))},
		{"pg_stats anyarray of int8", fakeCatalog{}, oidAnyArray, binaryArray(20, []byte{0, 0, 0, 0, 0, 0, 0, 1}), binaryArray(20, []byte{0, 0, 0, 0, 0, 0, 0, 1})},
		{"record of a domain over text", fakeCatalog{}, oidRecord, binaryRecord(uint32(50000), mail), binaryRecord(uint32(50000), masked)},
		{"array of a domain over text", fakeCatalog{}, 50001, binaryArray(50000, mail), binaryArray(50000, masked)},
		{"composite", fakeCatalog{}, 50002, binaryRecord(uint32(23), []byte{0, 0, 0, 1}, uint32(50003), mail), binaryRecord(uint32(23), []byte{0, 0, 0, 1}, uint32(50003), masked)},
		{"range: not text", fakeCatalog{}, 50004, mail, mail},
		{"a type the catalogue does not have", fakeCatalog{}, oidRecord, binaryRecord(uint32(23), []byte{0, 0, 0, 1}, uint32(59999), []byte("x")), nil},
		{"the look-up failed", fakeCatalog{err: errors.New("down")}, oidRecord, binaryRecord(uint32(50000), []byte("x")), nil},
		{"the look-up failed, top level", fakeCatalog{err: errors.New("down")}, 50001, binaryArray(50000, []byte("x")), nil},
		{"built-in types are not looked up", fakeCatalog{err: errors.New("down")}, oidRecord, binaryRecord(uint32(23), []byte{0, 0, 0, 1}, uint32(oidText), mail), binaryRecord(uint32(23), []byte{0, 0, 0, 1}, uint32(oidText), masked)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rw := NewMaskRewriter(nil, testMasker(t), tt.cat)
			if err := rw.Describe(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{field("v", 0, 0, tt.typ)}}, []int16{1}); err != nil {
				t.Fatal(err)
			}
			dr := &pgproto3.DataRow{Values: [][]byte{tt.in}}
			hits := rw.Row(dr)
			if !bytes.Equal(dr.Values[0], tt.out) || (tt.out == nil) != (dr.Values[0] == nil) {
				t.Errorf("%q became %q, want %q", tt.in, dr.Values[0], tt.out)
			}
			if changed := !bytes.Equal(tt.in, tt.out); changed != (hits["pii"] > 0) {
				t.Errorf("hits %v", hits)
			}
		})
	}

	// A type is looked up once per session; one the catalogue does not
	// have, once per result.
	var queries int
	rw := NewMaskRewriter(nil, testMasker(t), fakeCatalog{queries: &queries})
	rd := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{field("a", 0, 0, oidRecord), field("b", 0, 0, oidRecord)}}
	for range 2 {
		if err := rw.Describe(rd, []int16{1}); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			rw.Row(&pgproto3.DataRow{Values: [][]byte{binaryRecord(uint32(50000), mail), binaryRecord(uint32(59999), mail)}})
		}
	}
	if queries != 3 {
		t.Errorf("%d type look-ups, want 3 (50000 once, 59999 once per result)", queries)
	}

	// Without detectors nothing is looked up: nothing would be scanned.
	p, err := policy.Compile(policy.Config{Masks: []policy.MaskConfig{{Name: "cols", Columns: []string{"ssn"}}}}, policy.Env{})
	if err != nil {
		t.Fatal(err)
	}
	queries = 0
	rw = NewMaskRewriter(nil, p.Masker(policy.Request{}), fakeCatalog{queries: &queries})
	if err := rw.Describe(rd, []int16{1}); err != nil {
		t.Fatal(err)
	}
	dr := &pgproto3.DataRow{Values: [][]byte{binaryRecord(uint32(59999), mail), binaryRecord(uint32(50000), mail)}}
	rw.Row(dr)
	if queries != 0 || dr.Values[0] == nil {
		t.Errorf("without detectors: %d look-ups, %q", queries, dr.Values[0])
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
	// public.customers' COPY columns: id, email, ssn, note, doc (gen is
	// generated).
	tests := []struct {
		name, sql string
		rows      []string // in, out, in, out, ...
	}{
		{"text", "COPY public.customers TO STDOUT", []string{
			"1\tada@example.com\t123\tcard 4111-1111-1111-1111\t{}\n", "1\t[masked]\t[masked]\tcard [masked:credit_card]\t{}\n"}},
		{"text null", "COPY public.customers TO STDOUT", []string{
			"2\t\\N\t\\N\tplain\t\\N\n", "2\t\\N\t\\N\tplain\t\\N\n"}},
		{"column list", "COPY customers (note, email) TO STDOUT", []string{
			"x@example.com\ty@example.com\n", "[masked:email]\t[masked]\n"}},
		// Unqualified, with a column list: which table is unknown, so the
		// schema-qualified ssn rule applies too (masking over leaking).
		{"unqualified column list", "COPY customers (ssn, id) TO STDOUT", []string{"123-45\t7\n", "[masked]\t7\n"}},
		{"partition", "COPY public.people_1 TO STDOUT", []string{"1\t123-45\n", "1\t[masked]\n"}},
		{"csv", "COPY public.customers TO STDOUT (FORMAT csv)", []string{
			"1,\"ada@example.com\",,\"a, b\",\n", "1,\"[masked]\",,\"a, b\",\n"}},
		// A delimiter in a text value is escaped, not a field's end.
		{"text escaped delimiter", "COPY public.customers (note, ssn, id) TO STDOUT (DELIMITER '|')", []string{
			"a\\|b|123-45-6789|7\n", "a\\|b|[masked]|7\n"}},
		// Escapes are undone before the detectors look, and redone after.
		{"text escapes", "COPY public.customers (id, note) TO STDOUT", []string{
			"1\tline\\n4111111111111111\\tx\\\\y\n", "1\tline\\n[masked:credit_card]\\tx\\\\y\n",
			"1\tmail:\\tbob@example.com\n", "1\tmail:\\t[masked:email]\n",
			"1\t\\142ob@example.com\n", "1\t[masked:email]\n"}},
		// A replacement holding the delimiter is escaped too.
		{"text delimiter in a replacement", "COPY public.customers (id, note) TO STDOUT (DELIMITER ':')", []string{
			"1:bob@example.com\n", "1:[masked\\:email]\n"}},
		{"csv escape", "COPY public.customers (note, ssn, id) TO STDOUT (FORMAT csv, ESCAPE '\\')", []string{
			"\"x\\\",y\",123-45-6789,7\n", "\"x\\\",y\",\"[masked]\",7\n",
			"\"x\\\\\",\"bob@example.com\",7\n", "\"x\\\\\",\"[masked]\",7\n"}},
		{"csv quoted detector", "COPY public.customers (id, note) TO STDOUT (FORMAT csv)", []string{
			"1,\"{\"\"m\"\": \"\"bob@example.com\"\"}\"\n", "1,\"{\"\"m\"\": \"\"[masked:email]\"\"}\"\n"}},
		{"text null string", "COPY public.customers (id, email) TO STDOUT (NULL 'NULL')", []string{"1\tNULL\n", "1\tNULL\n", "2\t\\N\n", "2\t[masked]\n"}},
		{"csv null string", "COPY public.customers (id, email) TO STDOUT (FORMAT csv, NULL 'NULL')", []string{"1,NULL\n", "1,NULL\n", "2,\n", "2,\"[masked]\"\n"}},
		{"csv header", "COPY public.customers (id, email) TO STDOUT (FORMAT csv, HEADER)", []string{"id,email\n", "id,email\n", "1,a@b.cd\n", "1,\"[masked]\"\n"}},
		{"text header", "COPY public.customers (id, email) TO STDOUT (HEADER true)", []string{"id\temail\n", "id\temail\n", "1\ta@b.cd\n", "1\t[masked]\n"}},
		{"header off", "COPY public.customers (id, email) TO STDOUT (FORMAT csv, HEADER off)", []string{"id,email\n", "id,\"[masked]\"\n"}},
		{"json column", "COPY public.customers (doc, email) TO STDOUT (FORMAT csv)", []string{"\"[4111111111111111]\",x\n", "\"[\"\"[masked:credit_card]\"\"]\",\"[masked]\"\n"}},
		{"utf8 encoding", "COPY public.customers (id, email) TO STDOUT (ENCODING 'utf-8')", []string{"1\tx\n", "1\t[masked]\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rw := NewMaskRewriter(nil, testMasker(t), fakeCatalog{})
			if err := rw.CopyOut(&pgproto3.CopyOutResponse{ColumnFormatCodes: make([]uint16, copyColumns(tt.sql))}, stmt(tt.sql)); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(tt.rows); i += 2 {
				d := &pgproto3.CopyData{Data: []byte(tt.rows[i])}
				rw.CopyData(d)
				if string(d.Data) != tt.rows[i+1] {
					t.Errorf("row %q became %q, want %q", tt.rows[i], d.Data, tt.rows[i+1])
				}
			}
		})
	}

	for _, sql := range []string{
		// Unqualified without columns: the search_path decides the table,
		// and the gateway cannot see it.
		"COPY customers TO STDOUT",
		"COPY (SELECT note FROM customers) TO STDOUT",
		"COPY customers TO STDOUT (FORMAT binary)",
		// In SJIS a character's second byte may be a delimiter.
		"COPY public.customers (id, note) TO STDOUT (ENCODING 'SJIS')",
		// Its own transaction changed the table: the catalogue does not
		// show the columns the COPY writes.
		"COPY public.locked TO STDOUT",
		"COPY public.locked (id, note) TO STDOUT",
	} {
		rw := NewMaskRewriter(nil, testMasker(t), fakeCatalog{})
		resp := &pgproto3.CopyOutResponse{ColumnFormatCodes: make([]uint16, 2)}
		if strings.Contains(sql, "binary") {
			resp.OverallFormat = 1
		}
		if err := rw.CopyOut(resp, stmt(sql)); !errors.Is(err, ErrCannotMask) {
			t.Errorf("%s: %v, want ErrCannotMask", sql, err)
		}
	}
}

// copyColumns is how many columns a test's COPY has: public.customers'
// five, people_1's two, or those listed.
func copyColumns(sql string) int {
	switch {
	case strings.Contains(sql, "public.customers TO"):
		return 5
	case strings.Contains(sql, "people_1"):
		return 2
	}
	open := strings.Index(sql, "(")
	return strings.Count(sql[open:strings.Index(sql, ")")], ",") + 1
}

// maskNoticeFields hands every field a value can come back in to the
// masking function, fields pgproto3 does not know included.
func TestMaskNoticeFieldsUnknown(t *testing.T) {
	m := &pgproto3.ErrorResponse{Severity: "NOTICE", Code: "00000", Message: "m", ColumnName: "c", ConstraintName: "n",
		File: "pl_exec.c", UnknownFields: map[byte]string{'Z': "z", 'Y': "y"}}
	maskNoticeFields(m, func(fields ...*string) {
		for _, f := range fields {
			if *f != "" {
				*f = "<" + *f + ">"
			}
		}
	})
	if m.Message != "<m>" || m.ColumnName != "<c>" || m.ConstraintName != "<n>" || m.UnknownFields['Z'] != "<z>" || m.UnknownFields['Y'] != "<y>" {
		t.Errorf("masked: %+v", m)
	}
	if m.Severity != "NOTICE" || m.Code != "00000" || m.File != "pl_exec.c" {
		t.Errorf("the server's own fields changed: %+v", m)
	}
}
