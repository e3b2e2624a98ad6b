package sshca

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxNameLen bounds a principal or known_hosts host (a DNS name is at most
// 253 bytes; the rest is room for an IPv6 zone).
const maxNameLen = 255

// checkName says why s cannot be a host name or address in a certificate or
// a known_hosts line, or returns nil. Besides what cannot appear in a host
// name at all (white space, control characters, commas that separate
// known_hosts hosts), it refuses the OpenSSH pattern characters: OpenSSH
// matches host certificate principals as patterns, so a "*" coming from an
// agent's dialled address must never turn a certificate into a wildcard;
// and "#", "|", "!", "@", "[", "]" mean something else at the start of,
// or inside, a known_hosts host field ("@" starts a marker such as
// @revoked; no host name has one).
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > maxNameLen:
		return fmt.Errorf("%d bytes, more than %d", len(s), maxNameLen)
	case !utf8.ValidString(s):
		return errors.New("not UTF-8")
	}
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			return fmt.Errorf("white space %q", r)
		case unicode.IsControl(r):
			return fmt.Errorf("control character %q", r)
		case strings.ContainsRune(",*?!#|[]@", r):
			return fmt.Errorf("character %q", r)
		}
	}
	return nil
}

// normalizeHost returns host as OpenSSH compares it: an IP literal (an IPv6
// one possibly in brackets) in its canonical text form, as the address
// OpenSSH checks with CheckHostIP, and a name in lower case, as ssh lowers
// the host name the user typed (ASCII only, like OpenSSH's lowercase()).
// Nothing else is changed: a trailing dot stays, since "db." and "db" are
// different strings to OpenSSH.
func normalizeHost(host string) (string, error) {
	s := host
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
	if err := checkName(s); err != nil {
		return "", err
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.String(), nil
	}
	if strings.Contains(s, ":") {
		return "", errors.New("a colon in a name that is not an IPv6 address")
	}
	return asciiLower(s), nil
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// normalizePrincipals validates and normalises principals, drops
// duplicates and sorts them, so that one set has one cache key.
func normalizePrincipals(principals []string) ([]string, error) {
	// A certificate without principals is valid for every host in OpenSSH.
	if len(principals) == 0 {
		return nil, fmt.Errorf("%w: no principals", ErrInvalidPrincipal)
	}
	if len(principals) > maxPrincipals {
		return nil, fmt.Errorf("%w: %d principals, more than %d", ErrInvalidPrincipal, len(principals), maxPrincipals)
	}
	out := make([]string, 0, len(principals))
	for _, p := range principals {
		n, err := normalizeHost(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrInvalidPrincipal, p, err)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// checkPattern validates one host pattern of an @cert-authority line. The
// OpenSSH pattern syntax (*, ?, !, [host]:port, hashed |1|...) is the
// operator's to use; what is refused would break the line: white space and
// control characters end the field, a comma separates patterns.
func checkPattern(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty pattern", ErrInvalidPattern)
	case !utf8.ValidString(p):
		return fmt.Errorf("%w: %q: not UTF-8", ErrInvalidPattern, p)
	}
	for _, r := range p {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == ',' {
			return fmt.Errorf("%w: %q: character %q", ErrInvalidPattern, p, r)
		}
	}
	return nil
}

// knownHostsHost formats a "host" or "host:port" (an IPv6 address with a
// port in brackets, "[::1]:2222"; without one, bare or in brackets) as an
// OpenSSH known_hosts host: the bare host for port 22, "[host]:port" for
// any other, which is what ssh looks up.
func knownHostsHost(hostport string) (string, error) {
	host, port, hasPort := hostport, "", false
	switch {
	case strings.HasPrefix(hostport, "["):
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "", errors.New("no closing bracket")
		}
		host = hostport[1:end]
		if rest := hostport[end+1:]; rest != "" {
			if port, hasPort = strings.CutPrefix(rest, ":"); !hasPort {
				return "", errors.New("text after the closing bracket is not a port")
			}
		}
	case strings.Count(hostport, ":") == 1:
		host, port, hasPort = strings.Cut(hostport, ":")
	}
	// More than one colon without brackets: an IPv6 address, no port.
	host, err := normalizeHost(host)
	if err != nil {
		return "", err
	}
	if !hasPort {
		return host, nil
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	if n == 22 {
		return host, nil
	}
	return "[" + host + "]:" + strconv.FormatUint(n, 10), nil
}
