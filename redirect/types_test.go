package redirect

import (
	"net/netip"
	"testing"
	"unsafe"
)

func TestAddressEncoding(t *testing.T) {
	for _, s := range []string{"127.0.0.2", "::1", "fd00::1234", "10.1.2.3"} {
		a := netip.MustParseAddr(s)
		w := addrWords(a)
		// The words' memory must be the address's network-order bytes.
		b := *(*[16]byte)(unsafe.Pointer(&w))
		if want := a.As16(); b != want {
			t.Errorf("%s: bytes %x, want %x", s, b, want)
		}
		if got := wordsAddr(w); got != a {
			t.Errorf("%s: round trip gave %s", s, got)
		}
	}
	p := netPort(5432)
	if b := *(*[2]byte)(unsafe.Pointer(&p)); b != [2]byte{0x15, 0x38} {
		t.Errorf("port bytes %x, want 1538", b)
	}
	if hostPort(p) != 5432 {
		t.Errorf("hostPort(netPort(5432)) = %d", hostPort(p))
	}
}

func TestKeyPrefixLengths(t *testing.T) {
	tests := []struct {
		prefix string
		want   uint32
	}{
		{"127.0.0.2/32", 32 + 128},
		{"10.0.0.0/8", 32 + 96 + 8},
		{"::1/128", 32 + 128},
		{"fd00::/8", 32 + 8},
	}
	for _, tt := range tests {
		k := targetKey(Target{ID: 1, Prefix: netip.MustParsePrefix(tt.prefix), Port: 80})
		if k.Prefixlen != tt.want {
			t.Errorf("%s: prefixlen %d, want %d", tt.prefix, k.Prefixlen, tt.want)
		}
		e := egressKey(EgressAllow{WorkloadID: 7, Prefix: netip.MustParsePrefix(tt.prefix)})
		if e.Prefixlen != tt.want+32 {
			t.Errorf("%s: egress prefixlen %d, want %d", tt.prefix, e.Prefixlen, tt.want+32)
		}
		if got := unmappedPrefix(k.Addr, int(k.Prefixlen)-32); got != netip.MustParsePrefix(tt.prefix).Masked() {
			t.Errorf("%s: read back as %s", tt.prefix, got)
		}
	}
}
