//go:build !linux

package redirect

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
)

// Datapath is unavailable outside Linux; use the gateway's --explicit mode.
type Datapath struct{}

var errOS = fmt.Errorf("%w: eBPF redirect needs Linux, not %s", ErrUnsupported, runtime.GOOS)

func ProbeFeatures(*slog.Logger) error                         { return errOS }
func Open(Options) (*Datapath, error)                          { return nil, errOS }
func Inspect(string) (*State, error)                           { return nil, errOS }
func Uninstall(string) error                                   { return errOS }
func (*Datapath) SetListeners(_, _ netip.AddrPort) error       { return errOS }
func (*Datapath) SyncWorkloads([]Workload) error               { return errOS }
func (*Datapath) SyncTargets([]Target) error                   { return errOS }
func (*Datapath) SyncGuards([]Guard) error                     { return errOS }
func (*Datapath) SetGatewayCgroup(uint64) error                { return errOS }
func (*Datapath) SyncExpected([]Expected) error                { return errOS }
func (*Datapath) TracksCgroups() bool                          { return false }
func (*Datapath) SyncEgress([]EgressAllow) error               { return errOS }
func (*Datapath) SetProtected([]netip.AddrPort) error          { return errOS }
func (*Datapath) OriginalDestination(net.Conn) (Origin, error) { return Origin{}, errOS }
func (*Datapath) Counters() ([]Counter, error)                 { return nil, errOS }
func (*Datapath) Sweep() ([]Closed, error)                     { return nil, errOS }
func (*Datapath) SweepReport() ([]Closed, error)               { return nil, errOS }
func (*Datapath) Close() error                                 { return nil }
