package postgres_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/interlock-dev/interlock/proxy/postgres"
)

// columnMaskPolicy masks columns by table, and two detectors.
const columnMaskPolicy = `
default: allow
masks:
  - name: pii
    columns: [email, customers.ssn, customers.profile, people.ssn]
    detectors: [email, credit_card]
`

// columnMaskEnv is an env whose customers have more columns (ssn, note,
// profile and doc jsonb, a generated gen), a child table, and a
// partitioned people table whose partition is partitioned too.
func columnMaskEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, envOptions{policy: columnMaskPolicy, rewriter: postgres.NewMaskRewriter})
	e.pg.Exec(t, `ALTER TABLE public.customers ADD COLUMN ssn text, ADD COLUMN note text, ADD COLUMN profile jsonb, ADD COLUMN doc jsonb,
			ADD COLUMN gen text GENERATED ALWAYS AS (upper(name)) STORED;
		UPDATE public.customers SET ssn = '123-45-6789', note = 'a|b', profile = '{"k": "v"}', doc = '{"card": 4111111111111111}' WHERE id = 1;
		UPDATE public.customers SET ssn = '987-65-4321', note = E'x\ty', profile = '{"k": "w"}', doc = '{"a": 2}' WHERE id = 2;
		CREATE TABLE public.customers_archive () INHERITS (public.customers);
		INSERT INTO public.customers_archive (id, name, email, ssn) VALUES (3, 'Cy', 'cy@example.net', '555-55-5555');
		CREATE TABLE public.people (id int, ssn text) PARTITION BY RANGE (id);
		CREATE TABLE public.people_1 PARTITION OF public.people FOR VALUES FROM (0) TO (100) PARTITION BY RANGE (id);
		CREATE TABLE public.people_1a PARTITION OF public.people_1 FOR VALUES FROM (0) TO (100);
		INSERT INTO public.people VALUES (1, '111-11-1111'), (2, '222-22-2222');
		GRANT ALL ON public.customers, public.customers_archive, public.people, public.people_1, public.people_1a TO app`)
	return e
}

// simpleRows runs sql in the simple protocol (text results) and returns
// its rows, columns joined by '|'.
func simpleRows(t *testing.T, c *pgx.Conn, sql string) string {
	t.Helper()
	res, err := c.PgConn().Exec(ctxT(t), sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	var rows []string
	for _, r := range res {
		for _, row := range r.Rows {
			var cols []string
			for _, v := range row {
				if v == nil {
					cols = append(cols, "NULL")
				} else {
					cols = append(cols, string(v))
				}
			}
			rows = append(rows, strings.Join(cols, "|"))
		}
	}
	return strings.Join(rows, "\n")
}

// TestColumnMaskFollowsTheColumn: a column mask covers the values read from
// its column under any name, through cursors and RETURNING, in the table's
// partitions and children; it does not cover another column that takes
// its name.
func TestColumnMaskFollowsTheColumn(t *testing.T) {
	e := columnMaskEnv(t)
	c := e.pgx(t)
	for _, tt := range []struct{ sql, want string }{
		{"SELECT ssn AS s, email AS e FROM customers WHERE id = 1", "[masked]|[masked]"},
		{"WITH x AS (SELECT ssn AS s FROM customers) SELECT s FROM x ORDER BY 1 LIMIT 1", "[masked]"},
		{"SELECT c.ssn AS name FROM customers c JOIN orders o ON o.customer = c.id WHERE o.id = 10", "[masked]"},
		{"UPDATE customers SET name = name WHERE id = 1 RETURNING ssn AS x", "[masked]"},
		// Another column under a masked column's name is not masked.
		{"SELECT note AS ssn, doc AS profile FROM ONLY customers WHERE id = 2", "x\ty|{\"a\": 2}"},
		// A child inherits its parent's masks; a partition (and its own
		// partition) its partitioned table's.
		{"SELECT ssn AS s FROM customers_archive", "[masked]"},
		{"SELECT ssn FROM customers WHERE id = 3", "[masked]"},
		{"SELECT ssn AS s FROM people_1 ORDER BY id", "[masked]\n[masked]"},
		{"SELECT ssn FROM people_1a ORDER BY id", "[masked]\n[masked]"},
		{"SELECT ssn FROM people ORDER BY id", "[masked]\n[masked]"},
	} {
		if got := simpleRows(t, c, tt.sql); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.sql, got, tt.want)
		}
	}

	// A cursor's rows are masked as a query's.
	simpleRows(t, c, "BEGIN")
	simpleRows(t, c, "DECLARE cur CURSOR FOR SELECT ssn AS s, note AS email FROM customers WHERE id = 2")
	if got := simpleRows(t, c, "FETCH ALL FROM cur"); got != "[masked]|x\ty" {
		t.Errorf("FETCH: %q", got)
	}
	simpleRows(t, c, "ROLLBACK")

	// The extended protocol, pgx's default: described by the statement.
	var s, n string
	if err := c.QueryRow(ctxT(t), "SELECT ssn AS s, note AS email FROM customers WHERE id = $1", 1).Scan(&s, &n); err != nil || s != "[masked]" || n != "a|b" {
		t.Errorf("pgx: %q %q %v", s, n, err)
	}
}

