package policy

import (
	"bytes"
	"slices"
	"testing"
)

func TestMaskerSelection(t *testing.T) {
	p := mustCompile(t, Config{Masks: []MaskConfig{
		{Name: "shop-pii", Targets: []string{"shop"}, Columns: []string{"email"}},
		{Name: "agent-cards", Workloads: []string{"agent"}, Detectors: []string{"credit_card"}},
		{Name: "billing-etl", Targets: []string{"billing"}, Workloads: []string{"etl"}, Detectors: []string{"iban"}},
	}})
	req := func(target, workload string) Request {
		return Request{Target: Target{Name: target}, Workload: Workload{Name: workload}}
	}
	tests := []struct {
		name          string
		req           Request
		wantNil       bool
		wantColumns   bool
		wantDetectors []string
	}{
		{name: "shop agent", req: req("shop", "agent"), wantColumns: true, wantDetectors: []string{"credit_card"}},
		{name: "shop etl", req: req("shop", "etl"), wantColumns: true},
		{name: "billing etl", req: req("billing", "etl"), wantDetectors: []string{"iban"}},
		{name: "billing agent", req: req("billing", "agent"), wantDetectors: []string{"credit_card"}},
		{name: "bastion etl: nothing", req: req("bastion", "etl"), wantNil: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := p.Masker(tt.req)
			if (m == nil) != tt.wantNil {
				t.Fatalf("Masker = %v, want nil: %v", m, tt.wantNil)
			}
			if m.HasColumnRules() != tt.wantColumns {
				t.Errorf("HasColumnRules = %v, want %v", m.HasColumnRules(), tt.wantColumns)
			}
			var got []string
			if m != nil {
				for _, d := range m.detectors {
					got = append(got, d.detector.String())
				}
			}
			if !slices.Equal(got, tt.wantDetectors) {
				t.Errorf("detectors = %v, want %v", got, tt.wantDetectors)
			}
			if m.HasDetectors() != (len(tt.wantDetectors) > 0) {
				t.Errorf("HasDetectors = %v", m.HasDetectors())
			}
		})
	}
}

func TestMaskerColumn(t *testing.T) {
	p := mustCompile(t, Config{Masks: []MaskConfig{
		{Name: "any-email", Columns: []string{"email"}},
		{Name: "customer-phone", Columns: []string{"customers.phone"}},
		{Name: "public-ssn", Columns: []string{"public.customers.SSN"}},
		{Name: "later-email", Columns: []string{"users.email"}},
	}})
	m := p.Masker(Request{})
	tests := []struct {
		table, column string
		wantRule      string
	}{
		// bare: any table, known or not
		{"public.customers", "email", "any-email"},
		{"orders", "email", "any-email"},
		{"", "email", "any-email"},
		{"public.users", "EMAIL", "any-email"}, // first matching mask wins
		{"public.customers", "emails", ""},
		// table-qualified: that table, in any schema
		{"customers", "phone", "customer-phone"},
		{"public.customers", "phone", "customer-phone"},
		{"crm.Customers", "Phone", "customer-phone"},
		{"public.suppliers", "phone", ""},
		{"customers_archive", "phone", ""},
		{"", "phone", "customer-phone"}, // unknown table: masked, not leaked
		// schema-qualified: that schema only
		{"public.customers", "ssn", "public-ssn"},
		{"PUBLIC.CUSTOMERS", "ssn", "public-ssn"},
		{"crm.customers", "ssn", ""},
		{"public.suppliers", "ssn", ""},
		{"customers", "ssn", "public-ssn"}, // unknown schema: masked
		{"", "ssn", "public-ssn"},
		{"public.customers", "id", ""},
	}
	for _, tt := range tests {
		rule, ok := m.Column(tt.table, tt.column)
		if rule != tt.wantRule || ok != (tt.wantRule != "") {
			t.Errorf("Column(%q, %q) = %q, %v; want %q", tt.table, tt.column, rule, ok, tt.wantRule)
		}
	}
	var nilMasker *Masker
	if rule, ok := nilMasker.Column("t", "email"); ok || rule != "" {
		t.Errorf("nil Masker: Column = %q, %v", rule, ok)
	}
}

func TestMaskedColumnValue(t *testing.T) {
	m := &Masker{}
	v := m.MaskedColumnValue()
	if string(v) != "[masked]" {
		t.Fatalf("MaskedColumnValue = %q", v)
	}
	v[0] = 'X' // a caller modifying its copy changes nothing for the next
	if string(m.MaskedColumnValue()) != "[masked]" {
		t.Fatal("MaskedColumnValue returned shared memory")
	}
}

// allDetectors masks with every detector under the rule "all".
func allDetectors() *Masker {
	m := &Masker{}
	for d := range numDetectors {
		m.detectors = append(m.detectors, maskDetector{detector: d, rule: "all"})
	}
	return m
}

