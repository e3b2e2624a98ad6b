package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
)

// Masking rewrites results in the stream: columns a mask names are replaced
// whole, and detectors rewrite what they find in every text value. NULL
// stays NULL. A masked column whose values come in a binary format the
// gateway cannot rewrite (anything but text-like types) refuses the result
// instead of passing it through unmasked.

// ErrCannotMask refuses a result that would otherwise leave the gateway
// unmasked.
var ErrCannotMask = errors.New("result cannot be masked")

// Type OIDs whose binary representation is their text (jsonb: a version
// byte, then the text).
const (
	oidName    = 19
	oidText    = 25
	oidJSON    = 114
	oidXML     = 142
	oidUnknown = 705
	oidBPChar  = 1042
	oidVarchar = 1043
	oidJSONB   = 3802
)

func textLikeBinary(oid uint32) bool {
	switch oid {
	case oidName, oidText, oidJSON, oidXML, oidUnknown, oidBPChar, oidVarchar, oidJSONB:
		return true
	}
	return false
}

// NewMaskRewriter is the Options.Rewriter that applies the policy's masks.
func NewMaskRewriter(s *proxy.Session, m *policy.Masker, cat Catalogue) ResultRewriter {
	if m == nil {
		return nil
	}
	return &maskRewriter{masker: m, cat: cat}
}

type maskRewriter struct {
	masker *policy.Masker
	cat    Catalogue
	cols   []maskColumn // the current result's columns
	copy   *copyPlan    // the current COPY TO STDOUT, if any
}

type maskColumn struct {
	rule  string // column mask rule; "" when only detectors apply
	scan  bool   // value is text: run the detectors
	jsonb bool   // binary jsonb: skip the version byte
}

func (r *maskRewriter) Describe(rd *pgproto3.RowDescription, formats []int16) error {
	// The previous result's columns are done with: reuse their slice.
	cols := slices.Grow(r.cols[:0], len(rd.Fields))[:len(rd.Fields)]
	clear(cols)
	for i, f := range rd.Fields {
		format := formatOf(formats, i)
		table, err := r.cat.TableName(context.Background(), f.TableOID)
		if err != nil {
			// The column's table is unknown: every column mask of that
			// name applies (Masker.Column), which masks too much rather
			// than too little, and the result is not refused.
			table = ""
		}
		binary := format != 0
		if binary && !textLikeBinary(f.DataTypeOID) {
			if rule, ok := r.masker.Column(table, string(f.Name)); ok {
				return fmt.Errorf("%w: column %q is masked by rule %q but requested in binary format (type oid %d); request it as text", ErrCannotMask, f.Name, rule, f.DataTypeOID)
			}
			continue // binary non-text values carry no text for detectors
		}
		c := maskColumn{scan: true, jsonb: binary && f.DataTypeOID == oidJSONB}
		c.rule, _ = r.masker.Column(table, string(f.Name))
		cols[i] = c
	}
	r.cols = cols
	return nil
}

// formatOf applies the protocol's rule: no codes means all text, one code
// applies to every column, otherwise one code per column.
func formatOf(formats []int16, i int) int16 {
	switch {
	case len(formats) == 0:
		return 0
	case len(formats) == 1:
		return formats[0]
	case i < len(formats):
		return formats[i]
	}
	return 0
}

func (r *maskRewriter) Row(dr *pgproto3.DataRow) map[string]int {
	var hits map[string]int
	for i, v := range dr.Values {
		if v == nil {
			continue
		}
		var c maskColumn
		if i < len(r.cols) {
			c = r.cols[i]
		} else {
			c = maskColumn{scan: true} // a row wider than its description: scan everything
		}
		if c.rule != "" {
			dr.Values[i] = r.masker.MaskedColumnValue()
			hits = addHit(hits, c.rule, 1)
			continue
		}
		if !c.scan {
			continue
		}
		prefix := 0
		if c.jsonb && len(v) > 0 {
			prefix = 1
		}
		out, found := r.masker.Scan(v[prefix:])
		if len(found) == 0 {
			continue
		}
		if prefix > 0 {
			out = append([]byte{v[0]}, out...)
		}
		dr.Values[i] = out
		for _, h := range found {
			hits = addHit(hits, h.Rule, 1)
		}
	}
	return hits
}

func addHit(m map[string]int, rule string, n int) map[string]int {
	if m == nil {
		m = map[string]int{}
	}
	m[rule] += n
	return m
}

