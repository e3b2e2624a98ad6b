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