func TestScan(t *testing.T) {
	const jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	tests := []struct {
		name string
		in   string
		want string
		hits []string // detectors, in order
	}{
		{name: "email", in: "contact: Jane.Doe+shop@mail.example.co.uk.", want: "contact: [masked:email].", hits: []string{"email"}},
		{name: "card", in: "card 4111 1111 1111 1111 exp 12/29", want: "card [masked:credit_card] exp 12/29", hits: []string{"credit_card"}},
		{name: "card failing luhn", in: "card 4111 1111 1111 1112", want: "card 4111 1111 1111 1112"},
		{name: "iban", in: `{"iban": "DE89 3704 0044 0532 0130 00"}`, want: `{"iban": "[masked:iban]"}`, hits: []string{"iban"}},
		{name: "aws key id", in: "key=AKIAIOSFODNN7EXAMPLE;", want: "key=[masked:aws_key];", hits: []string{"aws_key"}},
		{name: "aws secret", in: "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", want: "aws_secret_access_key = [masked:aws_key]\n", hits: []string{"aws_key"}},
		{name: "jwt", in: "Bearer " + jwt, want: "Bearer [masked:jwt]", hits: []string{"jwt"}},
		{
			name: "private key",
			in:   "k: -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oDGGoxL\n-----END EC PRIVATE KEY-----\nend",
			want: "k: [masked:private_key]\nend",
			hits: []string{"private_key"},
		},
		{
			name: "everything at once",
			in:   "a@b.io 4111111111111111 GB82WEST12345698765432 " + jwt + " ASIAABCDEFGHIJKLMNOP x@y.org",
			want: "[masked:email] [masked:credit_card] [masked:iban] [masked:jwt] [masked:aws_key] [masked:email]",
			hits: []string{"jwt", "aws_key", "iban", "credit_card", "email", "email"},
		},
		{name: "nothing", in: "SELECT 1; -- fine: 2024-01-01, v1.2.3, user@localhost", want: "SELECT 1; -- fine: 2024-01-01, v1.2.3, user@localhost"},
	}
	m := allDetectors()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			out, hits := m.Scan(in)
			if string(out) != tt.want {
				t.Errorf("Scan(%q) = %q, want %q", tt.in, out, tt.want)
			}
			var got []string
			for _, h := range hits {
				if h.Rule != "all" {
					t.Errorf("hit rule = %q", h.Rule)
				}
				got = append(got, h.Detector)
			}
			if !slices.Equal(got, tt.hits) {
				t.Errorf("hits = %v, want %v", got, tt.hits)
			}
			if string(in) != tt.in {
				t.Errorf("Scan modified its input: %q", in)
			}
			if len(hits) == 0 && &out[0] != &in[0] {
				t.Errorf("Scan without hits returned a copy")
			}
		})
	}
}

func TestScanOnlyConfiguredDetectors(t *testing.T) {
	p := mustCompile(t, Config{Masks: []MaskConfig{
		{Name: "cards", Detectors: []string{"credit_card"}},
		{Name: "contact", Detectors: []string{"email", "credit_card"}},
	}})
	m := p.Masker(Request{})
	out, hits := m.Scan([]byte("a@b.io 4111111111111111 DE89370400440532013000"))
	if string(out) != "[masked:email] [masked:credit_card] DE89370400440532013000" {
		t.Errorf("Scan = %q", out)
	}
	want := []Hit{{Rule: "cards", Detector: "credit_card"}, {Rule: "contact", Detector: "email"}}
	if !slices.Equal(hits, want) {
		t.Errorf("hits = %v, want %v (a detector is credited to the first mask enabling it)", hits, want)
	}
	var nilMasker *Masker
	v := []byte("a@b.io")
	if out, hits := nilMasker.Scan(v); &out[0] != &v[0] || hits != nil {
		t.Errorf("nil Masker: Scan = %q, %v", out, hits)
	}
}

func TestScanWithoutHitsDoesNotAllocate(t *testing.T) {
	m := allDetectors()
	inputs := []string{
		"",
		"an ordinary sentence, with numbers 12345 and 2024-01-01T10:00:00Z.",
		"user@localhost and a.b@c and @handle",                             // email near-misses
		"4111 1111 1111 1112 and 1.4111111111111111 and x4111111111111111", // card near-misses
		"DE89 3704 0044 0532 0130 01 XX89370400440532013000",               // iban near-misses
		"AKIAIOSFODNN7EXAMPL aws_secret_access_key=short",                  // aws near-misses
		"eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.sig",                           // jwt without alg
		"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",     // not a private key
		string(bytes.Repeat([]byte("lorem ipsum 123 "), 200)),
	}
	for _, s := range inputs {
		v := []byte(s)
		allocs := testing.AllocsPerRun(20, func() {
			if _, hits := m.Scan(v); hits != nil {
				t.Fatalf("unexpected hits in %q: %v", s, hits)
			}
		})
		if allocs != 0 {
			t.Errorf("Scan(%.40q) allocated %.0f times", s, allocs)
		}
	}
}

func BenchmarkScan(b *testing.B) {
	m := allDetectors()
	clean := bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog 0123456789. "), 20)
	dirty := []byte("name: Jane, email: jane@example.com, card: 4111 1111 1111 1111, iban: DE89370400440532013000")
	b.Run("clean", func(b *testing.B) {
		b.SetBytes(int64(len(clean)))
		b.ReportAllocs()
		for b.Loop() {
			m.Scan(clean)
		}
	})
	b.Run("dirty", func(b *testing.B) {
		b.SetBytes(int64(len(dirty)))
		b.ReportAllocs()
		for b.Loop() {
			m.Scan(dirty)
		}
	})
}
