package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// The kernel's sock_diag interface (linux/inet_diag.h), through which the
// gateway lists the TCP sockets of a network namespace with the cgroup each
// was made in, and aborts one (SOCK_DESTROY, as `ss -K` does).

// TCP states (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpSynSent     = 2
	tcpSynRecv     = 3
	tcpFinWait1    = 4
	tcpFinWait2    = 5
	tcpCloseWait   = 8
	tcpLastAck     = 9
	tcpListen      = 10
	tcpClosing     = 11
)

const (
	inetDiagCgroupID = 21 // INET_DIAG_CGROUP_ID
	sizeofSockID     = 48 // struct inet_diag_sockid
	sizeofDiagReq    = 8 + sizeofSockID
	sizeofDiagMsg    = 4 + sizeofSockID + 20
)

// diagSocket is one socket of a dump, with the raw id the kernel needs to
// find it again.
type diagSocket struct {
	family   uint8
	state    uint8
	id       [sizeofSockID]byte // struct inet_diag_sockid, as the kernel sent it
	local    netip.AddrPort
	remote   netip.AddrPort
	cookie   uint64
	uid      uint32
	inode    uint32 // 0: no process holds it (orphaned, or timewait)
	cgroupID uint64
	hasCG    bool
}

// sockDiag is a NETLINK_SOCK_DIAG socket, bound to the network namespace
// of the thread that made it.
type sockDiag struct {
	fd  int
	seq uint32
	buf []byte
}

func openSockDiag() (*sockDiag, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("opening a sock_diag socket: %w", err)
	}
	// A dump that outlives its socket's buffer fails with ENOBUFS
	// rather than losing sockets silently; 1 MiB holds a large batch.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	tv := unix.Timeval{Sec: 5}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return &sockDiag{fd: fd, buf: make([]byte, 64<<10)}, nil
}

func (s *sockDiag) Close() error { return unix.Close(s.fd) }

// request builds a netlink message carrying an inet_diag_req_v2.
func (s *sockDiag) request(typ, flags uint16, family uint8, states uint32, id *[sizeofSockID]byte) []byte {
	s.seq++
	b := make([]byte, unix.NLMSG_HDRLEN+sizeofDiagReq)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], s.seq)
	r := b[unix.NLMSG_HDRLEN:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], states)
	if id != nil {
		copy(r[8:], id[:])
	}
	return b
}

// dump lists the family's TCP sockets in the given states (a bit per
// state).
func (s *sockDiag) dump(family uint8, states uint32) ([]diagSocket, error) {
	req := s.request(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, family, states, nil)
	if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("asking for the TCP sockets: %w", err)
	}
	var out []diagSocket
	for {
		n, _, err := unix.Recvfrom(s.fd, s.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, fmt.Errorf("reading the TCP sockets: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(s.buf[:n])
		if err != nil {
			return nil, fmt.Errorf("reading the TCP sockets: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != s.seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				return nil, fmt.Errorf("reading the TCP sockets: %w", netlinkErr(m.Data))
			case unix.SOCK_DIAG_BY_FAMILY:
				ds, err := parseDiagMsg(m.Data)
				if err != nil {
					return nil, err
				}
				out = append(out, ds)
			}
		}
	}
}

// destroy aborts one socket of a dump: the kernel resets the connection
// (RST to the peer) and fails the owner's next call with ECONNABORTED.
// A socket that closed since the dump is not an error.
func (s *sockDiag) destroy(ds *diagSocket) error {
	req := s.request(unix.SOCK_DESTROY, unix.NLM_F_REQUEST|unix.NLM_F_ACK, ds.family, 1<<ds.state, &ds.id)
	if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	for {
		n, _, err := unix.Recvfrom(s.fd, s.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(s.buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != s.seq || m.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			err := netlinkErr(m.Data)
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		}
	}
}

// netlinkErr reads an NLMSG_ERROR's errno (0: an acknowledgement).
func netlinkErr(b []byte) error {
	if len(b) < 4 {
		return errors.New("short netlink error message")
	}
	if e := int32(binary.NativeEndian.Uint32(b)); e != 0 {
		return unix.Errno(-e)
	}
	return nil
}

// parseDiagMsg reads one struct inet_diag_msg and its attributes.
func parseDiagMsg(b []byte) (diagSocket, error) {
	var ds diagSocket
	if len(b) < sizeofDiagMsg {
		return ds, fmt.Errorf("reading the TCP sockets: a %d-byte inet_diag_msg", len(b))
	}
	ds.family, ds.state = b[0], b[1]
	copy(ds.id[:], b[4:4+sizeofSockID])
	id := b[4:]
	sport, dport := binary.BigEndian.Uint16(id[0:]), binary.BigEndian.Uint16(id[2:])
	var src, dst netip.Addr
	switch ds.family {
	case unix.AF_INET:
		src, dst = netip.AddrFrom4([4]byte(id[4:8])), netip.AddrFrom4([4]byte(id[20:24]))
	case unix.AF_INET6:
		src, dst = netip.AddrFrom16([16]byte(id[4:20])), netip.AddrFrom16([16]byte(id[20:36]))
	default:
		return ds, fmt.Errorf("reading the TCP sockets: address family %d", ds.family)
	}
	ds.local, ds.remote = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	ds.cookie = uint64(binary.NativeEndian.Uint32(id[40:])) | uint64(binary.NativeEndian.Uint32(id[44:]))<<32
	ds.uid = binary.NativeEndian.Uint32(b[4+sizeofSockID+12:])
	ds.inode = binary.NativeEndian.Uint32(b[4+sizeofSockID+16:])
	for a := b[sizeofDiagMsg:]; len(a) >= unix.SizeofRtAttr; {
		l := int(binary.NativeEndian.Uint16(a))
		typ := binary.NativeEndian.Uint16(a[2:])
		if l < unix.SizeofRtAttr || l > len(a) {
			return ds, errors.New("reading the TCP sockets: a malformed attribute")
		}
		if typ == inetDiagCgroupID && l >= unix.SizeofRtAttr+8 {
			ds.cgroupID = binary.NativeEndian.Uint64(a[unix.SizeofRtAttr:])
			ds.hasCG = true
		}
		step := (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if step > len(a) {
			break
		}
		a = a[step:]
	}
	return ds, nil
}

// inNetns runs f on a thread that has joined the network namespace ns
// and then returns the thread to the one it was in. Sockets f makes stay
// in the namespace they were made in.
func inNetns(ns *os.File, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is given up (never unlocked) if it cannot go
		// back: Go then ends it rather than reuse it elsewhere.
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("joining %s: %w", ns.Name(), err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leaving %s: %w", ns.Name(), err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
