package policy

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

const (
	testJWT       = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	testJWTNone   = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."                       // {"alg":"none"}, empty signature
	testJWTNoAlg  = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.c2ln"                    // {"typ":"JWT"}
	testJWTNoJSON = "ZXlKaGJHY2lPaUpJVXpJMU5pSjk.eyJzdWIiOiIxIn0.c2ln"           // header is not JSON
	testJWTBadB64 = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9x.eyJzdWIiOiIxIn0.c2ln" // header length is not base64
	testRSAKey    = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi\nZ1BjP5CE/Wm/Rr500P\n-----END RSA PRIVATE KEY-----"
)

// matches runs one detector and returns the matched texts.
func matches(d detector, s string) []string {
	var out []string
	for _, sp := range d.find([]byte(s), nil) {
		out = append(out, s[sp.start:sp.end])
	}
	return out
}

func TestDetectors(t *testing.T) {
	tests := []struct {
		detector detector
		in       string
		want     []string
	}{
		// email
		{detectEmail, "jane@example.com", []string{"jane@example.com"}},
		{detectEmail, "mail Jane.Doe+tag@Mail.Example.co.uk, thanks", []string{"Jane.Doe+tag@Mail.Example.co.uk"}},
		{detectEmail, "<a_b-c%d@sub-domain.example.org>", []string{"a_b-c%d@sub-domain.example.org"}},
		{detectEmail, "end of sentence x@y.io.", []string{"x@y.io"}},
		{detectEmail, "to='bob@x.org'", []string{"bob@x.org"}},
		{detectEmail, "a@b.io,c@d.io", []string{"a@b.io", "c@d.io"}},
		{detectEmail, "..a@b.io", []string{"a@b.io"}},
		{detectEmail, "x..y@b.io", []string{"y@b.io"}},
		{detectEmail, "a@b.io.4x", []string{"a@b.io"}},
		{detectEmail, "a@b.com@c.org", []string{"a@b.com"}},
		{detectEmail, "user@localhost", nil},
		{detectEmail, "a@b.c", nil},
		{detectEmail, "a@b.c0m", nil},
		{detectEmail, "a.@b.com", nil},
		{detectEmail, "@b.com", nil},
		{detectEmail, "a@-b.com", nil},
		{detectEmail, "a@.b.com", nil},
		{detectEmail, "a@@b.com", nil},
		// Longer than RFC 5321's 64 bytes: masked all the same, a prefix
		// must not hide an address.
		{detectEmail, strings.Repeat("x", 65) + "@b.com", []string{strings.Repeat("x", 65) + "@b.com"}},
		{detectEmail, strings.Repeat("-", 65) + "bob@example.com", []string{strings.Repeat("-", 65) + "bob@example.com"}},
		// Letters beyond ASCII (RFC 6531), not other symbols.
		{detectEmail, "jöhn.doe@example.com", []string{"jöhn.doe@example.com"}},
		{detectEmail, "メール：bob@example.com", []string{"bob@example.com"}},
		{detectEmail, "«ana@example.com»", []string{"ana@example.com"}},
		{detectEmail, strings.Repeat("x", 64) + "@b.com", []string{strings.Repeat("x", 64) + "@b.com"}},
		{detectEmail, "no at sign here", nil},
		// Quoted local parts, RFC 5322's other symbols inside a local
		// part, domain literals.
		{detectEmail, `"john doe"@example.com`, []string{`"john doe"@example.com`}},
		{detectEmail, `mail "john doe"@example.com, "x"@y.io`, []string{`"john doe"@example.com`, `"x"@y.io`}},
		{detectEmail, `he said "hi" to bob@x.org`, []string{"bob@x.org"}},
		{detectEmail, `"x a@b.io "@example.com`, []string{"a@b.io"}},
		{detectEmail, `"x [masked:email] "@example.com`, nil},
		{detectEmail, `""@example.com`, nil},
		{detectEmail, "john!doe@example.com", []string{"john!doe@example.com"}},
		{detectEmail, "o'brien@example.com", []string{"o'brien@example.com"}},
		{detectEmail, "a{b}c|d~e#f$g*h^i`j@example.com", []string{"a{b}c|d~e#f$g*h^i`j@example.com"}},
		{detectEmail, "key=bob@x.org&next", []string{"bob@x.org"}},
		{detectEmail, "!bob@x.org a!!b@x.org", []string{"bob@x.org", "b@x.org"}},
		{detectEmail, "a@b.io!c@d.io", []string{"a@b.io", "c@d.io"}},
		{detectEmail, "bob@[192.168.0.1]", []string{"bob@[192.168.0.1]"}},
		{detectEmail, "bob@[IPv6:2001:db8::1].", []string{"bob@[IPv6:2001:db8::1]"}},
		{detectEmail, "bob@[1.2.3] bob@[1.2.3.4 bob@[1234.1.1.1] bob@[::1] bob@[masked:email]", nil},

		// credit_card
		{detectCreditCard, "4111 1111 1111 1111", []string{"4111 1111 1111 1111"}},
		{detectCreditCard, "4111-1111-1111-1111", []string{"4111-1111-1111-1111"}},
		{detectCreditCard, "card:4111111111111111;", []string{"4111111111111111"}},
		{detectCreditCard, "amex 3782 822463 10005", []string{"3782 822463 10005"}},
		{detectCreditCard, "4222222222222 (13 digits)", []string{"4222222222222"}},
		{detectCreditCard, "4111 1111 1111 1111 5500 0000 0000 0004", []string{"4111 1111 1111 1111", "5500 0000 0000 0004"}},
		{detectCreditCard, "order 12, card 4111 1111 1111 1111", []string{"4111 1111 1111 1111"}},
		{detectCreditCard, "4111 1111 1111 1112", nil},
		{detectCreditCard, "4111111111111112", nil},
		{detectCreditCard, "411111111111", nil},           // 12 digits
		{detectCreditCard, "41111111111111111111", nil},   // 20 digits in one group
		{detectCreditCard, "4111  1111  1111  1111", nil}, // double spaces: groups of 4
		{detectCreditCard, "4111.1111.1111.1111", nil},    // dots are not separators
		{detectCreditCard, "x4111111111111111", nil},      // part of a word
		{detectCreditCard, "4111111111111111px", nil},     // part of a word
		{detectCreditCard, "0.4111111111111111", nil},     // a decimal
		// A card may be a decimal's integer part, not its fraction.
		{detectCreditCard, "4111111111111111.5", []string{"4111111111111111"}},
		{detectCreditCard, "4111 1111 1111 1111.50", []string{"4111 1111 1111 1111"}},
		{detectCreditCard, "4111111111111111.4111111111111111", []string{"4111111111111111"}},
		{detectCreditCard, "[masked:credit_card].4111111111111111", nil},
		{detectCreditCard, "[masked:iban].4111111111111111 [masked:aws_key].4111 1111 1111 1111", nil},
		// Only a token's ']' makes a fraction: other brackets do not.
		{detectCreditCard, "items[0].4111 1111 1111 1111", []string{"4111 1111 1111 1111"}},
		{detectCreditCard, "x].4111111111111111", []string{"4111111111111111"}},
		{detectCreditCard, "[masked].4111111111111111 masked:email].4111111111111111",
			[]string{"4111111111111111", "4111111111111111"}},
		{detectCreditCard, "12.4111111111111111", nil},
		{detectCreditCard, "4111--1111-1111-1111", nil},
		{detectCreditCard, "1.5 4111 1111 1111 1111", []string{"4111 1111 1111 1111"}}, // the decimal is its own group
		{detectCreditCard, "4111 1111 1111 1111 2.5", []string{"4111 1111 1111 1111"}}, // the decimal is its own group
		{detectCreditCard, "INV7 4111111111111111", nil},                               // the run touches a word
		{detectCreditCard, "4111111111111111 7x", nil},                                 // the run touches a word
		{detectCreditCard, "DE00 4111 1111 1111 1111", nil},                            // the digits of a reference
		{detectCreditCard, "7 4111111111111111 x", []string{"4111111111111111"}},

		// iban
		{detectIBAN, "DE89 3704 0044 0532 0130 00", []string{"DE89 3704 0044 0532 0130 00"}},
		{detectIBAN, "DE89370400440532013000", []string{"DE89370400440532013000"}},
		{detectIBAN, "pay GB82 WEST 1234 5698 7654 32 today", []string{"GB82 WEST 1234 5698 7654 32"}},
		{detectIBAN, "NO9386011117947", []string{"NO9386011117947"}},
		{detectIBAN, "MT84 MALT 0110 0001 2345 MTLC AST0 01S", []string{"MT84 MALT 0110 0001 2345 MTLC AST0 01S"}},
		{detectIBAN, "BE68 5390 0754 7034 then more", []string{"BE68 5390 0754 7034"}},
		{detectIBAN, "(NL91ABNA0417164300)", []string{"NL91ABNA0417164300"}},
		{detectIBAN, "DE89 3704 0044 0532 0130 01", nil}, // checksum
		{detectIBAN, "DE89370400440532013001", nil},      // checksum
		{detectIBAN, "DE8937040044053201300", nil},       // one short
		{detectIBAN, "DE893704004405320130000", nil},     // one long
		{detectIBAN, "XX89370400440532013000", nil},      // no such country
		{detectIBAN, "de89370400440532013000", []string{"de89370400440532013000"}},
		{detectIBAN, "gb82 west 1234 5698 7654 32", []string{"gb82 west 1234 5698 7654 32"}},
		{detectIBAN, "ADE89370400440532013000", nil},      // part of a word
		{detectIBAN, "DE89370400440532013000X", nil},      // part of a word
		{detectIBAN, "DE89 37040044 0532 0130 00", nil},   // mixed grouping
		{detectIBAN, "DE89  3704 0044 0532 0130 00", nil}, // double space
		{detectIBAN, "GB82 WEST 1234 5698 7654 32X", nil}, // trailing letter

		// aws_key
		{detectAWSKey, "AKIAIOSFODNN7EXAMPLE", []string{"AKIAIOSFODNN7EXAMPLE"}},
		{detectAWSKey, `"AccessKeyId": "ASIAY34FZKBOKMUTVV7A"`, []string{"ASIAY34FZKBOKMUTVV7A"}},
		{detectAWSKey, "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", []string{"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}},
		{detectAWSKey, "AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'", []string{"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}},
		{detectAWSKey, `{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AccessKeyId": "AKIAIOSFODNN7EXAMPLE"}`, []string{"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AKIAIOSFODNN7EXAMPLE"}},
		{detectAWSKey, "aws-secret-access-key = abcdefghij/AKIAIOSFODNN7EXAMPLE/abcdefghij", []string{"abcdefghij/AKIAIOSFODNN7EXAMPLE/abcdefghij"}},
		{detectAWSKey, "AKIAIOSFODNN7EXAMPL", nil},                                           // 19 characters
		{detectAWSKey, "AKIAIOSFODNN7EXAMPLE1", nil},                                         // 21 characters
		{detectAWSKey, "xAKIAIOSFODNN7EXAMPLE", nil},                                         // part of a word
		{detectAWSKey, "AKIAiosfodnn7example", nil},                                          // lower case
		{detectAWSKey, "AIDAIOSFODNN7EXAMPLE", nil},                                          // a user id, not a key
		{detectAWSKey, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", nil},                      // unlabelled
		{detectAWSKey, "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE", nil}, // 39
		{detectAWSKey, "aws_secret_access_key_id=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", nil},
		{detectAWSKey, "secret key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", nil},

		// jwt
		{detectJWT, testJWT, []string{testJWT}},
		{detectJWT, "Authorization: Bearer " + testJWT + "\n", []string{testJWT}},
		{detectJWT, "token=" + testJWTNone + " rest", []string{testJWTNone}},
		{detectJWT, "x." + testJWT + ".y", []string{testJWT}},
		{detectJWT, testJWTNoAlg, nil},
		{detectJWT, testJWTNoJSON, nil},
		{detectJWT, testJWTBadB64, nil},
		{detectJWT, "eyJhbGciOiJIUzI1NiJ9..sig", nil}, // empty payload
		{detectJWT, "eyJhbGciOiJIUzI1NiJ9.payload", nil},
		{detectJWT, "www.example.com", nil},

		// private_key
		{detectPrivateKey, testRSAKey, []string{testRSAKey}},
		{detectPrivateKey, "key:\n" + testRSAKey + "\nafter", []string{testRSAKey}},
		{detectPrivateKey, "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA\n-----END PRIVATE KEY-----", []string{"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA\n-----END PRIVATE KEY-----"}},
		{detectPrivateKey, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----", []string{"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"}},
		{detectPrivateKey, "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----", []string{"-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----"}},
		{detectPrivateKey, "truncated: -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg", []string{"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg"}},
		{detectPrivateKey, "-----BEGIN EC PRIVATE KEY-----\nA\n-----END CERTIFICATE-----\nB\n-----END EC PRIVATE KEY-----\nC", []string{"-----BEGIN EC PRIVATE KEY-----\nA\n-----END CERTIFICATE-----\nB\n-----END EC PRIVATE KEY-----"}},
		{detectPrivateKey, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", nil},
		{detectPrivateKey, "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", nil},
		{detectPrivateKey, "-----BEGIN private key-----", nil},
		{detectPrivateKey, "BEGIN RSA PRIVATE KEY", nil},
	}
	for _, tt := range tests {
		got := matches(tt.detector, tt.in)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s(%q) = %q, want %q", tt.detector, tt.in, got, tt.want)
		}
	}
}

func TestLuhn(t *testing.T) {
	for s, want := range map[string]bool{
		"4111111111111111": true,
		"4111111111111112": false,
		"5500000000000004": true,
		"378282246310005":  true,
		"79927398713":      true,
		"79927398710":      false,
	} {
		if got := luhn([]byte(s)); got != want {
			t.Errorf("luhn(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestDetectorNames(t *testing.T) {
	for _, name := range detectorNames() {
		d, ok := detectorByName(name)
		if !ok || d.String() != name || d.token() != "[masked:"+name+"]" {
			t.Errorf("detector %q: %v %v %q", name, d, ok, d.token())
		}
	}
	if len(detectorNames()) != int(numDetectors) {
		t.Errorf("detectorNames lists %d detectors, there are %d", len(detectorNames()), numDetectors)
	}
	if _, ok := detectorByName("ssn"); ok {
		t.Error("detectorByName(ssn) succeeded")
	}
}

// FuzzDetect feeds arbitrary values to the detectors. Whatever the input:
// no panic; spans ordered, non-empty, non-overlapping and in bounds;
// replacing a detector's matches leaves no match of that detector; Scan
// with every detector leaves no match of any, never modifies its input,
// and returns the input itself when it reports no hit.
func FuzzDetect(f *testing.F) {
	for _, s := range []string{
		"jane@example.com", "a@b.com@c.org", "x..y@b.io", "a@b.io.4x", "jöhn@example.com", "---bob@example.com",
		"4111 1111 1111 1111", "4111 1111 1111 1111 5500 0000 0000 0004", "0.4111111111111111",
		"DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "gb82 west 1234 5698 7654 32", "BE68 5390 0754 7034 5678",
		"AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		"aws_secret_access_key=abcdefghij/AKIAIOSFODNN7EXAMPLE/abcdefghi",
		testJWT, testJWTNone, "x." + testJWT + "." + testJWT,
		testRSAKey, "-----BEGIN EC PRIVATE KEY-----\nA", "-----BEGIN -----BEGIN RSA PRIVATE KEY-----",
		"a@b.io 4111111111111111 GB82WEST12345698765432 " + testJWT + " ASIAABCDEFGHIJKLMNOP",
		"", "@", ".", "-----BEGIN ",
		`"john doe"@example.com`, `"x a@b.io "@example.com`, "john!doe@example.com", "o'brien@x.org!c@d.io",
		"bob@[192.168.0.1]", "bob@[IPv6:2001:db8::1]", "4111111111111111.4111111111111111.5",
		"items[0].4111 1111 1111 1111", "DE89370400440532013000.4111111111111111",
	} {
		f.Add([]byte(s))
	}
	all := allDetectors()
	f.Fuzz(func(t *testing.T, in []byte) {
		checkDetect(t, all, in)
	})
}

// checkDetect asserts FuzzDetect's properties for one input.
func checkDetect(t *testing.T, all *Masker, in []byte) {
	t.Helper()
	orig := bytes.Clone(in)
	for d := range numDetectors {
		spans := d.find(in, nil)
		prev := 0
		for _, s := range spans {
			if s.start < prev || s.end <= s.start || s.end > len(in) {
				t.Fatalf("%s: bad spans %v in %q", d, spans, in)
			}
			prev = s.end
		}
		if len(spans) == 0 {
			continue
		}
		out := replaceSpans(in, spans, d.token())
		if again := d.find(out, nil); len(again) > 0 {
			t.Fatalf("%s: %q masked to %q still matches at %v", d, in, out, again)
		}
	}
	out, hits := all.Scan(in)
	if !bytes.Equal(in, orig) {
		t.Fatalf("Scan modified its input")
	}
	if len(hits) == 0 && (len(out) != len(in) || (len(in) > 0 && &out[0] != &in[0])) {
		t.Fatalf("Scan without hits did not return its input")
	}
	for d := range numDetectors {
		if again := d.find(out, nil); len(again) > 0 {
			t.Fatalf("Scan(%q) = %q still matches %s at %v", in, out, d, again)
		}
	}
}

// TestDetectComposed checks FuzzDetect's properties on values glued
// together from matches, near-misses and the bytes around them: random
// bytes rarely pass Luhn, mod 97 or a JSON header, glued fragments do, and
// they are where one match's replacement could uncover another.
func TestDetectComposed(t *testing.T) {
	fragments := []string{
		"jane@example.com", "a@b.io", "x.", "..", "@", "@b.io", "a@", ".com", "-", `"`, "!", "'", "[1.2.3.4]", "[IPv6:::1]",
		"4111 1111 1111 1111", "4111111111111111", "5500-0000-0000-0004", "1", "4111", " ", ".", "1.5", "0.",
		"DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "GB82", " WEST", "NO9386011117947", "DE00 ",
		"AKIAIOSFODNN7EXAMPLE", "ASIA", "aws_secret_access_key=", "SecretAccessKey: \"", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "/", "+",
		testJWT, testJWTNone, "eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9.", ".sig", "_",
		"-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "-----BEGIN ", "-----", "\n", "x", "A", "e", "[", "]",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	all := allDetectors()
	n := 20000
	if testing.Short() {
		n = 2000
	}
	var b []byte
	for range n {
		b = b[:0]
		for range 1 + rng.IntN(8) {
			b = append(b, fragments[rng.IntN(len(fragments))]...)
		}
		checkDetect(t, all, bytes.Clone(b))
	}
}