// TestMaskedJSONStaysJSON: a masked json or jsonb value, text or binary,
// is still one.
func TestMaskedJSONStaysJSON(t *testing.T) {
	e := columnMaskEnv(t)
	c := e.pgx(t)
	if got := simpleRows(t, c, "SELECT profile, doc FROM customers WHERE id = 1"); got != `"[masked]"|{"card": "[masked:credit_card]"}` {
		t.Errorf("text: %q", got)
	}
	// pgx asks for jsonb in binary and decodes it.
	var profile, doc any
	if err := c.QueryRow(ctxT(t), "SELECT profile, doc FROM customers WHERE id = $1", 1).Scan(&profile, &doc); err != nil {
		t.Fatalf("binary jsonb: %v", err)
	}
	if profile != "[masked]" {
		t.Errorf("binary masked jsonb: %#v", profile)
	}
	if m, ok := doc.(map[string]any); !ok || m["card"] != "[masked:credit_card]" {
		t.Errorf("binary jsonb with a card number: %#v", doc)
	}
	// The masked text goes back into PostgreSQL as JSON.
	var valid bool
	if err := c.QueryRow(ctxT(t), "SELECT $1::jsonb IS NOT NULL", simpleRows(t, c, "SELECT profile FROM customers WHERE id = 2")).Scan(&valid); err != nil || !valid {
		t.Errorf("masked jsonb read back: %v %v", valid, err)
	}
}

// TestMaskBinaryArraysAndRecords: detectors see the text inside binary
// arrays and records, which pgx asks for.
func TestMaskBinaryArraysAndRecords(t *testing.T) {
	e := columnMaskEnv(t)
	c := e.pgx(t)
	var mails []string
	if err := c.QueryRow(ctxT(t), "SELECT array_agg(name || '@example.com' ORDER BY id) FROM customers").Scan(&mails); err != nil {
		t.Fatal(err)
	}
	if strings.Join(mails, ",") != "[masked:email],[masked:email],[masked:email]" {
		t.Errorf("text[]: %q", mails)
	}
	rows, err := c.Query(ctxT(t), "SELECT row(id, 'card 4111 1111 1111 1111', ARRAY['a@example.com', NULL]) FROM customers WHERE id = 1")
	if err != nil {
		t.Fatal(err)
	}
	var got []any
	for rows.Next() {
		if rows.FieldDescriptions()[0].Format != 1 {
			t.Errorf("the record came as text: the test tests nothing")
		}
		v, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		got = v
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	b, _ := json.Marshal(got)
	if string(b) != `[[1,"card [masked:credit_card]",["[masked:email]",null]]]` {
		t.Errorf("record: %s", b)
	}
}

// TestMaskCopyOut: COPY TO STDOUT rows are split and escaped as PostgreSQL
// writes them.
func TestMaskCopyOut(t *testing.T) {
	e := columnMaskEnv(t)
	c := e.pgx(t)
	e.pg.Exec(t, `UPDATE public.customers SET note = E'line\nbob@example.org\\4111111111111111' WHERE id = 2`)
	copyOut := func(sql string) (string, error) {
		var buf bytes.Buffer
		_, err := c.PgConn().CopyTo(ctxT(t), &buf, sql)
		return buf.String(), err
	}
	for _, tt := range []struct{ sql, want string }{
		// Without a column list: generated columns are not COPY's.
		{"COPY public.customers TO STDOUT",
			"1\tAda\t[masked]\t[masked]\ta|b\t\"[masked]\"\t{\"card\": \"[masked:credit_card]\"}\n" +
				"2\tBob\t[masked]\t[masked]\tline\\n[masked:email]\\\\[masked:credit_card]\t\"[masked]\"\t{\"a\": 2}\n"},
		{"COPY public.customers (note, ssn, id) TO STDOUT (DELIMITER '|')",
			"a\\|b|[masked]|1\nline\\n[masked:email]\\\\[masked:credit_card]|[masked]|2\n"},
		{"COPY public.customers (id, note) TO STDOUT (FORMAT csv, HEADER, ESCAPE '\\')",
			"id,note\n1,a|b\n2,\"line\n[masked:email]\\\\[masked:credit_card]\"\n"},
		{"COPY public.customers (id, name) TO STDOUT (HEADER)", "id\tname\n1\tAda\n2\tBob\n"},
		{"COPY public.customers_archive (id, ssn, email) TO STDOUT (NULL 'none')", "3\t[masked]\t[masked]\n"},
		{"COPY public.people_1a TO STDOUT", "1\t[masked]\n2\t[masked]\n"},
	} {
		got, err := copyOut(tt.sql)
		if err != nil {
			t.Errorf("%s: %v", tt.sql, err)
		} else if got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.sql, got, tt.want)
		}
	}
	// NULL stays NULL, whatever it is written as.
	e.pg.Exec(t, `UPDATE public.customers SET email = NULL, profile = NULL WHERE id = 2`)
	for _, tt := range []struct{ sql, want string }{
		{"COPY public.customers (id, email, profile) TO STDOUT (NULL 'NULL')", "1\t[masked]\t\"[masked]\"\n2\tNULL\tNULL\n"},
		{"COPY public.customers (id, email, profile) TO STDOUT (FORMAT csv)", "1,\"[masked]\",\"\"\"[masked]\"\"\"\n2,,\n"},
	} {
		if got, err := copyOut(tt.sql); err != nil || got != tt.want {
			t.Errorf("%s: %q %v, want %q", tt.sql, got, err, tt.want)
		}
	}
	// In SJIS the second byte of a character may be the delimiter.
	if _, err := copyOut("COPY public.customers (note, ssn) TO STDOUT (ENCODING 'SJIS')"); err == nil || !strings.Contains(err.Error(), "ENCODING") {
		t.Errorf("COPY in SJIS: %v", err)
	}
}

