package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Inspect reads the pinned state under pinPath. It returns ErrNotInstalled
// when nothing is pinned there.
func Inspect(pinPath string) (*State, error) {
	if _, err := os.Stat(pinPath); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", pinPath, ErrNotInstalled)
	}
	st := &State{PinPath: pinPath}
	for _, pin := range linkPins() {
		l, err := link.LoadPinnedLink(filepath.Join(pinPath, pin), nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("loading pinned link %s: %w", pin, err)
		}
		ls := LinkState{Name: pin[len("link_"):]}
		if info, err := l.Info(); err == nil {
			ls.LinkID = uint32(info.ID)
			ls.ProgramID = uint32(info.Program)
			if cg := info.Cgroup(); cg != nil {
				ls.CgroupID = cg.CgroupId
			}
		}
		l.Close()
		st.Links = append(st.Links, ls)
	}

	reads := []func() error{
		func() error {
			return withPinnedMap(pinPath, "settings", func(m *ebpf.Map) error {
				var s redirectSettingsValue
				if err := m.Lookup(uint32(0), &s); err != nil {
					return err
				}
				var v4 [4]byte
				binary.NativeEndian.PutUint32(v4[:], s.Listen4Addr)
				st.Enabled = s.Enabled != 0
				st.Listen4 = netip.AddrPortFrom(netip.AddrFrom4(v4), hostPort(s.Listen4Port))
				if s.Listen6Port != 0 {
					st.Listen6 = netip.AddrPortFrom(netip.AddrFrom16(addrBytes(s.Listen6Addr)), hostPort(s.Listen6Port))
				}
				return nil
			})
		},
		func() error {
			return eachPinned(pinPath, "workloads", func(k uint64, v redirectWorkloadValue) {
				st.Workloads = append(st.Workloads, Workload{CgroupID: k, ID: v.Id, EgressDeny: v.Flags&workloadEgressDeny != 0})
			})
		},
		func() error {
			return eachPinned(pinPath, "guards", func(k uint64, v redirectGuardValue) {
				st.Guards = append(st.Guards, Guard{CgroupID: k, Watermark: v.Watermark, EgressDeny: v.Flags&guardEgressDeny != 0})
			})
		},
		func() error {
			return eachPinned(pinPath, "expected", func(k redirectExpectedKey, v redirectExpectedValue) {
				if k != (redirectExpectedKey{}) && !isNameKey(k) {
					st.Expected = append(st.Expected, exportExpected(k, v))
				}
			})
		},
		func() error {
			return eachPinned(pinPath, "targets", func(k redirectTargetKey, v redirectTargetValue) {
				st.Targets = append(st.Targets, Target{ID: v.Id, Prefix: unmappedPrefix(k.Addr, int(k.Prefixlen)-32), Port: hostPort(k.Port)})
			})
		},
		func() error {
			return eachPinned(pinPath, "egress", func(k redirectEgressKey, _ uint32) {
				st.Egress = append(st.Egress, EgressAllow{WorkloadID: k.Workload, Prefix: unmappedPrefix(k.Addr, int(k.Prefixlen)-64), Port: hostPort(k.Port)})
			})
		},
		func() error {
			return eachPinned(pinPath, "protected", func(k redirectProtectedKey, v uint8) {
				if v == protectedListener {
					st.Protected = append(st.Protected, netip.AddrPortFrom(wordsAddr(k.Addr), hostPort(k.Port)))
				}
			})
		},
		func() error {
			return withPinnedMap(pinPath, "counters", func(m *ebpf.Map) (err error) {
				st.Counters, err = readCounters(m)
				return err
			})
		},
	}
	for _, read := range reads {
		if err := read(); err != nil {
			return st, err
		}
	}
	sort.Slice(st.Workloads, func(i, j int) bool { return st.Workloads[i].CgroupID < st.Workloads[j].CgroupID })
	sort.Slice(st.Guards, func(i, j int) bool { return st.Guards[i].CgroupID < st.Guards[j].CgroupID })
	sort.Slice(st.Expected, func(i, j int) bool { return st.Expected[i].Path < st.Expected[j].Path })
	sort.Slice(st.Targets, func(i, j int) bool { return st.Targets[i].ID < st.Targets[j].ID })
	sort.Slice(st.Protected, func(i, j int) bool { return st.Protected[i].Compare(st.Protected[j]) < 0 })
	return st, nil
}

// linkPins names every link a gateway pins: the connect programs' and the
// cgroup_mkdir program's.
func linkPins() []string {
	pins := make([]string, 0, len(attachments)+1)
	for _, a := range attachments {
		pins = append(pins, a.pin)
	}
	return append(pins, cgroupMkdirPin)
}

// withPinnedMap runs fn on the map pinned as name, read-only; a map that
// is not pinned is skipped.
func withPinnedMap(pinPath, name string, fn func(*ebpf.Map) error) error {
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, name), &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading pinned map %s: %w", name, err)
	}
	defer m.Close()
	if err := fn(m); err != nil {
		return fmt.Errorf("reading pinned map %s: %w", name, err)
	}
	return nil
}

// eachPinned calls fn with every entry of the map pinned as name, read-only;
// a map that is not pinned is skipped.
func eachPinned[K, V any](pinPath, name string, fn func(K, V)) error {
	return withPinnedMap(pinPath, name, func(m *ebpf.Map) error {
		var k K
		var v V
		it := m.Iterate()
		for it.Next(&k, &v) {
			fn(k, v)
		}
		return it.Err()
	})
}

func addrBytes(w [4]uint32) [16]byte {
	return wordsAddr(w).As16()
}

// unmappedPrefix turns a v4-mapped key back into the prefix as configured.
func unmappedPrefix(w [4]uint32, bits int) netip.Prefix {
	a := netip.AddrFrom16(addrBytes(w))
	if a.Is4In6() && bits >= 96 {
		return netip.PrefixFrom(a.Unmap(), bits-96)
	}
	return netip.PrefixFrom(a, bits)
}

// Uninstall detaches the programs and removes every pinned link and map
// under pinPath, then the folder. It returns ErrNotInstalled when there is
// nothing to remove.
func Uninstall(pinPath string) error {
	entries, err := os.ReadDir(pinPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", pinPath, ErrNotInstalled)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", pinPath, err)
	}
	var errs []error
	// Links first: once they are gone nothing enforces, and the maps can go.
	for _, pin := range linkPins() {
		p := filepath.Join(pinPath, pin)
		l, err := link.LoadPinnedLink(p, nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("loading pinned link %s: %w", pin, err))
			continue
		}
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpinning %s: %w", pin, err))
		}
		// Closing the last reference to an unpinned link detaches it.
		l.Close()
	}
	for _, e := range entries {
		p := filepath.Join(pinPath, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", p, err))
		}
	}
	if err := os.Remove(pinPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("removing %s: %w", pinPath, err))
	}
	return errors.Join(errs...)
}
