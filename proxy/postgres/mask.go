package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
)

// Masking rewrites results in the stream: columns a mask names are replaced
// whole, and detectors rewrite what they find in every text value. NULL
// stays NULL.
//
// A column mask covers a result column read straight from a table's column
// (the RowDescription names the table's OID and the attribute number), under
// whatever name the result gives it: the attribute's real name, looked up
// in the catalogue, is matched against the table and each of its ancestors.
// A computed column (no table) is matched by its result name. When the
// look-up fails, every column that comes from a table is masked: the name
// the result gives it proves nothing.
//
// A masked column whose values come in a binary format the gateway cannot
// rewrite (anything but text-like types) refuses the result instead of
// passing it through unmasked. Binary arrays and records are decoded so
// that the detectors see their text-like elements and fields; a type that
// is not built in is looked up in the catalogue (binaryKindOf), and a
// value holding one the catalogue cannot describe is withheld (NULL):
// Describe cannot refuse for it, since the types inside a record are known
// only from its rows, and MayRefuse must be certain before they come.

// ErrCannotMask refuses a result that would otherwise leave the gateway
// unmasked.
var ErrCannotMask = errors.New("result cannot be masked")

// Type OIDs whose binary representation is their text (jsonb and
// jsonpath: a version byte, then the text).
const (
	oidName       = 19
	oidText       = 25
	oidJSON       = 114
	oidXML        = 142
	oidPgNodeTree = 194
	oidUnknown    = 705
	oidBPChar     = 1042
	oidVarchar    = 1043
	oidRefcursor  = 1790
	oidCString    = 2275
	oidJSONB      = 3802
	oidJSONPath   = 4072
)

// Type OIDs of records and of arrays of text-like types and records, whose
// binary representation the gateway decodes for the detectors.
const (
	oidRecord         = 2249
	oidXMLArray       = 143
	oidJSONArray      = 199
	oidNameArray      = 1003
	oidTextArray      = 1009
	oidBPCharArray    = 1014
	oidVarcharArray   = 1015
	oidCStringArray   = 1263
	oidRefcursorArray = 2201
	oidAnyArray       = 2277 // pg_stats' value columns: array_send writes the real element type
	oidRecordArray    = 2287
	oidJSONBArray     = 3807
	oidJSONPathArray  = 4073
)

// firstCatalogueOID is PostgreSQL's FirstGenbkiObjectId: every type below
// it is built in, its OID fixed by pg_type.dat, and binaryKindOf knows it;
// a type from it on (information_schema's domains, an extension's, a
// user's domain, enum, composite or array type) is looked up.
const firstCatalogueOID = 10000

// binaryKind is how the binary values of a type are read for the
// detectors.
type binaryKind uint8

const (
	kindOther      binaryKind = iota // no text: not scanned
	kindText                         // the text itself
	kindJSON                         // JSON text
	kindJSONB                        // a version byte, then JSON text
	kindJSONPath                     // a version byte, then text
	kindRecord                       // record_send: fields with their type OIDs
	kindArray                        // array_send: elements of the type it names
	kindUnresolved                   // a type the catalogue could not describe
)

// builtinKind is binaryKind for the built-in types (OID below
// firstCatalogueOID).
func builtinKind(oid uint32) binaryKind {
	switch oid {
	case oidName, oidText, oidXML, oidPgNodeTree, oidUnknown, oidBPChar, oidVarchar, oidRefcursor, oidCString:
		return kindText
	case oidJSON:
		return kindJSON
	case oidJSONB:
		return kindJSONB
	case oidJSONPath:
		return kindJSONPath
	case oidRecord:
		return kindRecord
	case oidXMLArray, oidJSONArray, oidNameArray, oidTextArray, oidBPCharArray, oidVarcharArray, oidCStringArray,
		oidRefcursorArray, oidAnyArray, oidRecordArray, oidJSONBArray, oidJSONPathArray:
		return kindArray
	}
	return kindOther
}

func textLikeBinary(oid uint32) bool { return builtinKind(oid) == kindText }

