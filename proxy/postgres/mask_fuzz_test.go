package postgres

import (
	"bytes"
	"testing"
)

// FuzzMaskBinary feeds the binary record and array decoder untrusted bytes:
// it must not panic, what it rewrites must decode again, and rewriting
// that finds nothing more (every match was masked).
func FuzzMaskBinary(f *testing.F) {
	f.Add(uint32(oidTextArray), binaryArray(oidText, []byte("ada@example.com"), nil, []byte("x")))
	f.Add(uint32(oidRecord), binaryRecord(uint32(23), []byte{0, 0, 0, 7}, uint32(oidTextArray), binaryArray(oidText, []byte("4111 1111 1111 1111"))))
	f.Add(uint32(oidRecordArray), binaryArray(oidRecord, binaryRecord(uint32(oidJSONB), []byte("\x01[4111111111111111]"))))
	f.Add(uint32(oidJSONArray), binaryArray(oidJSON, []byte(`{"a": "b@example.com"}`)))
	f.Add(uint32(oidAnyArray), binaryArray(oidText, []byte("ada@example.com")))
	f.Add(uint32(oidRecord), binaryRecord(uint32(50000), []byte("ada@example.com"), uint32(50001), binaryArray(50000, []byte("x")), uint32(59999), []byte("y")))
	f.Add(uint32(oidJSONPathArray), binaryArray(oidJSONPath, []byte("\x01$.a")))
	f.Add(uint32(oidTextArray), []byte{0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 25, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, oid uint32, v []byte) {
		if !containerBinary(oid) {
			oid = oidRecord
		}
		rw := NewMaskRewriter(nil, testMasker(t), fakeCatalog{}).(*maskRewriter)
		var hits map[string]int
		out, changed, err := rw.scanBinary(v, oid, &hits, 0)
		if err != nil {
			return
		}
		if !changed {
			if len(hits) != 0 {
				t.Fatalf("hits %v without a change", hits)
			}
			return
		}
		var again map[string]int
		if _, changed, err := rw.scanBinary(out, oid, &again, 0); err != nil || changed {
			t.Fatalf("%q masked to %q, which masks again (%v, %v)", v, out, changed, err)
		}
	})
}

// FuzzMaskCopyRow feeds the COPY row splitter untrusted rows in every
// format: it must not panic, a rewritten row keeps its fields, and
// rewriting it again finds nothing more.
func FuzzMaskCopyRow(f *testing.F) {
	f.Add(false, byte('\t'), byte('"'), byte('"'), []byte("1\tbob@example.com\\n\\\\x\t\\N\n"))
	f.Add(false, byte('|'), byte('"'), byte('"'), []byte("a\\|b|4111111111111111|7\n"))
	f.Add(true, byte(','), byte('"'), byte('\\'), []byte("\"x\\\",y\",\"bob@example.com\",,7\n"))
	f.Add(true, byte(':'), byte('\''), byte('\''), []byte("'a:b''c':bob@example.com\n"))
	f.Fuzz(func(t *testing.T, csv bool, delimiter, quote, escape byte, row []byte) {
		if delimiter == '\n' || delimiter == '\r' || delimiter == quote || (!csv && (delimiter == '\\' || delimiter >= 'a' && delimiter <= 'z')) {
			return // PostgreSQL refuses these
		}
		rw := NewMaskRewriter(nil, testMasker(t), fakeCatalog{}).(*maskRewriter)
		p := &copyPlan{csv: csv, delimiter: delimiter, quote: quote, escape: escape, null: []byte(`\N`)}
		if csv {
			p.null = []byte{}
		}
		out, _ := p.maskRow(row, rw)
		if bytes.Equal(out, row) {
			return
		}
		if a, b := p.fields(row), p.fields(out); a != b {
			t.Fatalf("%q (%d fields) masked to %q (%d fields)", row, a, out, b)
		}
		if again, _ := p.maskRow(out, rw); !bytes.Equal(again, out) {
			t.Fatalf("%q masked to %q, then to %q", row, out, again)
		}
	})
}

// fields counts a row's fields.
func (p *copyPlan) fields(row []byte) int {
	row = bytes.TrimSuffix(row, []byte("\n"))
	n := 0
	for start := 0; start <= len(row); n++ {
		start = p.fieldEnd(row, start) + 1
	}
	return n
}
