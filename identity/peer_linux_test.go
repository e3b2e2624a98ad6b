package identity

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// LocalPeer finds this test's own process on the client side of loopback
// connections it makes; no privilege needed.
func TestLocalPeer(t *testing.T) {
	tests := []struct {
		name               string
		listen, listenAddr string
		dial, dialAddr     string // dialAddr's port is the listener's
	}{
		{"ipv4", "tcp4", "127.0.0.1:0", "tcp4", "127.0.0.1"},
		{"ipv6", "tcp6", "[::1]:0", "tcp6", "::1"},
		// A dual-stack listener sees IPv4 clients; the client socket is in
		// /proc/net/tcp, the server's in tcp6 as v4-mapped.
		{"ipv4 client of a dual-stack listener", "tcp", "[::]:0", "tcp4", "127.0.0.1"},
		// An IPv6 socket dialling a v4-mapped address is listed in tcp6
		// with v4-mapped addresses (Go's dialer will not make one).
		{"v4-mapped client", "tcp", "[::]:0", "mapped", "::ffff:127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen(tt.listen, tt.listenAddr)
			if err != nil && tt.listen == "tcp4" {
				t.Fatal(err)
			}
			if err != nil {
				t.Skipf("no IPv6 on this host: %v", err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			c, err := dial(tt.dial, netip.AddrPortFrom(netip.MustParseAddr(tt.dialAddr), uint16(port)))
			if err != nil {
				t.Fatalf("dialling %s: %v", tt.dialAddr, err)
			}
			defer c.Close()
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()

			// What the gateway has: the accepted connection's two ends.
			server := netip.MustParseAddrPort(s.LocalAddr().String())
			client := netip.MustParseAddrPort(s.RemoteAddr().String())
			pid, uid, err := LocalPeer(server, client)
			if err != nil {
				t.Fatalf("LocalPeer(%s, %s): %v", server, client, err)
			}
			if pid != uint32(os.Getpid()) || uid != uint32(os.Getuid()) {
				t.Errorf("LocalPeer = pid %d uid %d, want pid %d uid %d", pid, uid, os.Getpid(), os.Getuid())
			}

		})
	}
}

func TestLocalPeerNotFound(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	server := netip.MustParseAddrPort(ln.Addr().String())
	// No connection from port 1 exists.
	_, _, err = LocalPeer(server, netip.MustParseAddrPort("127.0.0.1:1"))
	if !errors.Is(err, ErrNoProcess) {
		t.Errorf("LocalPeer of a connection that does not exist: error = %v, want ErrNoProcess", err)
	}
}

func TestFindSocketOwnerGone(t *testing.T) {
	// Inode 0 is no socket any process holds.
	if _, err := findSocketOwner("/proc", 0); !errors.Is(err, ErrNoProcess) {
		t.Errorf("findSocketOwner(0): error = %v, want ErrNoProcess", err)
	}
	if _, err := findSocketOwner(t.TempDir(), 1); !errors.Is(err, ErrNoProcess) {
		t.Errorf("findSocketOwner in an empty /proc: error = %v, want ErrNoProcess", err)
	}
}

// dial is net.Dial, except that network "mapped" connects an AF_INET6
// socket to a v4-mapped address.
func dial(network string, to netip.AddrPort) (net.Conn, error) {
	if network != "mapped" {
		return net.Dial(network, to.String())
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "mapped")
	defer f.Close()
	if err := unix.Connect(fd, &unix.SockaddrInet6{Port: int(to.Port()), Addr: to.Addr().As16()}); err != nil {
		return nil, err
	}
	return net.FileConn(f)
}