// containerBinary reports whether the binary values of oid are a record or
// an array whose elements may hold text.
func containerBinary(oid uint32) bool {
	k := builtinKind(oid)
	return k == kindRecord || k == kindArray
}

// typeKindQuery reads how a type's values are sent in binary: its send
// function. A domain has its base type's, a composite type record_send,
// an array type array_send, an enum enum_send (its label).
const typeKindQuery = `SELECT p.proname::text FROM pg_catalog.pg_type t JOIN pg_catalog.pg_proc p ON p.oid = t.typsend WHERE t.oid = $1::pg_catalog.oid`

// sendFunctionKind is the binaryKind of a type sent by the function named
// send (base types need a superuser's C functions: the names are
// PostgreSQL's and its extensions').
func sendFunctionKind(send string) binaryKind {
	switch send {
	case "textsend", "varcharsend", "bpcharsend", "namesend", "unknownsend", "cstring_send", "xml_send",
		"pg_node_tree_send", "enum_send", "citextsend":
		return kindText
	case "json_send":
		return kindJSON
	case "jsonb_send":
		return kindJSONB
	case "jsonpath_send":
		return kindJSONPath
	case "record_send":
		return kindRecord
	case "array_send":
		return kindArray
	}
	return kindOther
}

// maxTypeKinds bounds a session's cache of looked-up types.
const maxTypeKinds = 1024

// binaryKindOf is how values of type oid are read: built-in types are
// known, others are looked up once per session (what a type OID's values
// look like never changes). A type the catalogue cannot describe (the look-
// up failed, or a transaction still open created it) is kindUnresolved,
// and is not asked about again in the same result.
func (r *maskRewriter) binaryKindOf(oid uint32) binaryKind {
	if oid < firstCatalogueOID {
		return builtinKind(oid)
	}
	if k, ok := r.types[oid]; ok {
		return k
	}
	if r.unresolved[oid] {
		return kindUnresolved
	}
	rows, err := r.cat.Query(context.Background(), typeKindQuery, oid)
	if err != nil || len(rows) != 1 || len(rows[0]) != 1 {
		if r.unresolved == nil {
			r.unresolved = map[uint32]bool{}
		}
		r.unresolved[oid] = true
		return kindUnresolved
	}
	k := sendFunctionKind(rows[0][0])
	if r.types == nil || len(r.types) >= maxTypeKinds {
		r.types = map[uint32]binaryKind{}
	}
	r.types[oid] = k
	return k
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

	types      map[uint32]binaryKind // looked-up types (binaryKindOf)
	unresolved map[uint32]bool       // types the current result could not look up
}

type maskColumn struct {
	rule string // column mask rule; "" when only detectors apply
	scan bool   // run the detectors
	enc  valueEncoding
	typ  uint32 // the type OID, for encBinaryTree
}

// valueEncoding is how a column's values are written, as far as masking
// needs to know.
type valueEncoding uint8

const (
	encText        valueEncoding = iota // text, or a binary type that is its text
	encJSON                             // json or jsonb as text: a masked value stays JSON
	encJSONB                            // binary jsonb: a version byte, then JSON text
	encBinaryTree                       // binary, read by its type's binaryKind
	encBinaryOther                      // binary, holding no text
)

// encodingOf is how values of type oid come in format (0 text, 1 binary).
func encodingOf(oid uint32, format int16) valueEncoding {
	switch {
	case format == 0 && (oid == oidJSON || oid == oidJSONB):
		return encJSON
	case format == 0:
		return encText
	case oid == oidJSONB:
		return encJSONB
	case oid == oidJSON:
		return encJSON
	case textLikeBinary(oid):
		return encText
	case containerBinary(oid), oid == oidJSONPath, oid >= firstCatalogueOID:
		return encBinaryTree
	}
	return encBinaryOther
}

// masked is the whole-value replacement in encoding e.
func (r *maskRewriter) masked(e valueEncoding) []byte {
	switch e {
	case encJSON:
		return jsonString(r.masker.MaskedColumnValue())
	case encJSONB:
		return append([]byte{1}, jsonString(r.masker.MaskedColumnValue())...)
	}
	return r.masker.MaskedColumnValue()
}

