package policy

import (
	"bytes"
	"fmt"
	"runtime"
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
		hits []string // detectors, in scan order, with their counts
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
			hits: []string{"jwt", "aws_key", "iban", "credit_card", "email×2"},
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
				if h.Count == 1 {
					got = append(got, h.Detector)
				} else {
					got = append(got, fmt.Sprintf("%s×%d", h.Detector, h.Count))
				}
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
	want := []Hit{{Rule: "cards", Detector: "credit_card", Count: 1}, {Rule: "contact", Detector: "email", Count: 1}}
	if !slices.Equal(hits, want) {
		t.Errorf("hits = %v, want %v (a detector is credited to the first mask enabling it)", hits, want)
	}
	if rule, ok := m.DetectorRule(); rule != "cards" || !ok {
		t.Errorf("DetectorRule = %q, %v; want the first detector's mask", rule, ok)
	}
	var nilMasker *Masker
	if _, ok := nilMasker.DetectorRule(); ok {
		t.Error("nil Masker: DetectorRule found one")
	}
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

// TestScanMemoryIsTheCopy: a value that is one match after another costs
// the masked copy and nothing per match (no span or Hit for each).
func TestScanMemoryIsTheCopy(t *testing.T) {
	m := allDetectors()
	for _, tc := range []struct {
		unit   string
		copies float64 // masked copies allocated: one per detector that replaces
	}{
		{"a@b.cc ", 1},
		{"4111111111111111 ", 1},
		{"a@b.cc 4111111111111111 ", 2},
	} {
		v := bytes.Repeat([]byte(tc.unit), 50000)
		out, hits := m.Scan(v)
		if n := bytes.Count(out, []byte("[masked:")); n != 50000*int(tc.copies) {
			t.Fatalf("%q: %d replacements", tc.unit, n)
		}
		total := 0
		for _, h := range hits {
			total += h.Count
		}
		if total != 50000*int(tc.copies) {
			t.Errorf("%q: hits %v", tc.unit, hits)
		}
		// Allocations are counted, and bytes allocated measured, the way
		// testing.AllocsPerRun counts: one goroutine, after a first run.
		allocs := testing.AllocsPerRun(5, func() { m.Scan(v) })
		if allocs > tc.copies+1 {
			t.Errorf("%q ×50000: %.0f allocations per Scan, want at most %.0f (the copies and the hits)", tc.unit, allocs, tc.copies+1)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m.Scan(v)
		runtime.ReadMemStats(&after)
		bytesPer := float64(after.TotalAlloc - before.TotalAlloc)
		// The copies' size, and the rounding of a large allocation to
		// whole pages.
		if limit := tc.copies*float64(len(out))*1.02 + 4096; bytesPer > limit {
			t.Errorf("%q ×50000: %.0f bytes allocated (%.1f per byte scanned), want at most %.0f", tc.unit, bytesPer, bytesPer/float64(len(v)), limit)
		}
	}
}

// BenchmarkScanDense reports how many bytes Scan allocates per byte
// scanned (allocB/B) on a value that is one match after another: before
// detectors streamed their matches it was 24, a span and a Hit per match
// and their slices' growth; now it is the masked copies' size.
func BenchmarkScanDense(b *testing.B) {
	m := allDetectors()
	v := bytes.Repeat([]byte("a@b.cc 4111111111111111 "), 1<<16) // 1.5 MB, 131072 matches
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		m.Scan(v)
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/float64(len(v)), "allocB/B")
}
