package postgres

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
)

// Masking COPY TO STDOUT: PostgreSQL sends one CopyData message per row, in
// the text or CSV format the statement's options describe. Each row is
// split into its fields as PostgreSQL's own COPY FROM would split it, each
// field is decoded to its value (text: backslash escapes; CSV: quotes), the
// value is masked like a result's, and a changed value is encoded again in
// the row's format. Binary COPY is refused.

// copyPlan is how to split and mask the rows of one COPY TO STDOUT.
type copyPlan struct {
	csv       bool
	delimiter byte
	quote     byte // CSV
	escape    byte // CSV: before a quote or escape inside quotes
	null      []byte
	header    bool // the next row is the header: column names, passed as they are
	cols      []maskColumn
}

// MayRefuse: Describe refuses only a column mask's column in a binary
// format, and CopyOut any COPY it cannot plan.
func (r *maskRewriter) MayRefuse(stmt sqlfacts.Statement, formats []int16) bool {
	if stmt.Command == "COPY" {
		return true
	}
	return r.masker.HasColumnRules() && slices.ContainsFunc(formats, func(f int16) bool { return f != 0 })
}

func (r *maskRewriter) CopyOut(resp *pgproto3.CopyOutResponse, stmt sqlfacts.Statement) error {
	r.copy = nil
	if resp.OverallFormat != 0 {
		return fmt.Errorf("%w: binary COPY cannot be masked; use text or csv format", ErrCannotMask)
	}
	plan, err := r.planCopy(stmt, len(resp.ColumnFormatCodes))
	if err != nil {
		return err
	}
	r.copy = plan
	return nil
}

func (r *maskRewriter) planCopy(stmt sqlfacts.Statement, ncols int) (*copyPlan, error) {
	// stmt.Text is one statement sqlfacts already classified, so its depth
	// is within sqlfacts' guard and parsing it again cannot exhaust the
	// parser's stack.
	tree, err := pg_query.Parse(stmt.Text)
	if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetCopyStmt() == nil {
		return nil, fmt.Errorf("%w: cannot read the COPY statement", ErrCannotMask)
	}
	cs := tree.Stmts[0].Stmt.GetCopyStmt()
	plan, err := copyOptions(cs.Options)
	if err != nil {
		return nil, err
	}

	var names []string
	for _, a := range cs.Attlist {
		names = append(names, a.GetString_().GetSval())
	}
	var table Table
	switch {
	case cs.Relation != nil && cs.Relation.Schemaname == "":
		// An unqualified name resolves through the session's search_path,
		// which the catalog connection does not share: which table this is
		// is not known here. Column names come from the statement or not
		// at all; every column rule counts as possibly matching.
		if len(names) == 0 && r.masker.HasColumnRules() {
			return nil, fmt.Errorf("%w: COPY of an unqualified table cannot be masked by column; qualify it with its schema or list its columns", ErrCannotMask)
		}
	case cs.Relation != nil:
		qualified := quoteQualified(cs.Relation.Schemaname, cs.Relation.Relname)
		if table, err = r.copyTable(qualified); err != nil {
			return nil, fmt.Errorf("%w: reading the columns of %s: %w", ErrCannotMask, qualified, err)
		}
		if len(names) == 0 {
			// COPY's own column list: every column but generated ones.
			for _, c := range table.Columns {
				if c.Name != "" && !c.Generated {
					names = append(names, c.Name)
				}
			}
		}
	default:
		// COPY (query) TO STDOUT: the columns' tables are not known here.
		// Detectors still apply; a column rule cannot be honoured.
		if r.masker.HasColumnRules() {
			return nil, fmt.Errorf("%w: COPY of a query cannot be masked by column; use SELECT, or COPY the table", ErrCannotMask)
		}
	}
	if names != nil && len(names) != ncols {
		return nil, fmt.Errorf("%w: COPY has %d columns, expected %d", ErrCannotMask, ncols, len(names))
	}
	plan.cols = make([]maskColumn, ncols)
	for i := range plan.cols {
		c := maskColumn{scan: true}
		if i < len(names) {
			if table.Name != "" {
				c.rule = r.tableColumnRule(table, names[i])
				c.enc = encodingOf(columnType(table, names[i]), 0)
			} else {
				c.rule, _ = r.masker.Column("", names[i])
			}
		}
		plan.cols[i] = c
	}
	return plan, nil
}