func (r *maskRewriter) Describe(rd *pgproto3.RowDescription, formats []int16) error {
	// The previous result's columns are done with: reuse their slice.
	cols := slices.Grow(r.cols[:0], len(rd.Fields))[:len(rd.Fields)]
	clear(r.unresolved) // looked up again, once, in this result
	clear(cols)
	var tables tableMemo
	for i, f := range rd.Fields {
		enc := encodingOf(f.DataTypeOID, formatOf(formats, i))
		rule := r.columnRule(&f, &tables)
		if rule != "" && (enc == encBinaryTree || enc == encBinaryOther) {
			return fmt.Errorf("%w: column %q is masked by rule %q but requested in binary format (type oid %d); request it as text", ErrCannotMask, f.Name, rule, f.DataTypeOID)
		}
		cols[i] = maskColumn{rule: rule, scan: enc != encBinaryOther, enc: enc, typ: f.DataTypeOID}
	}
	r.cols = cols
	return nil
}

// tableMemo keeps one Describe's last look-up, and whether any failed (so
// that a broken catalogue connection is not tried once per column).
type tableMemo struct {
	oid   uint32
	table Table
	err   error
}

func (m *tableMemo) get(cat Catalogue, oid uint32) (Table, error) {
	if m.err != nil || (m.oid == oid && oid != 0) {
		return m.table, m.err
	}
	m.oid = oid
	m.table, m.err = cat.Table(context.Background(), oid)
	return m.table, m.err
}

// columnRule is the column mask that covers the result column f, "" when
// none does.
func (r *maskRewriter) columnRule(f *pgproto3.FieldDescription, tables *tableMemo) string {
	if !r.masker.HasColumnRules() {
		return ""
	}
	if f.TableOID == 0 {
		// Computed: only its result name says what it is.
		rule, _ := r.masker.Column("", string(f.Name))
		return rule
	}
	t, err := tables.get(r.cat, f.TableOID)
	if err != nil {
		// Which column this is cannot be known, and its result name may
		// be an alias: mask it rather than risk a leak. The result is not
		// refused: a text value can always be masked.
		rule, _ := r.masker.AnyColumnRule()
		return rule
	}
	if t.Name == "" {
		// A table the catalogue connection cannot see (created by a
		// transaction still open): matched by the result's name.
		rule, _ := r.masker.Column("", string(f.Name))
		return rule
	}
	n := int(f.TableAttributeNumber)
	if n > len(t.Columns) || (n > 0 && t.Columns[n-1].Name == "") {
		// A column added since the look-up: its name is not known yet.
		rule, _ := r.masker.AnyColumnRule()
		return rule
	}
	if n <= 0 {
		// A system column (ctid, xmin, ...): no mask names those, but
		// match its result name all the same.
		return r.tableColumnRule(t, string(f.Name))
	}
	return r.tableColumnRule(t, t.Columns[n-1].Name)
}

// tableColumnRule is the column mask covering column of t or of one of its
// ancestors.
func (r *maskRewriter) tableColumnRule(t Table, column string) string {
	if rule, ok := r.masker.Column(t.Name, column); ok {
		return rule
	}
	for _, a := range t.Ancestors {
		if rule, ok := r.masker.Column(a, column); ok {
			return rule
		}
	}
	return ""
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
			dr.Values[i] = r.masked(c.enc)
			hits = addHit(hits, c.rule, 1)
			continue
		}
		if !c.scan {
			continue
		}
		out, changed, err := r.scanBinaryValue(v, c.enc, c.typ, &hits)
		switch {
		case errors.Is(err, errUnresolvedType):
			// What it holds cannot be known: withheld (NULL is the one
			// value every type has) rather than passed unread.
			dr.Values[i] = nil
			rule, _ := r.masker.DetectorRule()
			hits = addHit(hits, rule, 1)
		case changed:
			dr.Values[i] = out
		}
	}
	return hits
}

