package identity

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peerCred is the process and user on the other end of a unix socket, as
// the kernel saw them when it connected (SO_PEERCRED): not what the peer
// claims.
func peerCred(conn *net.UnixConn) (pid, uid uint32, err error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if serr != nil {
		return 0, 0, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return uint32(cred.Pid), cred.Uid, nil
}
