package identity

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// LocalPeer finds the local process on the client side of an accepted TCP
// connection, given the connection's server (local) and client (remote)
// addresses: the socket whose local address is client and whose remote
// address is server, from /proc/net/tcp and /proc/net/tcp6 of this network
// namespace, and the process holding it, from /proc/*/fd. uid is the
// socket's owner. When no socket or no process matches (a remote client, or
// one that already closed) the error wraps ErrNoProcess.
//
// It scans every process's descriptors, so it is meant for explicit mode,
// where no eBPF program recorded the caller.
func LocalPeer(server, client netip.AddrPort) (pid uint32, uid uint32, err error) {
	sock, err := findTCPSocket([]string{"/proc/net/tcp", "/proc/net/tcp6"}, client, server)
	if err != nil {
		return 0, 0, err
	}
	pid, err = findSocketOwner("/proc", sock.Inode)
	if err != nil {
		return 0, 0, fmt.Errorf("finding the process of client %s: %w", client, err)
	}
	return pid, sock.UID, nil
}

// findTCPSocket returns the first socket in files (the /proc/net/tcp
// format) with the given local and remote addresses. IPv4 addresses match
// their v4-mapped form, since a dual-stack socket lists them in tcp6.
func findTCPSocket(files []string, local, remote netip.AddrPort) (tcpSocket, error) {
	local, remote = normalAddrPort(local), normalAddrPort(remote)
	for _, name := range files {
		s, ok, err := scanTCPFile(name, local, remote)
		if err != nil {
			return tcpSocket{}, err
		}
		if ok {
			return s, nil
		}
	}
	return tcpSocket{}, fmt.Errorf("no local TCP socket from %s to %s: %w", local, remote, ErrNoProcess)
}

func scanTCPFile(name string, local, remote netip.AddrPort) (tcpSocket, bool, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return tcpSocket{}, false, nil // no IPv6 in this kernel
	}
	if err != nil {
		return tcpSocket{}, false, fmt.Errorf("reading sockets: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s, err := parseProcNetTCP(sc.Text())
		if err != nil || s.Inode == 0 {
			continue // the header, or a socket in TIME_WAIT that no process holds
		}
		if normalAddrPort(s.Local) == local && normalAddrPort(s.Remote) == remote {
			return s, true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return tcpSocket{}, false, fmt.Errorf("reading %s: %w", name, err)
	}
	return tcpSocket{}, false, nil
}

// normalAddrPort drops v4-mapping and zones so the two ways the kernel and
// the net package print an address compare equal.
func normalAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// findSocketOwner returns the lowest pid below procDir holding a descriptor
// for the socket inode. Processes it may not look into are skipped.
func findSocketOwner(procDir string, inode uint64) (uint32, error) {
	d, err := os.Open(procDir)
	if err != nil {
		return 0, fmt.Errorf("listing processes: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return 0, fmt.Errorf("listing processes: %w", err)
	}
	var pids []uint32
	for _, n := range names {
		if pid, err := strconv.ParseUint(n, 10, 32); err == nil && pid != 0 {
			pids = append(pids, uint32(pid))
		}
	}
	// A socket inherited across fork is held by several processes; the
	// lowest pid makes the answer stable.
	slices.Sort(pids)
	for _, pid := range pids {
		if holdsSocket(filepath.Join(procDir, strconv.FormatUint(uint64(pid), 10), "fd"), inode) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no process holds socket inode %d: %w", inode, ErrNoProcess)
}

func holdsSocket(fdDir string, inode uint64) bool {
	d, err := os.Open(fdDir)
	if err != nil {
		return false // gone, or not ours to look at
	}
	fds, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return false
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fdDir, fd))
		if err != nil {
			continue
		}
		if n, ok := parseSocketLink(target); ok && n == inode {
			return true
		}
	}
	return false
}
