//go:build !linux

package identity

import (
	"errors"
	"fmt"
	"net/netip"
)

// LocalPeer needs /proc; it is not supported on this system.
func LocalPeer(server, client netip.AddrPort) (pid uint32, uid uint32, err error) {
	return 0, 0, fmt.Errorf("finding the process of client %s: %w", client, errors.ErrUnsupported)
}