// TestMaskCopyAfterAlter: a COPY without a column list maps its fields to
// the table's columns by position, so it reads them afresh, not from the
// minute-long cache: a column dropped and added again moves to the end.
// A COPY after its own transaction changed the table is refused: the
// catalogue connection cannot see the change.
func TestMaskCopyAfterAlter(t *testing.T) {
	e := columnMaskEnv(t)
	c := e.pgx(t)
	copyOut := func(sql string) (string, error) {
		var buf bytes.Buffer
		_, err := c.PgConn().CopyTo(ctxT(t), &buf, sql)
		return buf.String(), err
	}
	const sql = "COPY public.customers TO STDOUT"
	if got, err := copyOut(sql); err != nil || !strings.HasPrefix(got, "1\tAda\t[masked]\t[masked]\t") {
		t.Fatalf("%s: %q %v", sql, got, err)
	}
	e.pg.Exec(t, `ALTER TABLE public.customers DROP COLUMN ssn, ADD COLUMN ssn text;
		UPDATE public.customers SET ssn = '123-45-6789'`)
	got, err := copyOut(sql)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(got, "123-45-6789") || !strings.HasPrefix(got, "1\tAda\t[masked]\ta|b\t\"[masked]\"\t{\"card\": \"[masked:credit_card]\"}\t[masked]\n") {
		t.Errorf("after DROP and ADD COLUMN ssn: %q", got)
	}

	e.pg.Exec(t, `ALTER TABLE public.customers OWNER TO app; ALTER TABLE public.customers_archive OWNER TO app`)
	simpleRows(t, c, "BEGIN")
	simpleRows(t, c, "ALTER TABLE public.customers DROP COLUMN note, ADD COLUMN note text")
	if got, err := copyOut(sql); err == nil || !strings.Contains(err.Error(), "ACCESS EXCLUSIVE") {
		t.Errorf("COPY after its transaction's ALTER TABLE: %q %v, want it refused", got, err)
	}
	simpleRows(t, c, "ROLLBACK")
}

// TestMaskBinaryTypesUpstream: the detectors see text in binary values of
// types beyond the built-in text ones, as PostgreSQL sends them: a
// domain's OID in a record or array (information_schema's domains over
// text and varchar), refcursor, cstring, jsonpath, and pg_stats' anyarray.
func TestMaskBinaryTypesUpstream(t *testing.T) {
	e := columnMaskEnv(t)
	e.pg.Exec(t, `ANALYZE public.customers`)
	c := e.pgx(t)
	for _, sql := range []string{
		"SELECT ROW(id, email::information_schema.character_data) AS r FROM customers ORDER BY id",
		"SELECT ARRAY[email::information_schema.sql_identifier] AS a FROM customers ORDER BY id",
		"SELECT ARRAY[ROW(email::information_schema.character_data)] AS a FROM customers ORDER BY id",
		"SELECT email::refcursor AS r FROM customers ORDER BY id",
		"SELECT ARRAY[email::refcursor] AS r FROM customers ORDER BY id",
		"SELECT textout(email) AS r FROM customers ORDER BY id",
		`SELECT ('$.a ? (@ == "' || email || '")')::jsonpath AS p FROM customers ORDER BY id`,
		"SELECT most_common_vals AS v FROM pg_stats WHERE schemaname = 'public' AND tablename = 'customers' AND attname = 'email' " +
			"UNION ALL SELECT histogram_bounds FROM pg_stats WHERE schemaname = 'public' AND tablename = 'customers' AND attname = 'email'",
	} {
		res := c.PgConn().ExecParams(ctxT(t), sql, nil, nil, nil, []int16{1}).Read()
		if res.Err != nil {
			t.Errorf("%s: %v", sql, res.Err)
			continue
		}
		if len(res.Rows) == 0 {
			t.Errorf("%s: no rows", sql)
		}
		if res.FieldDescriptions[0].Format != 1 {
			t.Errorf("%s: not binary", sql)
		}
		var all []byte
		for _, row := range res.Rows {
			all = append(all, row[0]...)
		}
		if bytes.Contains(all, []byte("@example.")) || !bytes.Contains(all, []byte("[masked:email]")) {
			t.Errorf("%s (type %d): %q", sql, res.FieldDescriptions[0].DataTypeOID, all)
		}
	}
}
