package policy

import (
	"fmt"
	"strings"
)

// mask is a compiled MaskConfig.
type mask struct {
	name      string
	targets   []string // nil: all
	workloads []string // nil: all
	columns   []columnMatch
	detectors uint8 // bit d set: detector d runs
}

// columnMatch is one entry of a mask's columns; schema and table are "" when
// the entry does not name them.
type columnMatch struct {
	schema, table, column string
}

// parseColumn parses "column", "table.column" or "schema.table.column".
// Each part is a plain identifier (letters, digits, _ and $, not starting
// with a digit), matched without regard to case: anything else — a quoted
// name, a wildcard, a list — could never match a column, and a mask that
// silently masks nothing is a leak.
func parseColumn(s string) (columnMatch, error) {
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return columnMatch{}, fmt.Errorf("invalid column %q (want column, table.column or schema.table.column)", s)
	}
	for _, p := range parts {
		if why := badIdentifier(p); why != "" {
			return columnMatch{}, fmt.Errorf("invalid column %q: %s (want column, table.column or schema.table.column, each a plain name matched without regard to case; list columns one by one)", s, why)
		}
	}
	var c columnMatch
	c.column = parts[len(parts)-1]
	if len(parts) >= 2 {
		c.table = parts[len(parts)-2]
	}
	if len(parts) == 3 {
		c.schema = parts[0]
	}
	return c, nil
}

// badIdentifier says why p is not a plain identifier, or "".
func badIdentifier(p string) string {
	if p == "" {
		return "an empty name"
	}
	for i, r := range p {
		switch {
		case r == '_' || r == '$' && i > 0 || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= 0x80:
		case r >= '0' && r <= '9' && i > 0:
		case r == '"':
			return "quoted names are not supported"
		case r == '*':
			return "wildcards are not supported"
		default:
			return fmt.Sprintf("%q cannot be part of a name", r)
		}
	}
	return ""
}

// Masker applies the masks that match one request. A nil *Masker masks
// nothing. It is immutable and safe for concurrent use.
type Masker struct {
	columns   []maskedColumn
	detectors []maskDetector // in scan order, each detector once
}

type maskedColumn struct {
	rule string
	columnMatch
}

type maskDetector struct {
	detector detector
	rule     string // the first mask (in configuration order) that enables it
}

// Hit counts the values one detector masked.
type Hit struct {
	Rule     string // the mask rule's name
	Detector string // email, credit_card, iban, aws_key, jwt, private_key
	Count    int    // how many values it replaced
}

// Masker returns the masks that apply to r's target and workload, or nil
// when none does.
func (p *Policy) Masker(r Request) *Masker {
	var m *Masker
	var rules [numDetectors]string
	for i := range p.masks {
		mk := &p.masks[i]
		if !matchName(mk.targets, r.Target.Name) || !matchName(mk.workloads, r.Workload.Name) {
			continue
		}
		if m == nil {
			m = &Masker{}
		}
		for _, c := range mk.columns {
			m.columns = append(m.columns, maskedColumn{rule: mk.name, columnMatch: c})
		}
		for d := range numDetectors {
			if mk.detectors&(1<<d) != 0 && rules[d] == "" {
				rules[d] = mk.name
			}
		}
	}
	if m == nil {
		return nil
	}
	for d := range numDetectors {
		if rules[d] != "" {
			m.detectors = append(m.detectors, maskDetector{detector: d, rule: rules[d]})
		}
	}
	return m
}

// HasColumnRules reports whether any column mask applies.
func (m *Masker) HasColumnRules() bool { return m != nil && len(m.columns) > 0 }

// HasDetectors reports whether any value detector applies.
func (m *Masker) HasDetectors() bool { return m != nil && len(m.detectors) > 0 }

// Column reports whether a column mask covers the result column named
// column of table, and names the mask. table is "schema.table", "table",
// or "" when unknown (a computed column). Names compare case-insensitively.
//
// When the result does not say enough to rule a qualified entry out, the
// entry applies: "customers.email" masks an "email" column of unknown
// table, and "public.customers.email" masks "customers"'s email when the
// schema is unknown. A masked column that did not need it is a nuisance; an
// unmasked one is a leak.
func (m *Masker) Column(table, column string) (rule string, ok bool) {
	if m == nil {
		return "", false
	}
	schema, tbl := "", table
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		schema, tbl = table[:i], table[i+1:]
	}
	for _, c := range m.columns {
		if !strings.EqualFold(c.column, column) {
			continue
		}
		if c.table != "" && tbl != "" && !strings.EqualFold(c.table, tbl) {
			continue
		}
		if c.schema != "" && schema != "" && !strings.EqualFold(c.schema, schema) {
			continue
		}
		return c.rule, true
	}
	return "", false
}

// AnyColumnRule names the first column mask, for a column any of them
// might cover: one whose table or column name could not be looked up.
func (m *Masker) AnyColumnRule() (rule string, ok bool) {
	if !m.HasColumnRules() {
		return "", false
	}
	return m.columns[0].rule, true
}

// DetectorRule names the mask of the first detector that runs, for a
// value the detectors could not read and that was withheld whole.
func (m *Masker) DetectorRule() (rule string, ok bool) {
	if !m.HasDetectors() {
		return "", false
	}
	return m.detectors[0].rule, true
}

// MaskedColumnValue is the replacement for a whole masked value. Each call
// returns a new slice, which the caller may keep or modify.
func (m *Masker) MaskedColumnValue() []byte { return []byte("[masked]") }

// Scan runs the detectors of every matching mask over the text value v and
// replaces each match by "[masked:<detector>]", with one Hit per detector
// that replaced anything, counting its replacements. When nothing matches
// it returns v itself and nil, without allocating; otherwise a new slice
// (v is never modified).
//
// Memory is the masked copy's, whatever the number of matches: a detector
// that finds something runs twice, once to count the replacement's size,
// once to write it; and a later detector's replacement reuses the buffer
// an earlier one's made obsolete.
func (m *Masker) Scan(v []byte) (out []byte, hits []Hit) {
	if m == nil {
		return v, nil
	}
	var counts [numDetectors]int
	out = v
	var spare []byte // a buffer of ours that out no longer uses
	// Passes repeat until one finds nothing, so the result holds no match of
	// any detector even where one detector's replacement would uncover
	// another's match. This ends: tokens never take part in a match, so
	// every replacement consumes bytes of v, of which there are finitely
	// many.
	for {
		found := false
		for _, d := range m.detectors {
			token := d.detector.token()
			n, size := 0, len(out)
			d.detector.each(out, func(s span) {
				n++
				size += len(token) - (s.end - s.start)
			})
			if n == 0 {
				continue
			}
			found = true
			counts[d.detector] += n
			dst := spare[:0]
			if cap(dst) < size {
				dst = make([]byte, 0, size)
			}
			prev := 0
			d.detector.each(out, func(s span) {
				dst = append(dst, out[prev:s.start]...)
				dst = append(dst, token...)
				prev = s.end
			})
			dst = append(dst, out[prev:]...)
			if &out[0] != &v[0] {
				spare = out
			}
			out = dst
		}
		if !found {
			break
		}
	}
	for _, d := range m.detectors {
		if n := counts[d.detector]; n > 0 {
			if hits == nil {
				hits = make([]Hit, 0, len(m.detectors))
			}
			hits = append(hits, Hit{Rule: d.rule, Detector: d.detector.String(), Count: n})
		}
	}
	return out, hits
}