// copyPlan is how to split and mask the rows of one COPY TO STDOUT.
type copyPlan struct {
	csv       bool
	delimiter byte
	quote     byte
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
	plan := &copyPlan{delimiter: '\t', quote: '"'}
	// stmt.Text is one statement sqlfacts already classified, so its depth
	// is within sqlfacts' guard and parsing it again cannot exhaust the
	// parser's stack.
	tree, err := pg_query.Parse(stmt.Text)
	if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetCopyStmt() == nil {
		return nil, fmt.Errorf("%w: cannot read the COPY statement", ErrCannotMask)
	}
	cs := tree.Stmts[0].Stmt.GetCopyStmt()
	for _, o := range cs.Options {
		d := o.GetDefElem()
		if d == nil {
			continue
		}
		val := defElemString(d)
		switch d.Defname {
		case "format":
			plan.csv = strings.EqualFold(val, "csv")
			if plan.csv && plan.delimiter == '\t' {
				plan.delimiter = ','
			}
		case "delimiter":
			if len(val) == 1 {
				plan.delimiter = val[0]
			}
		case "quote":
			if len(val) == 1 {
				plan.quote = val[0]
			}
		}
	}

	var names []string
	var table string
	switch {
	case cs.Relation != nil && cs.Relation.Schemaname == "":
		// An unqualified name resolves through the session's search_path,
		// which the catalog connection does not share: which table this is
		// is not known here. Column names come from the statement or not
		// at all; every column rule counts as possibly matching.
		for _, a := range cs.Attlist {
			names = append(names, a.GetString_().GetSval())
		}
		if len(names) == 0 && r.masker.HasColumnRules() {
			return nil, fmt.Errorf("%w: COPY of an unqualified table cannot be masked by column; qualify it with its schema or list its columns", ErrCannotMask)
		}
	case cs.Relation != nil:
		table = cs.Relation.Schemaname + "." + cs.Relation.Relname
		for _, a := range cs.Attlist {
			names = append(names, a.GetString_().GetSval())
		}
		if len(names) == 0 {
			rows, err := r.cat.Query(context.Background(),
				"SELECT a.attname FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
				quoteQualified(cs.Relation.Schemaname, cs.Relation.Relname))
			if err != nil {
				return nil, fmt.Errorf("%w: reading the columns of %s: %w", ErrCannotMask, table, err)
			}
			for _, row := range rows {
				names = append(names, row[0])
			}
		}
		if rows, err := r.cat.Query(context.Background(),
			"SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass",
			quoteQualified(cs.Relation.Schemaname, cs.Relation.Relname)); err == nil && len(rows) == 1 {
			table = rows[0][0]
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
		plan.cols[i].scan = true
		if i < len(names) {
			plan.cols[i].rule, _ = r.masker.Column(table, names[i])
		}
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
	out, hits := r.copy.maskRow(d.Data, r.masker)
	d.Data = out
	return hits
}

// maskRow rewrites one COPY row (one CopyData message per row, as
// PostgreSQL sends them). Fields are split on the delimiter outside quotes;
// a masked field becomes the replacement, which contains no delimiter,
// quote, backslash or newline, so the row stays well-formed.
func (p *copyPlan) maskRow(row []byte, m *policy.Masker) ([]byte, map[string]int) {
	var hits map[string]int
	var out []byte
	changed := false
	start, field := 0, 0
	inQuote := false
	flush := func(end int) {
		v := row[start:end]
		nv := v
		isNull := (!p.csv && bytes.Equal(v, []byte(`\N`))) || (p.csv && len(v) == 0)
		var c maskColumn
		if field < len(p.cols) {
			c = p.cols[field]
		} else {
			c = maskColumn{scan: true}
		}
		switch {
		case isNull:
		case c.rule != "":
			nv, changed = m.MaskedColumnValue(), true
			hits = addHit(hits, c.rule, 1)
		case c.scan:
			if o, found := m.Scan(v); len(found) > 0 {
				nv, changed = o, true
				for _, h := range found {
					hits = addHit(hits, h.Rule, 1)
				}
			}
		}
		out = append(out, nv...)
		start = end + 1
		field++
	}
	end := len(row)
	if end > 0 && row[end-1] == '\n' {
		end--
	}
	for i := 0; i < end; i++ {
		b := row[i]
		switch {
		case p.csv && b == p.quote:
			inQuote = !inQuote
		case b == p.delimiter && !inQuote:
			flush(i)
			out = append(out, b)
		}
	}
	flush(end)
	out = append(out, row[end:]...)
	if !changed {
		return row, hits
	}
	return out, hits
}
