package redirect

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"
)

// TestMapLayouts pins the Go and C layouts of every map key and value. A
// size that drifts between the two sides makes every lookup miss — which
// for a data path that enforces by lookup means silently not enforcing.
func TestMapLayouts(t *testing.T) {
	spec, err := loadRedirect()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name               string
		typ                ebpf.MapType
		key, value         any
		keySize, valueSize uint32 // the sizes bpf/include/interlock.h defines
	}{
		{"settings", ebpf.Array, uint32(0), redirectSettingsValue{}, 4, 32},
		{"workloads", ebpf.Hash, uint64(0), redirectWorkloadValue{}, 8, 8},
		{"guards", ebpf.Hash, uint64(0), redirectGuardValue{}, 8, 16},
		{"expected", ebpf.Hash, redirectExpectedKey{}, redirectExpectedValue{}, 256, 8},
		{"settled", ebpf.LRUHash, uint64(0), uint8(0), 8, 1},
		{"gateways", ebpf.Hash, uint64(0), uint8(0), 8, 1},
		{"targets", ebpf.LPMTrie, redirectTargetKey{}, redirectTargetValue{}, 24, 8},
		{"egress", ebpf.LPMTrie, redirectEgressKey{}, uint32(0), 28, 4},
		{"protected", ebpf.Hash, redirectProtectedKey{}, uint8(0), 20, 1},
		{"sockets", ebpf.LRUHash, uint64(0), redirectSocketState{}, 8, 96},
		{"origins", ebpf.LRUHash, redirectOriginKey{}, redirectOrigin{}, 32, 48},
		{"counters", ebpf.PerCPUHash, redirectCounterKey{}, redirectCounterValue{}, 8, 24},
	}
	if len(tests) != len(spec.Maps) {
		t.Errorf("the object has %d maps, this test pins %d: add the new ones", len(spec.Maps), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ok := spec.Maps[tt.name]
			if !ok {
				t.Fatalf("map %s missing from the object", tt.name)
			}
			if m.Type != tt.typ {
				t.Errorf("type = %s, want %s", m.Type, tt.typ)
			}
			if m.Pinning != ebpf.PinByName {
				t.Errorf("map is not pinned by name: a restart would lose it")
			}
			if got := uint32(binary.Size(tt.key)); got != m.KeySize || got != tt.keySize {
				t.Errorf("key: Go %d bytes, C %d bytes, pinned layout %d", got, m.KeySize, tt.keySize)
			}
			if got := uint32(binary.Size(tt.value)); got != m.ValueSize || got != tt.valueSize {
				t.Errorf("value: Go %d bytes, C %d bytes, pinned layout %d", got, m.ValueSize, tt.valueSize)
			}
		})
	}
}

// TestCgroupWatchMaps: the cgroup_mkdir object shares its maps with the
// connect programs' by pin, so each must be declared exactly alike in both
// objects, or loading the second fails against the first's pins.
func TestCgroupWatchMaps(t *testing.T) {
	redirect, err := loadRedirect()
	if err != nil {
		t.Fatal(err)
	}
	watch, err := loadCgroupwatch()
	if err != nil {
		t.Fatal(err)
	}
	if len(watch.Maps) != 4 {
		t.Errorf("the cgroup_mkdir object has %d maps, want 4 (workloads, guards, expected, settled)", len(watch.Maps))
	}
	for name, m := range watch.Maps {
		r, ok := redirect.Maps[name]
		if !ok {
			t.Errorf("map %s of the cgroup_mkdir object is not in the connect programs' object", name)
			continue
		}
		if m.Pinning != ebpf.PinByName {
			t.Errorf("map %s is not pinned by name: the two objects would not share it", name)
		}
		if m.Type != r.Type || m.KeySize != r.KeySize || m.ValueSize != r.ValueSize || m.MaxEntries != r.MaxEntries || m.Flags != r.Flags {
			t.Errorf("map %s: %s %d/%d/%d/%#x in the cgroup_mkdir object, %s %d/%d/%d/%#x in the connect programs'",
				name, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags, r.Type, r.KeySize, r.ValueSize, r.MaxEntries, r.Flags)
		}
	}
	if got, want := binary.Size(redirectExpectedKey{}), cgroupPathMax; got != want {
		t.Errorf("expected key: %d bytes, want cgroupPathMax %d", got, want)
	}
}
