package policy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"unicode"
	"unicode/utf8"
)

// Value detectors: pure functions that find sensitive values in untrusted
// text. Each passes the spans it finds, in order and without overlap, to
// emit, and allocates nothing: a value holding millions of matches costs
// no memory beyond the masked copy Scan makes of it. They only scan
// forward with bounded look-around (no backtracking), so every one is
// linear in the input.
//
// Every detector obeys one rule that masking relies on: replacing its
// matches by a bracketed token ("[masked:email]") never creates a new match
// of the same detector. A token never takes part in a match, so a match's
// neighbourhood is all a detector may look at, and it only looks at
// characters that a replacement cannot turn into something it accepts.

// detector names one value detector.
type detector uint8

// The detectors, in the order Scan runs them: containers first (a PEM
// block, a JWT), so that the pieces inside them are masked as the whole.
const (
	detectPrivateKey detector = iota
	detectJWT
	detectAWSKey
	detectIBAN
	detectCreditCard
	detectEmail
	numDetectors
)

func (d detector) String() string {
	switch d {
	case detectPrivateKey:
		return "private_key"
	case detectJWT:
		return "jwt"
	case detectAWSKey:
		return "aws_key"
	case detectIBAN:
		return "iban"
	case detectCreditCard:
		return "credit_card"
	case detectEmail:
		return "email"
	}
	return "unknown"
}

// token is what replaces a match.
func (d detector) token() string {
	switch d {
	case detectPrivateKey:
		return "[masked:private_key]"
	case detectJWT:
		return "[masked:jwt]"
	case detectAWSKey:
		return "[masked:aws_key]"
	case detectIBAN:
		return "[masked:iban]"
	case detectCreditCard:
		return "[masked:credit_card]"
	case detectEmail:
		return "[masked:email]"
	}
	return "[masked]"
}

// each passes d's matches in b to emit, in order.
func (d detector) each(b []byte, emit func(span)) {
	switch d {
	case detectPrivateKey:
		findPrivateKeys(b, emit)
	case detectJWT:
		findJWTs(b, emit)
	case detectAWSKey:
		findAWSKeys(b, emit)
	case detectIBAN:
		findIBANs(b, emit)
	case detectCreditCard:
		findCards(b, emit)
	case detectEmail:
		findEmails(b, emit)
	}
}

// find appends d's matches in b to dst.
func (d detector) find(b []byte, dst []span) []span {
	d.each(b, func(s span) { dst = append(dst, s) })
	return dst
}

func detectorByName(name string) (detector, bool) {
	for d := range numDetectors {
		if d.String() == name {
			return d, true
		}
	}
	return 0, false
}

// detectorNames lists the detectors as the configuration spells them.
func detectorNames() []string {
	return []string{"email", "credit_card", "iban", "aws_key", "jwt", "private_key"}
}

// span is a match: b[start:end].
type span struct{ start, end int }

