package redirect

import (
	"maps"
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

func TestProtectedKeys(t *testing.T) {
	key := func(addr string, port uint16) redirectProtectedKey {
		return redirectProtectedKey{Addr: addrWords(netip.MustParseAddr(addr)), Port: netPort(port)}
	}
	// What a dial of 0.0.0.0 or :: is looked up as.
	dialAny := func(port uint16) redirectProtectedKey { return key("::ffff:0.0.0.0", port) }
	tests := []struct {
		name    string
		addrs   []string
		want    map[redirectProtectedKey]uint8
		wantErr bool
	}{
		{"ipv4", []string{"127.0.0.1:9470"}, map[redirectProtectedKey]uint8{
			key("127.0.0.1", 9470): protectedListener, dialAny(9470): protectedUnspecified}, false},
		{"v4-mapped is ipv4", []string{"[::ffff:127.0.0.1]:9470"}, map[redirectProtectedKey]uint8{
			key("127.0.0.1", 9470): protectedListener, dialAny(9470): protectedUnspecified}, false},
		{"ipv6", []string{"[::1]:15002"}, map[redirectProtectedKey]uint8{
			key("::1", 15002): protectedListener, dialAny(15002): protectedUnspecified}, false},
		{"0.0.0.0 is any address", []string{"0.0.0.0:15001"}, map[redirectProtectedKey]uint8{
			key("::", 15001): protectedListener, dialAny(15001): protectedUnspecified}, false},
		{":: is any address", []string{"[::]:15001"}, map[redirectProtectedKey]uint8{
			key("::", 15001): protectedListener, dialAny(15001): protectedUnspecified}, false},
		{"one port, two addresses", []string{"127.0.0.1:80", "[::1]:80", "127.0.0.1:81"}, map[redirectProtectedKey]uint8{
			key("127.0.0.1", 80): protectedListener, key("::1", 80): protectedListener, dialAny(80): protectedUnspecified,
			key("127.0.0.1", 81): protectedListener, dialAny(81): protectedUnspecified}, false},
		{"empty", nil, map[redirectProtectedKey]uint8{}, false},
		{"port 0", []string{"127.0.0.1:0"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var aps []netip.AddrPort
			for _, a := range tt.addrs {
				aps = append(aps, netip.MustParseAddrPort(a))
			}
			got, err := protectedKeys(aps)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("keys %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := protectedKeys([]netip.AddrPort{{}}); err == nil {
		t.Error("the zero AddrPort was accepted")
	}
}
