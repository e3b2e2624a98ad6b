package record

import (
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxTextBytes bounds every recorded string: a longer one (a 20 MB
// statement) is cut to this many bytes, at a character's start when it is
// UTF-8, and the event's [Truncation] says which field was cut, how long
// it was and its SHA-256, so the log still identifies exactly what ran.
const MaxTextBytes = 64 << 10

// Truncation records that the string named Field was cut to
// [MaxTextBytes]: Field is the part and the JSON name ("command.text",
// "command.mask_rules.2", "start.attributes.application_name"), Bytes the
// full length and SHA256 the hex SHA-256 of the full string.
type Truncation struct {
	Field  string `json:"field"`
	Bytes  int    `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// commandFits reports whether every string of c fits, without reflection:
// this runs once per recorded command.
func commandFits(c *Command) bool {
	for _, s := range [...]string{c.Text, c.Command, c.Kind, c.Decision, c.Rule, c.Message,
		c.Tag, c.Error, c.Recording, c.RecordingSHA256, c.Review, c.Decider} {
		if len(s) > MaxTextBytes {
			return false
		}
	}
	for _, s := range c.MaskRules {
		if len(s) > MaxTextBytes {
			return false
		}
	}
	return true
}

// capCommand cuts c's strings to MaxTextBytes (see capStrings).
func capCommand(c *Command) []Truncation {
	if commandFits(c) {
		return nil
	}
	return capStrings("command", c)
}

// capStrings cuts every string of the struct p points to (a part named
// part) that is longer than MaxTextBytes and says which it cut. Slices and
// maps are copied before a change: the caller may share them.
func capStrings(part string, p any) []Truncation {
	var cuts []Truncation
	capped := func(name, s string) string {
		if len(s) <= MaxTextBytes {
			return s
		}
		sum := sha256.Sum256([]byte(s))
		cuts = append(cuts, Truncation{Field: part + "." + name, Bytes: len(s), SHA256: hex.EncodeToString(sum[:])})
		return cutText(s)
	}
	v := reflect.ValueOf(p).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		switch {
		case f.Kind() == reflect.String:
			f.SetString(capped(name, f.String()))
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			var n reflect.Value
			for j := range f.Len() {
				s := f.Index(j).String()
				if len(s) <= MaxTextBytes {
					continue
				}
				if !n.IsValid() {
					n = reflect.MakeSlice(f.Type(), f.Len(), f.Len())
					reflect.Copy(n, f)
				}
				n.Index(j).SetString(capped(name+"."+strconv.Itoa(j), s))
			}
			if n.IsValid() {
				f.Set(n)
			}
		case f.Kind() == reflect.Map && f.Type().Elem().Kind() == reflect.String:
			// Keys are the gateway's own names (database, user, ...); only
			// values come from clients.
			var n reflect.Value
			for it := f.MapRange(); it.Next(); {
				if it.Value().Len() > MaxTextBytes {
					n = reflect.MakeMapWithSize(f.Type(), f.Len())
					break
				}
			}
			if !n.IsValid() {
				continue
			}
			for it := f.MapRange(); it.Next(); {
				s := capped(name+"."+it.Key().String(), it.Value().String())
				n.SetMapIndex(it.Key(), reflect.ValueOf(s).Convert(f.Type().Elem()))
			}
			f.Set(n)
		}
	}
	return cuts
}

// cutText is s cut to MaxTextBytes, at a character's start unless that is
// more than utf8.UTFMax bytes back (s is not UTF-8 there).
func cutText(s string) string {
	cut := MaxTextBytes
	for back := cut; back > MaxTextBytes-utf8.UTFMax; back-- {
		if utf8.RuneStart(s[back]) {
			cut = back
			break
		}
	}
	return s[:cut]
}
