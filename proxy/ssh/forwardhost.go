package ssh

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// forwardHost is how policy sees a forward's host (ssh.forward.host): one
// spelling per address, so that a rule naming 127.0.0.2 or localhost
// also holds for the other spellings the target's resolver accepts. IPv4
// in any form inet_aton reads (127.2, 2130706434, 0x7f000002, 0177.0.0.2)
// and IPv4-mapped IPv6 (::ffff:127.0.0.2) become dotted decimal, other
// IPv6 its canonical form without brackets (and without a zone, which the
// kernel ignores except for a link-local address), and a name is
// lowercased without its trailing dots.
func forwardHost(host string) string {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	h = strings.TrimRight(h, ".")
	if a, ok := inetAton(h); ok {
		return a.String()
	}
	if a, err := netip.ParseAddr(h); err == nil {
		a = a.Unmap()
		if !a.IsLinkLocalUnicast() && !a.IsLinkLocalMulticast() && !a.IsInterfaceLocalMulticast() {
			a = a.WithZone("")
		}
		return a.String()
	}
	if h == "" {
		return host // "" is "all addresses" for ssh -R; a lone "." stays as sent
	}
	return strings.ToLower(h)
}

// inetAton reads an IPv4 address the way inet_aton(3) does: one to four
// parts, each decimal, octal (leading 0) or hexadecimal (0x), the last
// filling the bytes that remain.
func inetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var vals []uint64
	for _, p := range parts {
		base, digits := 10, p
		switch {
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			base, digits = 16, p[2:]
			if digits == "" {
				digits = "0" // inet_aton reads "0x" as 0
			}
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		if digits == "" || strings.ContainsAny(digits, "+-_") {
			return netip.Addr{}, false
		}
		v, err := strconv.ParseUint(digits, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals = append(vals, v)
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*i)
	}
	last := vals[len(vals)-1]
	if last >= 1<<(32-8*(len(vals)-1)) {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// forwardText is a forward's address for the recording: as the client sent
// it, and as policy saw it when that differs.
func forwardText(sent, canonical string, port uint32) string {
	text := net.JoinHostPort(sent, strconv.Itoa(int(port)))
	if canonical != sent {
		text += " (" + canonical + ")"
	}
	return text
}
