package identity

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// loginPeer is the process on the other end of a login connection, held
// by a pidfd so that a pid reused by another process is noticed.
//
// The pidfd comes from SO_PEERPIDFD (Linux 6.5) where the kernel has it:
// that names the very process that connected, even if it has exited since.
// Elsewhere it is pidfd_open of the SO_PEERCRED pid, right at accept; that
// leaves the moment between the client's connect and the gateway's accept,
// in which the client would have to exit and its pid be handed to a
// process of a workload.
type loginPeer struct {
	pid, uid uint32
	pidfd    int
}

func pinLoginPeer(conn *net.UnixConn) (*loginPeer, error) {
	pid, uid, err := peerCred(conn)
	if err != nil {
		return nil, err
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	pidfd := -1
	var serr error
	if cerr := raw.Control(func(fd uintptr) {
		pidfd, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
	}); cerr != nil {
		return nil, cerr
	}
	switch {
	case serr == nil:
	case errors.Is(serr, unix.ENOPROTOOPT):
		// A kernel before 6.5.
		pidfd, err = unix.PidfdOpen(int(pid), 0)
		if err != nil {
			return nil, fmt.Errorf("pinning process %d (pidfd_open): %w", pid, procErr(err))
		}
	default:
		// The kernel knows the peer but cannot name it: it has exited.
		// pidfd_open of its pid could name another process by now.
		return nil, fmt.Errorf("pinning process %d (SO_PEERPIDFD): %w: %w", pid, ErrNoProcess, serr)
	}
	return &loginPeer{pid: pid, uid: uid, pidfd: pidfd}, nil
}

// alive reports whether the process the pidfd names still exists (a
// zombie counts: its pid is not free for reuse yet). While it does,
// /proc/<pid> is that process.
func (p *loginPeer) alive() error {
	err := unix.PidfdSendSignal(p.pidfd, 0, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("process %d exited: %w", p.pid, ErrNoProcess)
	}
	if err != nil {
		return fmt.Errorf("checking process %d (pidfd_send_signal): %w", p.pid, err)
	}
	return nil
}

func (p *loginPeer) close() { unix.Close(p.pidfd) }