// copyTableQuery resolves a COPY's schema-qualified table to its OID, and
// says whether an ACCESS EXCLUSIVE lock is held on it. While the COPY runs
// its own transaction holds a lock on the table that conflicts with that
// one, so only that transaction can hold it: it changed the table (ALTER
// TABLE takes it), and the catalogue connection cannot see the change yet.
const copyTableQuery = `SELECT c.oid::pg_catalog.text, EXISTS (SELECT FROM pg_catalog.pg_locks l
	WHERE l.locktype = 'relation' AND l.relation = c.oid AND l.mode = 'AccessExclusiveLock' AND l.granted
		AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))::pg_catalog.text
	FROM (SELECT $1::pg_catalog.regclass::pg_catalog.oid AS oid) c`

// copyTable looks up the table a COPY names (schema-qualified and quoted).
// The look-up bypasses the cache of Catalogue.Table: a COPY without a
// column list maps its fields to the table's columns by position, and a
// column dropped and added again since a cached look-up (ALTER TABLE ...
// DROP COLUMN email, ADD COLUMN email) would move every field after it.
func (r *maskRewriter) copyTable(qualified string) (Table, error) {
	ctx := context.Background()
	rows, err := r.cat.Query(ctx, copyTableQuery, qualified)
	if err != nil {
		return Table{}, err
	}
	if len(rows) != 1 || len(rows[0]) != 2 {
		return Table{}, fmt.Errorf("no table %s", qualified)
	}
	oid, err := strconv.ParseUint(rows[0][0], 10, 32)
	if err != nil {
		return Table{}, fmt.Errorf("table OID %q: %w", rows[0][0], err)
	}
	if rows[0][1] == "true" && r.masker.HasColumnRules() {
		return Table{}, fmt.Errorf("this transaction changed %s (it holds an ACCESS EXCLUSIVE lock on it), and the gateway cannot see its columns until it commits", qualified)
	}
	t, err := lookUpTable(ctx, r.cat.Query, uint32(oid))
	if err == nil && t.Name == "" {
		err = fmt.Errorf("no table %s", qualified)
	}
	return t, err
}

// columnType is the type OID of t's column name, 0 when unknown.
func columnType(t Table, name string) uint32 {
	for _, c := range t.Columns {
		if c.Name == name {
			return c.Type
		}
	}
	return 0
}

// copyOptions reads the options that decide how COPY writes rows.
func copyOptions(opts []*pg_query.Node) (*copyPlan, error) {
	plan := &copyPlan{}
	var delimiter, quote, escape, null *string
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil {
			continue
		}
		val := defElemString(d)
		switch d.Defname {
		case "format":
			plan.csv = strings.EqualFold(val, "csv")
		case "delimiter":
			delimiter = &val
		case "quote":
			quote = &val
		case "escape":
			escape = &val
		case "null":
			null = &val
		case "header":
			plan.header = defElemTrue(d)
		case "encoding":
			// The gateway pins client_encoding to UTF8 and reads COPY data
			// as UTF8; in an encoding such as SJIS or BIG5, a character's
			// second byte can be a delimiter, quote or backslash.
			if e := strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(val)); e != "utf8" && e != "unicode" {
				return nil, fmt.Errorf("%w: COPY with ENCODING %q cannot be masked; leave the encoding out (UTF8)", ErrCannotMask, val)
			}
		}
	}
	oneByte := func(name string, v *string, def byte) (byte, error) {
		if v == nil {
			return def, nil
		}
		if len(*v) != 1 {
			return 0, fmt.Errorf("%w: COPY %s %q is not one byte", ErrCannotMask, name, *v)
		}
		return (*v)[0], nil
	}
	var err error
	if plan.csv {
		plan.delimiter, err = oneByte("DELIMITER", delimiter, ',')
		if err == nil {
			plan.quote, err = oneByte("QUOTE", quote, '"')
		}
		if err == nil {
			plan.escape, err = oneByte("ESCAPE", escape, plan.quote)
		}
		plan.null = []byte{}
	} else {
		plan.delimiter, err = oneByte("DELIMITER", delimiter, '\t')
		plan.null = []byte(`\N`)
	}
	if err != nil {
		return nil, err
	}
	if null != nil {
		plan.null = []byte(*null)
	}
	return plan, nil
}

