package identity

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseProcCgroup(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr error
	}{
		{"v2 only", "0::/agents/demo\n", "/agents/demo", nil},
		{"root", "0::/\n", "/", nil},
		{"hybrid", "9:name=systemd:/\n4:memory:/process_api/b58\n1:cpu:/\n0::/system.slice/agent.service\n", "/system.slice/agent.service", nil},
		{"no trailing newline", "0::/a", "/a", nil},
		// Kept: a live cgroup may be named "demo (deleted)" as well.
		{"deleted cgroup", "0::/agents/demo (deleted)\n", "/agents/demo (deleted)", nil},
		{"outside the namespace", "0::/../../other\n", "/../../other", nil},
		{"spaces kept", "0::/a b/c\n", "/a b/c", nil},
		{"v1 only", "2:cpu:/\n1:name=systemd:/user.slice\n", "", ErrNoCgroup2},
		{"empty", "", "", ErrNoCgroup2},
		{"relative path", "0::agents\n", "", errMalformed},
		{"empty path", "0::\n", "", errMalformed},
		{"v1 line that looks close", "10::/x\n", "", ErrNoCgroup2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcCgroup([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("path = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseMountinfoLine(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    mount
		wantErr bool
	}{
		{"proc(5) example", "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
			mount{Root: "/mnt1", MountPoint: "/mnt2", FSType: "ext3"}, false},
		{"no optional fields", "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
			mount{Root: "/", MountPoint: "/sys/fs/cgroup/unified", FSType: "cgroup2"}, false},
		{"several optional fields", "30 21 0:26 / /sys/fs/cgroup rw shared:9 master:2 propagate_from:1 - cgroup2 cgroup2 rw",
			mount{Root: "/", MountPoint: "/sys/fs/cgroup", FSType: "cgroup2"}, false},
		{"escaped space", `51 27 0:38 / /mnt/cgroup\040v2 rw - cgroup2 cgroup2 rw`,
			mount{Root: "/", MountPoint: "/mnt/cgroup v2", FSType: "cgroup2"}, false},
		{"escaped backslash and tab", `51 27 0:38 /a\134b /m\011n rw - tmpfs tmpfs rw`,
			mount{Root: `/a\b`, MountPoint: "/m\tn", FSType: "tmpfs"}, false},
		{"short escape kept", `51 27 0:38 / /m\04 rw - tmpfs tmpfs rw`,
			mount{Root: "/", MountPoint: `/m\04`, FSType: "tmpfs"}, false},
		{"no source", "1 2 0:1 / /x rw - tmpfs", mount{Root: "/", MountPoint: "/x", FSType: "tmpfs"}, false},
		{"no separator", "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime cgroup2 cgroup2 rw", mount{}, true},
		{"no fstype", "41 31 0:38 / /x rw -", mount{}, true},
		{"separator too early", "41 31 - cgroup2 cgroup2 rw", mount{}, true},
		{"empty", "", mount{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountinfoLine(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCgroup2Mount(t *testing.T) {
	tests := []struct {
		fixture string
		want    string
		wantErr error
	}{
		{"v2.txt", "/sys/fs/cgroup", nil},
		{"hybrid.txt", "/sys/fs/cgroup/unified", nil},
		{"v1.txt", "", ErrNoCgroup2},
		// Of two cgroup2 mounts, the one of the whole hierarchy.
		{"several.txt", "/mnt/cgroup v2", nil},
		// /sys/fs/cgroup was cgroup2 but is mounted over.
		{"overmounted.txt", "/sys/fs/cgroup/unified", nil},
		// A container without a cgroup namespace sees only its subtree,
		// but it is still the hierarchy there is.
		{"container.txt", "/sys/fs/cgroup", nil},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", "mountinfo", tt.fixture))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := cgroup2Mount(f)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("mount = %q, want %q", got, tt.want)
			}
		})
	}
}

// littleEndian guards the /proc/net/tcp fixtures, which are what a
// little-endian kernel prints.
func littleEndian(t *testing.T) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the /proc/net/tcp fixtures are from a little-endian host")
	}
}

func TestParseProcNetTCP(t *testing.T) {
	littleEndian(t)
	tests := []struct {
		name    string
		in      string
		want    tcpSocket
		wantErr bool
	}{
		{"ipv4 established",
			"   1: 0100007F:8D78 0100007F:841B 01 00000000:00000000 00:00000000 00000000  1000        0 51234 1 0000000011ecaf4f 20 4 30 10 -1",
			tcpSocket{Local: netip.MustParseAddrPort("127.0.0.1:36216"), Remote: netip.MustParseAddrPort("127.0.0.1:33819"), State: 1, UID: 1000, Inode: 51234}, false},
		{"ipv4 listen",
			"   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 142 1 0000000011ecaf4f 100 0 0 10 0",
			tcpSocket{Local: netip.MustParseAddrPort("0.0.0.0:2024"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: 0x0A, Inode: 142}, false},
		{"ipv4 other address",
			"   2: 0201A8C0:0016 6401A8C0:D431 01 00000000:00000000 02:0009C6F3 00000000     0        0 9 1 0",
			tcpSocket{Local: netip.MustParseAddrPort("192.168.1.2:22"), Remote: netip.MustParseAddrPort("192.168.1.100:54321"), State: 1, Inode: 9}, false},
		{"time wait",
			"   1: 0100007F:8D78 0100007F:841B 06 00000000:00000000 03:00000DB0 00000000     0        0 0 3 00000000bf159c18",
			tcpSocket{Local: netip.MustParseAddrPort("127.0.0.1:36216"), Remote: netip.MustParseAddrPort("127.0.0.1:33819"), State: 6}, false},
		{"ipv6 loopback",
			"   0: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:C350 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0",
			tcpSocket{Local: netip.MustParseAddrPort("[::1]:8080"), Remote: netip.MustParseAddrPort("[::1]:50000"), State: 1, Inode: 777}, false},
		{"ipv6 v4-mapped",
			"   3: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C350 01 00000000:00000000 00:00000000 00000000    33        0 778 1 0",
			tcpSocket{Local: netip.MustParseAddrPort("[::ffff:127.0.0.1]:8080"), Remote: netip.MustParseAddrPort("[::ffff:127.0.0.1]:50000"), State: 1, UID: 33, Inode: 778}, false},
		{"ipv6 global",
			"   4: B80D0120000000000000000001000000:0050 B80D0120000000000000000002000000:9C40 01 00000000:00000000 00:00000000 00000000     0        0 779 1 0",
			tcpSocket{Local: netip.MustParseAddrPort("[2001:db8::1]:80"), Remote: netip.MustParseAddrPort("[2001:db8::2]:40000"), State: 1, Inode: 779}, false},
		{"header", "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode", tcpSocket{}, true},
		{"ipv6 header", "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode", tcpSocket{}, true},
		{"too short", "   1: 0100007F:8D78 0100007F:841B 01", tcpSocket{}, true},
		{"bad address length", "   1: 100007F:8D78 0100007F:841B 01 00000000:00000000 00:00000000 00000000 0 0 1 1", tcpSocket{}, true},
		{"bad port", "   1: 0100007F:8D7 0100007F:841B 01 00000000:00000000 00:00000000 00000000 0 0 1 1", tcpSocket{}, true},
		{"bad hex", "   1: 0100007G:8D78 0100007F:841B 01 00000000:00000000 00:00000000 00000000 0 0 1 1", tcpSocket{}, true},
		{"signed hex", "   1: +100007F:8D78 0100007F:841B 01 00000000:00000000 00:00000000 00000000 0 0 1 1", tcpSocket{}, true},
		{"no port", "   1: 0100007F 0100007F:841B 01 00000000:00000000 00:00000000 00000000 0 0 1 1", tcpSocket{}, true},
		{"bad uid", "   1: 0100007F:8D78 0100007F:841B 01 00000000:00000000 00:00000000 00000000 -1 0 1 1", tcpSocket{}, true},
		{"bad state", "   1: 0100007F:8D78 0100007F:841B 1FF 00000000:00000000 00:00000000 00000000 0 0 1 1", tcpSocket{}, true},
		{"bad inode", "   1: 0100007F:8D78 0100007F:841B 01 00000000:00000000 00:00000000 00000000 0 0 x 1", tcpSocket{}, true},
		{"no slot", "0100007F:8D78 0100007F:841B 01 00000000:00000000 00:00000000 00000000 0 0 1 1 1", tcpSocket{}, true},
		{"empty", "", tcpSocket{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcNetTCP(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseSocketLink(t *testing.T) {
	tests := []struct {
		in     string
		want   uint64
		wantOK bool
	}{
		{"socket:[12345]", 12345, true},
		{"socket:[0]", 0, true},
		{"socket:[18446744073709551615]", 1<<64 - 1, true},
		{"socket:[18446744073709551616]", 0, false},
		{"socket:[]", 0, false},
		{"socket:[-1]", 0, false},
		{"socket:[12", 0, false},
		{"pipe:[12345]", 0, false},
		{"anon_inode:[eventfd]", 0, false},
		{"/dev/null", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := parseSocketLink(tt.in)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("parseSocketLink(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// The fuzz targets check more than "no panic": what a parser accepts has
// the shape its callers rely on.

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add("   1: 0100007F:8D78 0100007F:841B 01 00000000:00000000 00:00000000 00000000  1000        0 51234 1 0000000011ecaf4f 20 4 30 10 -1")
	f.Add("   0: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:C350 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0")
	f.Add("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode")
	f.Add("")
	f.Fuzz(func(t *testing.T, line string) {
		s, err := parseProcNetTCP(line)
		if err != nil {
			if s != (tcpSocket{}) {
				t.Errorf("error %v with a non-zero result %+v", err, s)
			}
			return
		}
		if !s.Local.IsValid() || !s.Remote.IsValid() {
			t.Errorf("accepted %q with invalid addresses %+v", line, s)
		}
		if s.Local.Addr().Is4() != s.Remote.Addr().Is4() {
			t.Errorf("accepted %q with mixed address families %+v", line, s)
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add([]byte("0::/agents/demo\n"))
	f.Add([]byte("9:name=systemd:/\n4:memory:/x\n0::/system.slice/a.service (deleted)\n"))
	f.Add([]byte("0::\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseProcCgroup(data)
		if err != nil {
			if p != "" {
				t.Errorf("error %v with path %q", err, p)
			}
			return
		}
		if !strings.HasPrefix(p, "/") || strings.Contains(p, "\n") {
			t.Errorf("accepted %q as path %q", data, p)
		}
	})
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw")
	f.Add("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue")
	f.Add(`51 27 0:38 / /mnt/cgroup\040v2 rw - cgroup2 cgroup2 rw`)
	f.Add("1 2 3 4 5 6 -")
	f.Fuzz(func(t *testing.T, line string) {
		m, err := parseMountinfoLine(line)
		if err != nil {
			if m != (mount{}) {
				t.Errorf("error %v with a non-zero result %+v", err, m)
			}
			return
		}
		if m.FSType == "" || m.MountPoint == "" || m.Root == "" {
			t.Errorf("accepted %q with an empty field: %+v", line, m)
		}
		// The whole-file chooser must not panic on what a line gives.
		_, _ = cgroup2Mount(strings.NewReader(line + "\n" + line))
	})
}

func FuzzParseSocketLink(f *testing.F) {
	f.Add("socket:[12345]")
	f.Add("pipe:[1]")
	f.Add("socket:[")
	f.Fuzz(func(t *testing.T, target string) {
		n, ok := parseSocketLink(target)
		if !ok && n != 0 {
			t.Errorf("rejected %q but returned %d", target, n)
		}
		if ok && !strings.HasPrefix(target, "socket:[") {
			t.Errorf("accepted %q", target)
		}
	})
}
