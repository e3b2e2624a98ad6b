package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// errNotIP says a string is neither an IP address nor a prefix, so it may be
// a hostname.
var errNotIP = errors.New("not an IP address or prefix")

// parseTargetAddress parses a target's "host:port", where host is an IP
// address, a prefix (IPv6 ones in brackets) or a hostname.
func parseTargetAddress(s string) (host string, prefix netip.Prefix, port uint16, err error) {
	h, bracketed, p, hasPort, err := splitHostPort(s)
	if err != nil {
		return "", netip.Prefix{}, 0, err
	}
	if !bracketed && strings.Contains(h, ":") {
		return "", netip.Prefix{}, 0, fmt.Errorf(`%q: IPv6 addresses go in brackets before the port, e.g. "[fd00::1]:5432"`, s)
	}
	if !hasPort {
		return "", netip.Prefix{}, 0, fmt.Errorf("%q has no port", s)
	}
	if port, err = parsePort(p); err != nil {
		return "", netip.Prefix{}, 0, err
	}
	prefix, err = parseIPOrPrefix(h, bracketed)
	switch {
	case err == nil:
		return "", prefix, port, nil
	case errors.Is(err, errNotIP) && !bracketed && !strings.Contains(h, "/") && validHostname(h):
		return strings.ToLower(h), netip.Prefix{}, port, nil
	case errors.Is(err, errNotIP):
		return "", netip.Prefix{}, 0, fmt.Errorf("%q is not an IP address, prefix or hostname", h)
	default:
		return "", netip.Prefix{}, 0, err
	}
}

// parseAllowRule parses an egress.allow entry: an IP address or prefix with
// an optional port, IPv6 in brackets when a port follows.
func parseAllowRule(s string) (AllowRule, error) {
	if !strings.HasPrefix(s, "[") && strings.Count(s, ":") != 1 {
		// No port: IPv4 without a colon, or bare IPv6.
		prefix, err := parseIPOrPrefix(s, false)
		if err != nil {
			return AllowRule{}, allowHostError(s, err)
		}
		return AllowRule{Prefix: prefix}, nil
	}
	h, bracketed, p, hasPort, err := splitHostPort(s)
	if err != nil {
		return AllowRule{}, err
	}
	var port uint16
	if hasPort {
		if port, err = parsePort(p); err != nil {
			return AllowRule{}, err
		}
	}
	prefix, err := parseIPOrPrefix(h, bracketed)
	if err != nil {
		return AllowRule{}, allowHostError(h, err)
	}
	return AllowRule{Prefix: prefix, Port: port}, nil
}

func allowHostError(h string, err error) error {
	if errors.Is(err, errNotIP) {
		if validHostname(h) {
			return fmt.Errorf("%q is a hostname; egress rules take IP addresses and prefixes", h)
		}
		return fmt.Errorf("%q is not an IP address or prefix", h)
	}
	return err
}

// parseAddrPort parses a listener's "ip:port" or "[ipv6]:port".
func parseAddrPort(s string) (netip.AddrPort, error) {
	h, bracketed, p, hasPort, err := splitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if !bracketed && strings.Contains(h, ":") {
		return netip.AddrPort{}, fmt.Errorf(`%q: IPv6 addresses go in brackets before the port, e.g. "[::1]:15001"`, s)
	}
	if !hasPort {
		return netip.AddrPort{}, fmt.Errorf("%q has no port", s)
	}
	port, err := parsePort(p)
	if err != nil {
		return netip.AddrPort{}, err
	}
	addr, err := netip.ParseAddr(h)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address; listeners take ip:port", h)
	}
	if bracketed && !addr.Is6() {
		return netip.AddrPort{}, fmt.Errorf("%q: brackets are for IPv6 addresses", s)
	}
	return netip.AddrPortFrom(addr, port), nil
}

// splitHostPort splits "host:port" or "[host]:port" at the port's colon; an
// unbracketed host with colons is returned whole, for the caller to judge.
func splitHostPort(s string) (host string, bracketed bool, port string, hasPort bool, err error) {
	if rest, ok := strings.CutPrefix(s, "["); ok {
		host, rest, ok = strings.Cut(rest, "]")
		if !ok {
			return "", false, "", false, fmt.Errorf(`%q has no closing "]"`, s)
		}
		if rest == "" {
			return host, true, "", false, nil
		}
		if port, ok = strings.CutPrefix(rest, ":"); !ok {
			return "", false, "", false, fmt.Errorf(`%q: expected ":port" after "]"`, s)
		}
		return host, true, port, true, nil
	}
	if strings.Count(s, ":") != 1 {
		return s, false, "", false, nil
	}
	host, port, _ = strings.Cut(s, ":")
	return host, false, port, true, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New(`no port after ":"`)
	}
	port, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	if port == 0 {
		return 0, errors.New("port 0 is not allowed; use a port from 1 to 65535")
	}
	return uint16(port), nil
}

// parseIPOrPrefix parses an address (as a single-host prefix) or a prefix.
// It returns errNotIP when s is neither, so callers can try a hostname.
// IPv4 stays IPv4: the kernel map maps it, the configuration does not.
func parseIPOrPrefix(s string, bracketed bool) (netip.Prefix, error) {
	var prefix netip.Prefix
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP prefix", s)
		}
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has bits set after the prefix length; did you mean %s?", s, p.Masked())
		}
		prefix = p
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q: %w", s, errNotIP)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q has a zone; write the address without %%%s", s, a.Zone())
		}
		prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if a := prefix.Addr(); a.Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 address; write IPv4 addresses as such, e.g. %s", s, a.Unmap())
	}
	if bracketed && prefix.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%q: brackets are for IPv6 addresses", s)
	}
	return prefix, nil
}

// validHostname reports a DNS name: dot-separated labels of letters, digits,
// "-" and "_", at most 63 bytes each and 253 in all, with an optional final
// dot. The last label is not all digits, so a mistyped IPv4 address is not
// taken for a name.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}