// replaceSpans returns a new slice: b with every span replaced by token.
func replaceSpans(b []byte, spans []span, token string) []byte {
	n := len(b)
	for _, s := range spans {
		n += len(token) - (s.end - s.start)
	}
	out := make([]byte, 0, n)
	prev := 0
	for _, s := range spans {
		out = append(out, b[prev:s.start]...)
		out = append(out, token...)
		prev = s.end
	}
	return append(out, b[prev:]...)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isAlpha(c byte) bool { return isUpper(c) || ('a' <= c && c <= 'z') }
func isAlnum(c byte) bool { return isAlpha(c) || isDigit(c) }

// runEnd returns the end of the run of bytes accepted by in starting at i.
func runEnd(b []byte, i int, in func(byte) bool) int {
	for i < len(b) && in(b[i]) {
		i++
	}
	return i
}

// ---- email ----

// Limits from RFC 5321.
const (
	maxEmailDomain = 253
	maxEmailLabel  = 63
)

// isEmailLocal is the practical subset of RFC 5322's dot-atom that may
// start or end a local part: the rarer symbols are taken only between two
// letters or digits (isEmailSymbol), and quoted local parts are read on
// their own (quotedLocalStart), so that text around an address
// ("to='bob@x.org'", "key=bob@x.org") is not swallowed into it.
func isEmailLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

// isEmailSymbol is the rest of RFC 5322's atext but for '=', '/', '?' and
// '&', which join a label or a URL to an address far more often than they
// are part of one: "john!doe@…", "o'brien@…".
func isEmailSymbol(c byte) bool {
	switch c {
	case '!', '#', '$', '\'', '*', '^', '`', '{', '|', '}', '~':
		return true
	}
	return false
}

func isEmailLabel(c byte) bool { return isAlnum(c) || c == '-' }

// findEmails finds local@domain.tld and local@[IPv4 or IPv6 literal]: a
// dot-atom local part (no leading, trailing or doubled dots; letters beyond
// ASCII too, as RFC 6531 allows) or a quoted one ("john doe"@…), and a
// domain of at least two labels whose last is at least two letters. A
// local part is not held to RFC 5321's 64 bytes: an address must not
// escape the mask by a long prefix ("-----...-----bob@example.com"), and
// taking the whole run keeps a replacement from turning the text before it
// into the end of another address.
func findEmails(b []byte, emit func(span)) {
	floor := 0 // a local part never reaches back into the previous match
	for i := 0; i < len(b); {
		at := bytes.IndexByte(b[i:], '@')
		if at < 0 {
			break
		}
		at += i
		i = at + 1
		start, ok := emailLocalStart(b, floor, at)
		if !ok {
			continue
		}
		end, ok := emailDomainEnd(b, at+1)
		if !ok {
			end, ok = emailLiteralEnd(b, at+1)
		}
		if !ok {
			continue
		}
		emit(span{start, end})
		floor, i = end, end
	}
}

func emailLocalStart(b []byte, floor, at int) (int, bool) {
	if at == floor || b[at-1] == '.' {
		return 0, false
	}
	if b[at-1] == '"' {
		return quotedLocalStart(b, floor, at-1)
	}
	s := at
	for s > floor {
		c := b[s-1]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeLastRune(b[floor:s])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				break
			}
			s -= size
			continue
		}
		if isEmailSymbol(c) && s < at && isAlnum(b[s]) && s-2 >= floor && isAlnum(b[s-2]) {
			s-- // "john!doe": a symbol inside the local part
			continue
		}
		if !isEmailLocal(c) || (c == '.' && s < at && b[s] == '.') {
			break // at "..", the local part starts after it
		}
		s--
	}
	for s < at && b[s] == '.' {
		s++
	}
	return s, s < at
}

// quotedLocalStart reads back from the closing quote at q to the opening
// one: RFC 5322's quoted string, printable ASCII (backslash escapes
// included), but for '@' and the brackets a replacement token is written
// with, so that a masked address inside never makes one.
func quotedLocalStart(b []byte, floor, q int) (int, bool) {
	for s := q - 1; s >= floor; s-- {
		switch c := b[s]; {
		case c == '"':
			return s, s < q-1
		case c < ' ' || c > '~' || c == '@' || c == '[' || c == ']':
			return 0, false
		}
	}
	return 0, false
}

// emailLiteralEnd returns the end of a domain literal starting at from:
// "[192.168.0.1]" or "[IPv6:2001:db8::1]".
func emailLiteralEnd(b []byte, from int) (int, bool) {
	if from >= len(b) || b[from] != '[' {
		return 0, false
	}
	i := from + 1
	if hasPrefixFold(b[i:], "ipv6:") {
		j := runEnd(b, i+len("ipv6:"), func(c byte) bool { return isHexDigit(c) || c == ':' || c == '.' })
		if j-(i+len("ipv6:")) < 2 || j >= len(b) || b[j] != ']' {
			return 0, false
		}
		return j + 1, true
	}
	for part := range 4 {
		j := runEnd(b[:min(len(b), i+3)], i, isDigit)
		if j == i {
			return 0, false
		}
		i = j
		if part < 3 {
			if i >= len(b) || b[i] != '.' {
				return 0, false
			}
			i++
		}
	}
	if i >= len(b) || b[i] != ']' {
		return 0, false
	}
	return i + 1, true
}