// errUnresolvedType: a binary value holds a value of a type the
// catalogue could not describe.
var errUnresolvedType = errors.New("binary value of an unknown type")

// scanBinaryValue is scanValue, with the error of a binary value holding a
// type that could not be looked up.
func (r *maskRewriter) scanBinaryValue(v []byte, e valueEncoding, oid uint32, hits *map[string]int) ([]byte, bool, error) {
	if e != encBinaryTree {
		out, changed := r.scanValue(v, e, oid, hits)
		return out, changed, nil
	}
	if !r.masker.HasDetectors() {
		return v, false, nil
	}
	out, changed, err := r.scanBinary(v, oid, hits, 0)
	switch {
	case errors.Is(err, errUnresolvedType):
		return nil, false, err
	case err != nil:
		// Not what PostgreSQL sends: there is nothing to read.
		return v, false, nil
	}
	return out, changed, nil
}

// scanValue runs the detectors over a value of encoding e (and type oid),
// counting what they find in hits. It returns v itself when nothing
// changed.
func (r *maskRewriter) scanValue(v []byte, e valueEncoding, oid uint32, hits *map[string]int) ([]byte, bool) {
	switch e {
	case encBinaryTree:
		out, changed, err := r.scanBinaryValue(v, e, oid, hits)
		if err != nil {
			return v, false
		}
		return out, changed
	case encBinaryOther:
		return v, false
	case encJSONB:
		return r.scanVersioned(v, true, hits)
	}
	return r.scanText(v, e == encJSON, hits)
}

// scanVersioned scans a binary jsonb or jsonpath: a version byte, then the
// text.
func (r *maskRewriter) scanVersioned(v []byte, isJSON bool, hits *map[string]int) ([]byte, bool) {
	if len(v) == 0 {
		return v, false
	}
	out, changed := r.scanText(v[1:], isJSON, hits)
	if !changed {
		return v, false
	}
	return append([]byte{v[0]}, out...), true
}

// Text runs the detectors over text upstream sends outside a result.
func (r *maskRewriter) Text(s string) (string, map[string]int) {
	var hits map[string]int
	out, changed := r.scanText([]byte(s), false, &hits)
	if !changed {
		return s, nil
	}
	return string(out), hits
}

// maskNoticeFields passes mask (session.maskText) every field of an
// ErrorResponse or NoticeResponse a value can come back in: the text ones,
// the names a RAISE sets at will (RAISE ... USING COLUMN = ssn puts a value
// in ColumnName), and fields a newer server sends that pgproto3 does not
// know. Severity, code, position and the server's source location are the
// server's own.
func maskNoticeFields(m *pgproto3.ErrorResponse, mask func(fields ...*string)) {
	fields := []*string{&m.Message, &m.Detail, &m.Hint, &m.Where, &m.InternalQuery,
		&m.SchemaName, &m.TableName, &m.ColumnName, &m.DataTypeName, &m.ConstraintName}
	if len(m.UnknownFields) == 0 {
		mask(fields...)
		return
	}
	keys := make([]byte, 0, len(m.UnknownFields))
	values := make([]string, 0, len(m.UnknownFields))
	for k, v := range m.UnknownFields {
		keys = append(keys, k)
		values = append(values, v)
	}
	for i := range values {
		fields = append(fields, &values[i])
	}
	mask(fields...)
	for i, k := range keys {
		m.UnknownFields[k] = values[i]
	}
}

// scanText runs the detectors over text; JSON text stays JSON.
func (r *maskRewriter) scanText(v []byte, isJSON bool, hits *map[string]int) ([]byte, bool) {
	out, found := r.masker.Scan(v)
	if len(found) == 0 {
		return v, false
	}
	for _, h := range found {
		*hits = addHit(*hits, h.Rule, h.Count)
	}
	if isJSON {
		out = jsonAfterScan(out)
	}
	return out, true
}

func addHit(m map[string]int, rule string, n int) map[string]int {
	if m == nil {
		m = map[string]int{}
	}
	m[rule] += n
	return m
}

