package identity

// Parsers for what the kernel prints in /proc. They take bytes, never touch
// the file system, build on every OS, and are fuzzed: whatever they are
// given, they return an error rather than panic or guess.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

var errMalformed = errors.New("malformed line")

// parseProcCgroup returns the cgroup v2 path of a /proc/PID/cgroup file:
// the "0::/x/y" line, as "/x/y". The kernel prints a removed cgroup (a
// zombie's) with " (deleted)" after its path, which is kept: a live cgroup
// may be named "y (deleted)" too, and dropping it would take that one for
// its sibling "y". Kept, neither matches a workload's "/x/y", and a removed
// cgroup is no workload's anyway: its path may name a new cgroup by now.
func parseProcCgroup(data []byte) (string, error) {
	for line := range strings.SplitSeq(string(data), "\n") {
		path, ok := strings.CutPrefix(line, "0::")
		if !ok {
			continue
		}
		if !strings.HasPrefix(path, "/") {
			return "", fmt.Errorf("cgroup v2 line %q: %w", line, errMalformed)
		}
		return path, nil
	}
	return "", fmt.Errorf("no cgroup v2 line: %w", ErrNoCgroup2)
}

// mount is the part of a mountinfo line the package needs.
type mount struct {
	Root       string // the folder of the file system mounted, "/" for all of it
	MountPoint string
	FSType     string
}

// parseMountinfoLine parses one line of /proc/PID/mountinfo:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// (see proc(5)): there may be any number of optional fields before the "-".
func parseMountinfoLine(line string) (mount, error) {
	f := strings.Fields(line)
	// Six fixed fields, the separator, and at least the file system type.
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || sep+1 >= len(f) {
		return mount{}, fmt.Errorf("mountinfo line %q: %w", line, errMalformed)
	}
	return mount{
		Root:       unescapeMountinfo(f[3]),
		MountPoint: unescapeMountinfo(f[4]),
		FSType:     f[sep+1],
	}, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in mountinfo paths. Anything else is kept as it is.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v := (s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0')
			b.WriteByte(v)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// defaultCgroupMount is where systemd and most distributions mount the
// cgroup v2 hierarchy; it wins when it is one.
const defaultCgroupMount = "/sys/fs/cgroup"

// cgroup2Mount picks the cgroup v2 mount point from a mountinfo file:
// /sys/fs/cgroup when that is cgroup2 (a plain v2 host), otherwise another
// cgroup2 mount (a hybrid host mounts it at /sys/fs/cgroup/unified),
// preferring one of the whole hierarchy (root "/") when there are several.
// A mount point mounted over later is shadowed and not considered.
func cgroup2Mount(r io.Reader) (string, error) {
	var order []string
	last := map[string]mount{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		m, err := parseMountinfoLine(sc.Text())
		if err != nil {
			continue // a line we cannot read cannot be the one we want
		}
		if _, seen := last[m.MountPoint]; !seen {
			order = append(order, m.MountPoint)
		}
		last[m.MountPoint] = m
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading mountinfo: %w", err)
	}
	if m, ok := last[defaultCgroupMount]; ok && m.FSType == "cgroup2" {
		return m.MountPoint, nil
	}
	first := ""
	for _, mp := range order {
		m := last[mp]
		if m.FSType != "cgroup2" {
			continue
		}
		if m.Root == "/" {
			return m.MountPoint, nil
		}
		if first == "" {
			first = m.MountPoint
		}
	}
	if first == "" {
		return "", ErrNoCgroup2
	}
	return first, nil
}

// tcpSocket is one line of /proc/net/tcp or /proc/net/tcp6.
type tcpSocket struct {
	Local  netip.AddrPort
	Remote netip.AddrPort
	State  uint8
	UID    uint32
	Inode  uint64
}

// parseProcNetTCP parses one socket line of /proc/net/tcp or tcp6:
//
//	sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//	 0: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 51234 ...
//
// Addresses are the kernel's 32-bit words printed in host byte order; ports
// are plain hexadecimal. The header line is an error like any other line
// that is not a socket.
func parseProcNetTCP(line string) (tcpSocket, error) {
	f := strings.Fields(line)
	if len(f) < 10 || !strings.HasSuffix(f[0], ":") {
		return tcpSocket{}, fmt.Errorf("socket line %q: %w", line, errMalformed)
	}
	local, err1 := parseHexAddrPort(f[1])
	remote, err2 := parseHexAddrPort(f[2])
	state, err3 := strconv.ParseUint(f[3], 16, 8)
	uid, err4 := strconv.ParseUint(f[7], 10, 32)
	inode, err5 := strconv.ParseUint(f[9], 10, 64)
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return tcpSocket{}, fmt.Errorf("socket line %q: %w: %w", line, errMalformed, err)
	}
	if local.Addr().Is4() != remote.Addr().Is4() {
		return tcpSocket{}, fmt.Errorf("socket line %q: mixed address families: %w", line, errMalformed)
	}
	return tcpSocket{Local: local, Remote: remote, State: uint8(state), UID: uint32(uid), Inode: inode}, nil
}

// parseHexAddrPort parses "0100007F:1F90" (IPv4) or a 32-digit IPv6
// address and a port.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	addrHex, portHex, ok := strings.Cut(s, ":")
	if !ok || len(portHex) != 4 || (len(addrHex) != 8 && len(addrHex) != 32) {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, errMalformed)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q: %w", portHex, errMalformed)
	}
	var raw [16]byte
	for i := 0; i < len(addrHex)/8; i++ {
		word, err := strconv.ParseUint(addrHex[i*8:i*8+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("address %q: %w", addrHex, errMalformed)
		}
		binary.NativeEndian.PutUint32(raw[i*4:], uint32(word))
	}
	var addr netip.Addr
	if len(addrHex) == 8 {
		addr = netip.AddrFrom4([4]byte(raw[:4]))
	} else {
		addr = netip.AddrFrom16(raw)
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// parseSocketLink returns the inode of a /proc/PID/fd link target
// "socket:[12345]".
func parseSocketLink(target string) (uint64, bool) {
	s, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	inode, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false
	}
	return inode, true
}
