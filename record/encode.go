package record

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendEvent appends encoding/json's encoding of ev to dst. Command
// events, one per statement on a busy gateway, are encoded by hand: the
// same bytes as json.Marshal (TestAppendEventMatchesJSON and FuzzAppendEvent
// hold it to that, since Verify demands the canonical form) at a fraction
// of the reflection's cost. Every other event goes through json.Marshal.
func appendEvent(dst []byte, ev *Event) ([]byte, error) {
	if ev.Type != EventCommand || ev.Command == nil || ev.Start != nil || ev.End != nil || !fastTime(ev.Time) {
		b, err := json.Marshal(ev)
		if err != nil {
			return dst, err
		}
		return append(dst, b...), nil
	}
	c := ev.Command
	dst = append(dst, `{"type":`...)
	dst = appendString(dst, ev.Type)
	dst = append(dst, `,"time":"`...)
	dst = ev.Time.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","session":`...)
	dst = appendString(dst, ev.Session)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, ev.Seq, 10)
	dst = append(dst, `,"command":{"text":`...)
	dst = appendText(dst, c.Text)
	dst = appendOptText(dst, `,"command":`, c.Command)
	dst = appendOptText(dst, `,"kind":`, c.Kind)
	dst = append(dst, `,"decision":`...)
	dst = appendText(dst, c.Decision)
	dst = appendOptText(dst, `,"rule":`, c.Rule)
	dst = appendOptText(dst, `,"message":`, c.Message)
	if c.DurationMS != 0 {
		if math.IsNaN(c.DurationMS) || math.IsInf(c.DurationMS, 0) {
			return dst, &json.UnsupportedValueError{Str: strconv.FormatFloat(c.DurationMS, 'g', -1, 64)}
		}
		dst = append(dst, `,"duration_ms":`...)
		dst = appendFloat(dst, c.DurationMS)
	}
	if c.Rows != 0 {
		dst = append(dst, `,"rows":`...)
		dst = strconv.AppendInt(dst, c.Rows, 10)
	}
	dst = appendOptText(dst, `,"tag":`, c.Tag)
	dst = appendOptText(dst, `,"error":`, c.Error)
	if c.Masked != 0 {
		dst = append(dst, `,"masked":`...)
		dst = strconv.AppendInt(dst, c.Masked, 10)
	}
	if len(c.MaskRules) > 0 {
		dst = append(dst, `,"mask_rules":[`...)
		for i, r := range c.MaskRules {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendText(dst, r)
		}
		dst = append(dst, ']')
	}
	dst = appendOptText(dst, `,"recording":`, c.Recording)
	dst = appendOptText(dst, `,"recording_sha256":`, c.RecordingSHA256)
	if c.RecordingBytes != 0 {
		dst = append(dst, `,"recording_bytes":`...)
		dst = strconv.AppendInt(dst, c.RecordingBytes, 10)
	}
	dst = appendOptText(dst, `,"review":`, c.Review)
	dst = appendOptText(dst, `,"decider":`, c.Decider)
	dst = append(dst, '}')
	if len(ev.Truncated) > 0 {
		dst = append(dst, `,"truncated":[`...)
		for i, t := range ev.Truncated {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"field":`...)
			dst = appendString(dst, t.Field)
			dst = append(dst, `,"bytes":`...)
			dst = strconv.AppendInt(dst, int64(t.Bytes), 10)
			dst = append(dst, `,"sha256":`...)
			dst = appendString(dst, t.SHA256)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	dst = appendOptString(dst, `,"prev":`, ev.Prev)
	dst = append(dst, `,"hash":`...)
	dst = appendString(dst, ev.Hash)
	return append(dst, '}'), nil
}

// fastTime reports a time whose JSON the hand encoder writes exactly as
// time.Time.MarshalJSON does: UTC, and a four-digit year.
func fastTime(t time.Time) bool {
	return t.Location() == time.UTC && t.Year() >= 0 && t.Year() <= 9999
}

// appendOptText is appendOptString for free text (see wireText).
func appendOptText(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return appendText(append(dst, key...), s)
}

// appendText writes free text as a JSON string in its stored form
// (wireText): as it is when it is UTF-8 and does not start with NUL.
func appendText(dst []byte, s string) []byte {
	if needsQuoting(s) {
		s = wireText(s)
	}
	return appendString(dst, s)
}

func appendOptString(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return appendString(append(dst, key...), s)
}

// appendFloat writes f as encoding/json writes a float64: the shortest
// representation, in exponent form only for very small or large values,
// with a one-digit negative exponent written without padding.
func appendFloat(dst []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// plainJSON marks the bytes a JSON string holds as they are: ASCII from
// space on, except the quote, the backslash and what encoding/json escapes
// for HTML (<, >, &). One look-up per byte instead of six comparisons: the
// statement text of every command goes through here.
var plainJSON = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = true
	}
	for _, b := range `"\<>&` {
		t[b] = false
	}
	return t
}()

// appendString writes s as a JSON string the way encoding/json does with
// its default HTML escaping: <, > and & as \u00XX, control characters with
// their short escape or \u00XX, invalid UTF-8 as \ufffd, and U+2028 and
// U+2029 escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if plainJSON[b] {
			i++
			continue
		}
		if b < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
