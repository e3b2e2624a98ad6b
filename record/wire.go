package record

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"unicode/utf8"
)

// Free text in a log (every string of [Start], [Command], [Result] and
// [End]) comes from agents and targets and need not be UTF-8: a Latin-1
// statement, an application_name with a 0xff byte, an executable path. A
// JSON string cannot carry such bytes (encoding/json would write U+FFFD,
// losing them), so a string that is not valid UTF-8, or that starts with
// NUL, is stored as NUL followed by its Go-quoted form without the quotes
// (strconv.Quote): "caf\xe9" is stored as "\u0000caf\\xe9". Every other
// string is stored as it is. The mapping is one-to-one, readable, and
// undone when a log is read.

// quotedMark starts a string stored in its quoted form.
const quotedMark = "\x00"

// needsQuoting reports whether s is stored in its quoted form.
func needsQuoting(s string) bool {
	return s != "" && (s[0] == quotedMark[0] || !utf8.ValidString(s))
}

// wireText is how s is stored in a log.
func wireText(s string) string {
	if !needsQuoting(s) {
		return s
	}
	q := strconv.Quote(s)
	return quotedMark + q[1:len(q)-1]
}

// errBadQuoted marks a stored string that starts with NUL but is not a
// quoted form.
var errBadQuoted = errors.New("text starting with NUL is not a quoted string")

// unwireText undoes wireText.
func unwireText(s string) (string, error) {
	if s == "" || s[0] != quotedMark[0] {
		return s, nil
	}
	u, err := strconv.Unquote(`"` + s[1:] + `"`)
	if err != nil {
		return "", errBadQuoted
	}
	return u, nil
}

// mapStrings replaces every string of the struct v points to (fields,
// elements of string slices, keys and values of string maps) with f's
// result. Slices and maps are replaced by new ones, never written to: the
// caller's Command may share them.
func mapStrings(v reflect.Value, f func(string) (string, error)) error {
	v = v.Elem()
	for i := range v.NumField() {
		fv := v.Field(i)
		switch {
		case fv.Kind() == reflect.String:
			s, err := f(fv.String())
			if err != nil {
				return err
			}
			fv.SetString(s)
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String && !fv.IsNil():
			n := reflect.MakeSlice(fv.Type(), fv.Len(), fv.Len())
			for j := range fv.Len() {
				s, err := f(fv.Index(j).String())
				if err != nil {
					return err
				}
				n.Index(j).SetString(s)
			}
			fv.Set(n)
		case fv.Kind() == reflect.Map && fv.Type().Key().Kind() == reflect.String &&
			fv.Type().Elem().Kind() == reflect.String && !fv.IsNil():
			n := reflect.MakeMapWithSize(fv.Type(), fv.Len())
			for it := fv.MapRange(); it.Next(); {
				k, err := f(it.Key().String())
				if err != nil {
					return err
				}
				e, err := f(it.Value().String())
				if err != nil {
					return err
				}
				n.SetMapIndex(reflect.ValueOf(k).Convert(fv.Type().Key()), reflect.ValueOf(e).Convert(fv.Type().Elem()))
			}
			fv.Set(n)
		}
	}
	return nil
}

func toWire(s string) (string, error) { return wireText(s), nil }

// marshalWire encodes *p (a copy the caller owns) with its strings stored
// as wireText says.
func marshalWire[T any](p *T) ([]byte, error) {
	if err := mapStrings(reflect.ValueOf(p), toWire); err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

// unmarshalWire decodes data into *p and restores its stored strings.
func unmarshalWire[T any](data []byte, p *T) error {
	if err := json.Unmarshal(data, p); err != nil {
		return err
	}
	return mapStrings(reflect.ValueOf(p), unwireText)
}

// The wire types are the parts without their methods, for encoding/json.
type (
	wireStart   Start
	wireCommand Command
	wireResult  Result
	wireEnd     End
)

// MarshalJSON stores s's strings as the log does (see the package comment).
func (s Start) MarshalJSON() ([]byte, error) { w := wireStart(s); return marshalWire(&w) }

// UnmarshalJSON restores s's strings from their stored form.
func (s *Start) UnmarshalJSON(data []byte) error { return unmarshalWire(data, (*wireStart)(s)) }

// MarshalJSON stores c's strings as the log does (see the package comment).
func (c Command) MarshalJSON() ([]byte, error) { w := wireCommand(c); return marshalWire(&w) }

// UnmarshalJSON restores c's strings from their stored form.
func (c *Command) UnmarshalJSON(data []byte) error { return unmarshalWire(data, (*wireCommand)(c)) }

// MarshalJSON stores r's strings as the log does (see the package comment).
func (r Result) MarshalJSON() ([]byte, error) { w := wireResult(r); return marshalWire(&w) }

// UnmarshalJSON restores r's strings from their stored form.
func (r *Result) UnmarshalJSON(data []byte) error { return unmarshalWire(data, (*wireResult)(r)) }

// MarshalJSON stores e's strings as the log does (see the package comment).
func (e End) MarshalJSON() ([]byte, error) { w := wireEnd(e); return marshalWire(&w) }

// UnmarshalJSON restores e's strings from their stored form.
func (e *End) UnmarshalJSON(data []byte) error { return unmarshalWire(data, (*wireEnd)(e)) }