// jsonString is s as a JSON string; s holds nothing JSON escapes.
func jsonString(s []byte) []byte {
	out := make([]byte, 0, len(s)+2)
	out = append(out, '"')
	out = append(out, s...)
	return append(out, '"')
}

// maskToken is how every detector's replacement starts ("[masked:email]");
// the next ']' ends it.
const maskToken = "[masked:"

// jsonAfterScan makes a detector's output valid JSON again. A replacement
// outside a JSON string (a card number written as a number) becomes a
// string, with whatever is left of the scalar around it ("-[masked:...]"
// becomes "\"-[masked:...]\""). If that is still not JSON (a private key
// without an END line is masked to the value's end, closing quotes and
// all), the whole value becomes the string "[masked]".
func jsonAfterScan(b []byte) []byte {
	var out []byte
	last := 0 // b[last:] is not yet in out
	inString := false
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case inString && c == '\\':
			i += 2
		case inString:
			inString = c != '"'
			i++
		case c == '"':
			inString = true
			i++
		case isJSONScalarByte(c) || tokenLen(b, i) > 0:
			start, token := i, false
			for i < len(b) {
				if n := tokenLen(b, i); n > 0 {
					i, token = i+n, true
				} else if isJSONScalarByte(b[i]) {
					i++
				} else {
					break
				}
			}
			if token {
				out = append(out, b[last:start]...)
				out = append(out, '"')
				out = append(out, b[start:i]...)
				out = append(out, '"')
				last = i
			}
		default:
			i++
		}
	}
	if out != nil {
		b = append(out, b[last:]...)
	}
	if !json.Valid(b) {
		return []byte(`"[masked]"`)
	}
	return b
}

// isJSONScalarByte: the bytes of a JSON number or literal.
func isJSONScalarByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '+' || c == '.'
}

// tokenLen is the length of the replacement token at b[i:], 0 if none.
func tokenLen(b []byte, i int) int {
	if !bytes.HasPrefix(b[i:], []byte(maskToken)) {
		return 0
	}
	end := bytes.IndexByte(b[i+len(maskToken):], ']')
	if end < 0 {
		return 0
	}
	return len(maskToken) + end + 1
}

// Binary records and arrays (PostgreSQL's record_send and array_send):
//
//	record: int32 count, then per field: uint32 type OID, int32 length
//	        (-1: NULL), the value
//	array:  int32 dimensions, int32 has-NULL flag, uint32 element type
//	        OID, per dimension int32 size and int32 lower bound, then per
//	        element int32 length (-1: NULL), the value
//
// The values inside are binary too, each of the type its OID names: text-
// like ones are scanned, records and arrays are decoded in turn (up to
// maxTreeDepth deep), anything else is left as it is.

// maxTreeDepth bounds the nesting decoded: deeper values are left unscanned.
const maxTreeDepth = 8

// maxArrayDims is PostgreSQL's MAXDIM.
const maxArrayDims = 6

// errBadBinary: a binary record or array that does not decode.
var errBadBinary = errors.New("malformed binary record or array")

// scanBinary scans the binary value v of type oid.
func (r *maskRewriter) scanBinary(v []byte, oid uint32, hits *map[string]int, depth int) ([]byte, bool, error) {
	if depth > maxTreeDepth {
		return v, false, nil
	}
	switch r.binaryKindOf(oid) {
	case kindJSONB:
		out, changed := r.scanVersioned(v, true, hits)
		return out, changed, nil
	case kindJSONPath:
		out, changed := r.scanVersioned(v, false, hits)
		return out, changed, nil
	case kindJSON:
		out, changed := r.scanText(v, true, hits)
		return out, changed, nil
	case kindText:
		out, changed := r.scanText(v, false, hits)
		return out, changed, nil
	case kindRecord:
		return r.scanRecord(v, hits, depth)
	case kindArray:
		return r.scanArray(v, hits, depth)
	case kindUnresolved:
		return nil, false, errUnresolvedType
	}
	return v, false, nil
}

// binaryReader reads the big-endian integers of a binary value.
type binaryReader struct {
	b   []byte
	off int
	err error
}

