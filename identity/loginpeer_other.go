//go:build !linux

package identity

import (
	"errors"
	"net"
)

// loginPeer is the process on the other end of a login connection; only
// Linux can tell.
type loginPeer struct{ pid, uid uint32 }

func pinLoginPeer(*net.UnixConn) (*loginPeer, error) { return nil, errors.ErrUnsupported }

func (p *loginPeer) alive() error { return errors.ErrUnsupported }

func (p *loginPeer) close() {}