func defElemString(d *pg_query.DefElem) string {
	if d.Arg == nil {
		return ""
	}
	if s := d.Arg.GetString_(); s != nil {
		return s.Sval
	}
	return ""
}

// defElemTrue is PostgreSQL's defGetBoolean (and HEADER's MATCH, which is
// true too): no value, 1, true or on.
func defElemTrue(d *pg_query.DefElem) bool {
	if d.Arg == nil {
		return true
	}
	if i := d.Arg.GetInteger(); i != nil {
		return i.Ival == 1
	}
	if b := d.Arg.GetBoolean(); b != nil {
		return b.Boolval
	}
	switch strings.ToLower(defElemString(d)) {
	case "true", "on", "match":
		return true
	}
	return false
}

func quoteQualified(schema, name string) string {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	if schema == "" {
		return q(name)
	}
	return q(schema) + "." + q(name)
}

func (r *maskRewriter) CopyData(d *pgproto3.CopyData) map[string]int {
	if r.copy == nil {
		return nil
	}
	out, hits := r.copy.maskRow(d.Data, r)
	d.Data = out
	return hits
}

// maskRow rewrites one COPY row (one CopyData message per row, as
// PostgreSQL sends them). It returns row itself when nothing changed.
func (p *copyPlan) maskRow(row []byte, r *maskRewriter) ([]byte, map[string]int) {
	if p.header {
		p.header = false
		return row, nil
	}
	end := len(row)
	if end > 0 && row[end-1] == '\n' {
		end--
	}
	var hits map[string]int
	var out []byte // nil until a field changes
	last := 0      // row[last:] is not yet in out
	field := 0
	for start := 0; start <= end; field++ {
		stop := p.fieldEnd(row[:end], start)
		if nv, changed := p.maskField(row[start:stop], field, r, &hits); changed {
			if out == nil {
				out = make([]byte, 0, len(row)+len(nv))
			}
			out = append(out, row[last:start]...)
			out = append(out, nv...)
			last = stop
		}
		start = stop + 1 // past the delimiter; past end after the last field
	}
	if out == nil {
		return row, hits
	}
	return append(out, row[last:]...), hits
}

// fieldEnd is where the field starting at start ends: at the next
// delimiter that is not escaped (text) or quoted (CSV), or at the row's end.
func (p *copyPlan) fieldEnd(row []byte, start int) int {
	inQuote := false
	for i := start; i < len(row); i++ {
		b := row[i]
		switch {
		case !p.csv && b == '\\':
			i++ // the escaped byte, a delimiter included
		case p.csv && inQuote && b == p.escape && i+1 < len(row) && (row[i+1] == p.quote || row[i+1] == p.escape) && (p.escape != p.quote || row[i+1] == p.quote):
			i++ // an escaped quote or escape
		case p.csv && b == p.quote:
			inQuote = !inQuote
		case !inQuote && b == p.delimiter:
			return i
		}
	}
	return len(row)
}

// maskField masks one field as written; it returns the field to write in
// its place and whether that differs.
func (p *copyPlan) maskField(raw []byte, field int, r *maskRewriter, hits *map[string]int) ([]byte, bool) {
	c := maskColumn{scan: true}
	if field < len(p.cols) {
		c = p.cols[field]
	}
	if p.isNull(raw) || (c.rule == "" && !c.scan) {
		return raw, false
	}
	if c.rule != "" {
		*hits = addHit(*hits, c.rule, 1)
		return p.encode(r.masked(c.enc)), true
	}
	v := p.decode(raw)
	out, changed := r.scanValue(v, c.enc, 0, hits)
	if !changed {
		return raw, false
	}
	return p.encode(out), true
}