func (br *binaryReader) int32() int32 {
	if br.err != nil || len(br.b)-br.off < 4 {
		br.err = errBadBinary
		return 0
	}
	v := int32(binary.BigEndian.Uint32(br.b[br.off:]))
	br.off += 4
	return v
}

// value reads a length-prefixed value: nil for NULL.
func (br *binaryReader) value() (start, end int, null bool) {
	n := br.int32()
	if br.err != nil {
		return 0, 0, false
	}
	if n == -1 {
		return br.off, br.off, true
	}
	if n < 0 || int(n) > len(br.b)-br.off {
		br.err = errBadBinary
		return 0, 0, false
	}
	start = br.off
	br.off += int(n)
	return start, br.off, false
}

// treeEdit rewrites a binary record or array: the values that changed are
// replaced and their length prefixes with them.
type treeEdit struct {
	src  []byte
	out  []byte
	last int // src[last:] is not yet in out
}

// replace puts value in place of src[start:end], whose 4-byte length
// prefix comes just before start.
func (e *treeEdit) replace(start, end int, value []byte) {
	if e.out == nil {
		e.out = make([]byte, 0, len(e.src)+len(value))
	}
	e.out = append(e.out, e.src[e.last:start-4]...)
	e.out = binary.BigEndian.AppendUint32(e.out, uint32(len(value)))
	e.out = append(e.out, value...)
	e.last = end
}

// next reads the next value from br (a length, -1 for NULL, then the
// bytes) and scans it as type oid, putting what the scan made in its place.
func (e *treeEdit) next(r *maskRewriter, br *binaryReader, oid uint32, hits *map[string]int, depth int) error {
	start, end, null := br.value()
	if br.err != nil || null {
		return br.err
	}
	out, changed, err := r.scanElement(e.src[start:end], oid, hits, depth)
	if err != nil {
		return err
	}
	if changed {
		e.replace(start, end, out)
	}
	return nil
}

// done is the edited value once br has read all of it, and whether
// anything changed.
func (e *treeEdit) done(br *binaryReader) ([]byte, bool, error) {
	if br.off != len(e.src) {
		return nil, false, errBadBinary
	}
	if e.out == nil {
		return e.src, false, nil
	}
	return append(e.out, e.src[e.last:]...), true, nil
}

func (r *maskRewriter) scanRecord(v []byte, hits *map[string]int, depth int) ([]byte, bool, error) {
	br := binaryReader{b: v}
	n := br.int32()
	if n < 0 || int(n) > len(v)/8 {
		return nil, false, errBadBinary
	}
	edit := treeEdit{src: v}
	for range n {
		oid := uint32(br.int32())
		if err := edit.next(r, &br, oid, hits, depth); err != nil {
			return nil, false, err
		}
	}
	return edit.done(&br)
}

func (r *maskRewriter) scanArray(v []byte, hits *map[string]int, depth int) ([]byte, bool, error) {
	br := binaryReader{b: v}
	dims := br.int32()
	br.int32() // has NULLs
	elem := uint32(br.int32())
	if br.err != nil || dims < 0 || dims > maxArrayDims {
		return nil, false, errBadBinary
	}
	count := int64(1)
	if dims == 0 {
		count = 0
	}
	for range dims {
		size := br.int32()
		br.int32() // lower bound
		if size < 0 {
			return nil, false, errBadBinary
		}
		count *= int64(size)
		if count > int64(len(v)/4) { // every element takes 4 bytes at least
			return nil, false, errBadBinary
		}
	}
	if br.err != nil {
		return nil, false, br.err
	}
	edit := treeEdit{src: v}
	for range count {
		if err := edit.next(r, &br, elem, hits, depth); err != nil {
			return nil, false, err
		}
	}
	return edit.done(&br)
}

// scanElement scans one element or field of type oid.
func (r *maskRewriter) scanElement(v []byte, oid uint32, hits *map[string]int, depth int) ([]byte, bool, error) {
	return r.scanBinary(v, oid, hits, depth+1)
}