func isHexDigit(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// emailDomainEnd returns the end of the longest domain starting at from
// that ends in a top-level label: "x.example.com." ends before the final
// dot, "example.com.4x" before ".4x".
func emailDomainEnd(b []byte, from int) (int, bool) {
	end, labels := -1, 0
	for i := from; ; {
		j := runEnd(b, i, isEmailLabel)
		if j == i || b[i] == '-' || j-i > maxEmailLabel {
			break
		}
		trailingDash := false
		for b[j-1] == '-' {
			j--
			trailingDash = true
		}
		if j-from > maxEmailDomain {
			break
		}
		labels++
		if labels >= 2 && isTopLevelLabel(b[i:j]) {
			end = j
		}
		if trailingDash || j+1 >= len(b) || b[j] != '.' || !isEmailLabel(b[j+1]) {
			break
		}
		i = j + 1
	}
	return end, end >= 0
}

func isTopLevelLabel(l []byte) bool {
	if len(l) < 2 {
		return false
	}
	for _, c := range l {
		if !isAlpha(c) {
			return false
		}
	}
	return true
}

// ---- credit_card ----

// findCards finds 13 to 19 digits, optionally separated by single spaces or
// dashes, that pass the Luhn check. A run of digits and separators is cut
// into candidates only at separators ("4111 1111 1111 1111 5500 0000 0000
// 0004" is two cards). A run touching a letter is part of a word or a
// reference ("x4111...", the digits of "DE89 3704 ...") and holds no card.
// A candidate may not be the fraction of a decimal number ("0.4111...": a
// float's digits pass Luhn one time in ten), but may be its integer part
// when the run's last group has four digits or more ("4111111111111111.5";
// in "...1111 1.5" the "1" belongs to the decimal).
func findCards(b []byte, emit func(span)) {
	for i := 0; i < len(b); {
		if !isDigit(b[i]) {
			i++
			continue
		}
		s := i
		e := cardRunEnd(b, s)
		i = e
		if e-s >= 13 && (s == 0 || !isAlpha(b[s-1])) && (e == len(b) || !isAlpha(b[e])) {
			endOK := notDecimal(b, e, e+1) || e-lastGroup(b, s, e) >= 4
			cardWindows(b, s, e, notFraction(b, s), endOK, emit)
		}
	}
}

// cardRunEnd returns the end of the digits-and-single-separators run at s;
// it always ends on a digit.
func cardRunEnd(b []byte, s int) int {
	j := s
	for {
		j = runEnd(b, j, isDigit)
		if j+1 < len(b) && (b[j] == ' ' || b[j] == '-') && isDigit(b[j+1]) {
			j++
			continue
		}
		return j
	}
}

// notDecimal reports whether a card may end (or start) next to b[next],
// with b[beyond] the byte after that: not at a decimal point that has a
// digit beyond it.
func notDecimal(b []byte, next, beyond int) bool {
	return next < 0 || next >= len(b) || b[next] != '.' || beyond < 0 || beyond >= len(b) || !isDigit(b[beyond])
}

// notFraction reports whether a run starting at s is not a decimal's
// fraction: not after a decimal point with a digit before it, nor after
// one with a replacement token before it ("4111111111111111.
// 4111111111111111" masks its first card, and the second must stay what it
// was: a fraction). Any other ']' before the point is not a token's:
// "items[0].4111 1111 1111 1111" holds a card.
func notFraction(b []byte, s int) bool {
	return notDecimal(b, s-1, s-2) && (s < 1 || b[s-1] != '.' || !endsWithToken(b[:s-1]))
}

// endsWithToken reports whether b ends with a detector's replacement
// token.
func endsWithToken(b []byte) bool {
	if len(b) == 0 || b[len(b)-1] != ']' {
		return false
	}
	for d := range numDetectors {
		if t := d.token(); len(b) >= len(t) && string(b[len(b)-len(t):]) == t {
			return true
		}
	}
	return false
}

// lastGroup is where the last group of digits of the run s..e starts.
func lastGroup(b []byte, s, e int) int {
	g := e
	for g > s && isDigit(b[g-1]) {
		g--
	}
	return g
}

// cardWindows tries, from each group of the run s..e in turn, the longest
// window of whole groups holding 13 to 19 digits that passes Luhn. A window
// starting at s needs startOK, one ending at e needs endOK.
func cardWindows(b []byte, s, e int, startOK, endOK bool, emit func(span)) {
	for g := s; g < e; {
		var digits [19]byte
		var ends, counts [19]int
		n, windows := 0, 0
		for j := g; j < e && (g != s || startOK); {
			for ; j < e && isDigit(b[j]) && n <= len(digits); j++ {
				if n < len(digits) {
					digits[n] = b[j]
				}
				n++
			}
			if n > len(digits) {
				break // 20 digits: no longer window from g
			}
			if n >= 13 && (j != e || endOK) {
				ends[windows], counts[windows] = j, n
				windows++
			}
			j++ // the separator
		}
		matched := false
		for k := windows - 1; k >= 0; k-- {
			if luhn(digits[:counts[k]]) {
				emit(span{g, ends[k]})
				g, matched = ends[k]+1, true // past the separator
				break
			}
		}
		if !matched {
			g = runEnd(b, g, isDigit) + 1
		}
	}
}

// luhn reports whether the digits pass the Luhn check.
func luhn(digits []byte) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// ---- iban ----

// ibanLength is the IBAN length of a country in the SWIFT IBAN registry,
// 0 for any other code; checking it rejects most digit strings that pass
// mod 97 by chance.
func ibanLength(country []byte) int {
	switch string(country) {
	case "NO":
		return 15
	case "BE":
		return 16
	case "DK", "FI", "FK", "FO", "GL", "NL", "SD":
		return 18
	case "MK", "SI":
		return 19
	case "AT", "BA", "EE", "KZ", "LT", "LU", "MN", "XK":
		return 20
	case "CH", "HR", "LI", "LV":
		return 21
	case "BG", "BH", "CR", "DE", "GB", "GE", "IE", "ME", "RS", "VA":
		return 22
	case "AE", "GI", "IL", "IQ", "OM", "SO", "TL":
		return 23
	case "AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG":
		return 24
	case "LY", "PT", "ST":
		return 25
	case "IS", "TR":
		return 26
	case "BI", "DJ", "FR", "GR", "IT", "MC", "MR", "SM":
		return 27
	case "AL", "AZ", "BY", "CY", "DO", "GT", "HN", "HU", "LB", "NI", "PL", "SV":
		return 28
	case "BR", "EG", "PS", "QA", "UA":
		return 29
	case "JO", "KW", "MU", "YE":
		return 30
	case "MT", "SC":
		return 31
	case "LC":
		return 32
	case "RU":
		return 33
	}
	return 0
}

func isUpperOrDigit(c byte) bool { return isUpper(c) || isDigit(c) }

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// findIBANs finds IBANs written compact ("DE89370400440532013000") or in
// groups of four separated by single spaces ("DE89 3704 0044 0532 0130
// 00"), in either case: a registered country code, check digits, the
// country's length, and a valid mod-97 checksum.
func findIBANs(b []byte, emit func(span)) {
	for i := 0; i+4 <= len(b); i++ {
		if !isAlpha(b[i]) || !isAlpha(b[i+1]) || !isDigit(b[i+2]) || !isDigit(b[i+3]) {
			continue
		}
		if i > 0 && isAlnum(b[i-1]) {
			continue
		}
		n := ibanLength([]byte{upper(b[i]), upper(b[i+1])})
		if n == 0 {
			continue
		}
		if end, ok := ibanAt(b, i, n); ok {
			emit(span{i, end})
			i = end - 1
		}
	}
}

func ibanAt(b []byte, i, n int) (int, bool) {
	var chars [34]byte
	if i+n <= len(b) && runEnd(b[:i+n], i, isAlnum) == i+n {
		if i+n < len(b) && isAlnum(b[i+n]) {
			return 0, false
		}
		for k := range n {
			chars[k] = upper(b[i+k])
		}
		return i + n, ibanValid(chars[:n])
	}
	j := i
	for k := 0; k < n; {
		if j >= len(b) || !isAlnum(b[j]) {
			return 0, false
		}
		chars[k] = upper(b[j])
		k++
		j++
		if k%4 == 0 && k < n {
			if j >= len(b) || b[j] != ' ' {
				return 0, false
			}
			j++
		}
	}
	if j < len(b) && isAlnum(b[j]) {
		return 0, false
	}
	return j, ibanValid(chars[:n])
}

// ibanValid checks the ISO 7064 mod 97-10 checksum of a compact IBAN.
func ibanValid(iban []byte) bool {
	if check := (iban[2]-'0')*10 + iban[3] - '0'; check < 2 || check > 98 {
		return false
	}
	r := 0
	for k := range iban {
		c := iban[(k+4)%len(iban)] // the first four characters go last
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	return r == 1
}

// ---- aws_key ----

// findAWSKeys finds access key ids (AKIA or ASIA and 16 upper-case letters
// or digits, standing alone) and labelled secret access keys: after
// aws_secret_access_key, secret-access-key or SecretAccessKey (any case),
// an optional quote, '=' or ':', an optional quote, the value: a run of at
// least 40 base64 characters (the secret is 40). Only the value is
// replaced, the label stays.
func findAWSKeys(b []byte, emit func(span)) {
	secret, more := nextAWSSecret(b, 0) // the next secret not yet emitted
	for i := 0; i+20 <= len(b); i++ {
		if b[i] != 'A' || (b[i+1] != 'K' && b[i+1] != 'S') || b[i+2] != 'I' || b[i+3] != 'A' {
			continue
		}
		if i > 0 && isAlnum(b[i-1]) {
			continue
		}
		if i+20 < len(b) && isAlnum(b[i+20]) {
			continue
		}
		if runEnd(b[:i+20], i+4, isUpperOrDigit) != i+20 {
			continue
		}
		for more && secret.end <= i {
			emit(secret)
			secret, more = nextAWSSecret(b, secret.end)
		}
		if more && secret.start <= i {
			continue // inside a secret: masked with it
		}
		emit(span{i, i + 20})
		i += 19
	}
	for more {
		emit(secret)
		secret, more = nextAWSSecret(b, secret.end)
	}
}

// nextAWSSecret finds the first labelled secret access key whose label
// starts at or after from.
func nextAWSSecret(b []byte, from int) (span, bool) {
	for {
		k := indexFold(b, from, "secret")
		if k < 0 {
			return span{}, false
		}
		if s, e, ok := awsSecretAt(b, k+len("secret")); ok {
			return span{s, e}, true
		}
		from = k + 1
	}
}

func isBase64Std(c byte) bool { return isAlnum(c) || c == '/' || c == '+' }

// awsSecretAt parses what follows "secret" at i: the rest of the label, the
// assignment and the value; it returns the value's span.
func awsSecretAt(b []byte, i int) (int, int, bool) {
	var ok bool
	if i, ok = wordAfterSeparator(b, i, "access"); !ok {
		return 0, 0, false
	}
	if i, ok = wordAfterSeparator(b, i, "key"); !ok {
		return 0, 0, false
	}
	i = skipQuote(b, i)
	i = runEnd(b, i, isBlank)
	if i >= len(b) || (b[i] != '=' && b[i] != ':') {
		return 0, 0, false
	}
	i = runEnd(b, i+1, isBlank)
	i = skipQuote(b, i)
	e := runEnd(b, i, isBase64Std)
	if e-i < 40 {
		return 0, 0, false
	}
	return i, e, true
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func skipQuote(b []byte, i int) int {
	if i < len(b) && (b[i] == '"' || b[i] == '\'') {
		return i + 1
	}
	return i
}

// wordAfterSeparator matches an optional '_' or '-' and then word (ASCII
// lower case, matched in any case) at i.
func wordAfterSeparator(b []byte, i int, word string) (int, bool) {
	if i < len(b) && (b[i] == '_' || b[i] == '-') {
		i++
	}
	if !hasPrefixFold(b[i:], word) {
		return 0, false
	}
	return i + len(word), true
}

// hasPrefixFold reports whether b starts with lower (ASCII lower case),
// ignoring case.
func hasPrefixFold(b []byte, lower string) bool {
	if len(b) < len(lower) {
		return false
	}
	for k := 0; k < len(lower); k++ {
		c := b[k]
		if isUpper(c) {
			c += 'a' - 'A'
		}
		if c != lower[k] {
			return false
		}
	}
	return true
}

// indexFold returns the index of the first occurrence of lower (ASCII
// lower case) in b at or after from, ignoring case; -1 if none.
func indexFold(b []byte, from int, lower string) int {
	for i := from; i+len(lower) <= len(b); i++ {
		if hasPrefixFold(b[i:], lower) {
			return i
		}
	}
	return -1
}

// ---- jwt ----

// maxJWTHeader bounds the header segment decoded; real headers are a few
// hundred characters.
const maxJWTHeader = 4096

func isBase64URL(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }

// findJWTs finds header.payload.signature: three base64url segments (the
// signature may be empty, as for alg "none") whose header decodes to a JSON
// object with an "alg" member.
func findJWTs(b []byte, emit func(span)) {
	if bytes.IndexByte(b, '.') < 0 {
		return
	}
	for i := 0; i < len(b); {
		if !isBase64URL(b[i]) {
			i++
			continue
		}
		e1 := runEnd(b, i, isBase64URL) // i starts a run: the whole previous run was skipped
		if end, ok := jwtAt(b, i, e1); ok {
			emit(span{i, end})
			i = end
			continue
		}
		i = e1
	}
}

func jwtAt(b []byte, s, e1 int) (int, bool) {
	// A JSON object's '{' encodes to a leading 'e'.
	if b[s] != 'e' || e1 >= len(b) || b[e1] != '.' {
		return 0, false
	}
	e2 := runEnd(b, e1+1, isBase64URL)
	if e2 == e1+1 || e2 >= len(b) || b[e2] != '.' {
		return 0, false
	}
	e3 := runEnd(b, e2+1, isBase64URL)
	if !jwtHeader(b[s:e1]) {
		return 0, false
	}
	return e3, true
}

func jwtHeader(seg []byte) bool {
	if len(seg) > maxJWTHeader {
		return false
	}
	var buf [maxJWTHeader / 4 * 3]byte
	n, err := base64.RawURLEncoding.Decode(buf[:], seg)
	if err != nil {
		return false
	}
	h := buf[:n]
	return len(h) > 0 && h[0] == '{' && bytes.Contains(h, []byte(`"alg"`)) && json.Valid(h)
}

// ---- private_key ----

// findPrivateKeys finds PEM blocks whose label ends in PRIVATE KEY (RSA,
// EC, OPENSSH, ENCRYPTED, ... and PGP's PRIVATE KEY BLOCK), from BEGIN to
// the matching END line. A block without an END (a truncated value) is
// masked to the end of the value.
func findPrivateKeys(b []byte, emit func(span)) {
	const begin = "-----BEGIN "
	for i := 0; ; {
		k := bytes.Index(b[i:], []byte(begin))
		if k < 0 {
			return
		}
		k += i
		labelEnd, ok := pemLabel(b, k+len(begin))
		if !ok {
			i = k + len(begin)
			continue
		}
		end := pemEnd(b, labelEnd)
		emit(span{k, end})
		if end == len(b) {
			return
		}
		i = end
	}
}

// pemLabel checks the label at i ("RSA PRIVATE KEY-----") and returns the
// index after its closing dashes.
func pemLabel(b []byte, i int) (int, bool) {
	const maxLabel = 64
	e := runEnd(b[:min(len(b), i+maxLabel+1)], i, func(c byte) bool { return isUpper(c) || isDigit(c) || c == ' ' })
	if !bytes.HasPrefix(b[e:], []byte("-----")) {
		return 0, false
	}
	label := b[i:e]
	if !bytes.HasSuffix(label, []byte("PRIVATE KEY")) && !bytes.HasSuffix(label, []byte("PRIVATE KEY BLOCK")) {
		return 0, false
	}
	return e + len("-----"), true
}

// pemEnd returns the index after the first private-key END line at or after
// i, or len(b) when there is none.
func pemEnd(b []byte, i int) int {
	const end = "-----END "
	for {
		k := bytes.Index(b[i:], []byte(end))
		if k < 0 {
			return len(b)
		}
		k += i
		if after, ok := pemLabel(b, k+len(end)); ok {
			return after
		}
		i = k + len(end)
	}
}