// isNull: the NULL string as written, unquoted in CSV (a quoted one is a
// value).
func (p *copyPlan) isNull(raw []byte) bool {
	return bytes.Equal(raw, p.null)
}

// decode is the value a field holds.
func (p *copyPlan) decode(raw []byte) []byte {
	if p.csv {
		return p.decodeCSV(raw)
	}
	return decodeCopyText(raw)
}

func (p *copyPlan) decodeCSV(raw []byte) []byte {
	if bytes.IndexByte(raw, p.quote) < 0 {
		return raw
	}
	v := make([]byte, 0, len(raw))
	inQuote := false
	for i := 0; i < len(raw); i++ {
		b := raw[i]
		switch {
		case inQuote && b == p.escape && i+1 < len(raw) && (raw[i+1] == p.quote || raw[i+1] == p.escape) && (p.escape != p.quote || raw[i+1] == p.quote):
			i++
			v = append(v, raw[i])
		case b == p.quote:
			inQuote = !inQuote
		default:
			v = append(v, b)
		}
	}
	return v
}

// copyEscape is the letter COPY's text format writes after a backslash
// for a byte (0: none), and copyUnescape the byte such a letter stands
// for; octal and \x escapes aside.
var copyEscape, copyUnescape = func() (esc, unesc [256]byte) {
	for _, p := range [...][2]byte{{'\\', '\\'}, {'\b', 'b'}, {'\f', 'f'}, {'\n', 'n'}, {'\r', 'r'}, {'\t', 't'}, {'\v', 'v'}} {
		esc[p[0]], unesc[p[1]] = p[1], p[0]
	}
	return esc, unesc
}()

// decodeCopyText undoes COPY's text escapes (PostgreSQL's
// CopyReadAttributesText).
func decodeCopyText(raw []byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw
	}
	v := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		b := raw[i]
		if b != '\\' || i+1 == len(raw) {
			v = append(v, b)
			continue
		}
		i++
		b = raw[i]
		switch {
		case '0' <= b && b <= '7':
			n := b - '0'
			for k := 0; k < 2 && i+1 < len(raw) && '0' <= raw[i+1] && raw[i+1] <= '7'; k++ {
				i++
				n = n<<3 + raw[i] - '0'
			}
			v = append(v, n)
		case b == 'x' && i+1 < len(raw) && hexDigit(raw[i+1]) >= 0:
			i++
			n := byte(hexDigit(raw[i]))
			if i+1 < len(raw) && hexDigit(raw[i+1]) >= 0 {
				i++
				n = n<<4 + byte(hexDigit(raw[i]))
			}
			v = append(v, n)
		case copyUnescape[b] != 0:
			v = append(v, copyUnescape[b])
		default:
			v = append(v, b)
		}
	}
	return v
}

func hexDigit(b byte) int {
	switch {
	case '0' <= b && b <= '9':
		return int(b - '0')
	case 'a' <= b && b <= 'f':
		return int(b-'a') + 10
	case 'A' <= b && b <= 'F':
		return int(b-'A') + 10
	}
	return -1
}

// encode writes a value as a field: CSV quoted (so it is never the NULL
// string), text escaped as PostgreSQL's COPY TO escapes it.
func (p *copyPlan) encode(v []byte) []byte {
	out := make([]byte, 0, len(v)+2)
	if p.csv {
		out = append(out, p.quote)
		for _, b := range v {
			if b == p.quote || b == p.escape {
				out = append(out, p.escape)
			}
			out = append(out, b)
		}
		return append(out, p.quote)
	}
	for _, b := range v {
		if e := copyEscape[b]; e != 0 {
			out = append(out, '\\', e)
			continue
		}
		if b == p.delimiter {
			out = append(out, '\\')
		}
		out = append(out, b)
	}
	return out
}
