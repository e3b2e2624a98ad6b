package identity

import (
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
)

func TestRegistry(t *testing.T) {
	groups := []string{"agents", "readers"}
	r := NewRegistry([]Workload{
		{ID: 1, Name: "agent", Identity: Identity{Subject: "agent@example.com", Groups: groups}},
		{ID: 2, Name: "batch", Identity: Identity{Subject: "batch"}},
	})
	groups[0] = "changed by the caller"

	tests := []struct {
		id     uint32
		want   string
		wantOK bool
	}{
		{1, "agent", true},
		{2, "batch", true},
		{3, "", false},
		{0, "", false},
	}
	for _, tt := range tests {
		w, ok := r.Lookup(tt.id)
		if ok != tt.wantOK || w.Name != tt.want {
			t.Errorf("Lookup(%d) = %q, %v; want %q, %v", tt.id, w.Name, ok, tt.want, tt.wantOK)
		}
	}
	w, _ := r.Lookup(1)
	if !slices.Equal(w.Identity.Groups, []string{"agents", "readers"}) {
		t.Errorf("groups = %v: the registry must not share the caller's slice", w.Identity.Groups)
	}
	w.Identity.Groups[0] = "changed by a reader"
	if w2, _ := r.Lookup(1); w2.Identity.Groups[0] != "agents" {
		t.Errorf("a reader changed the registry: %v", w2.Identity.Groups)
	}

	r.Replace([]Workload{{ID: 3, Name: "new"}})
	if _, ok := r.Lookup(1); ok {
		t.Error("Lookup(1) after Replace found the old workload")
	}
	if w, ok := r.Lookup(3); !ok || w.Name != "new" {
		t.Errorf("Lookup(3) after Replace = %+v, %v", w, ok)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	r := NewRegistry([]Workload{{ID: 1, Name: "a"}})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				if i%2 == 0 {
					r.Replace([]Workload{{ID: 1, Name: "a"}, {ID: uint32(j) + 100, Name: "x"}})
				} else if w, ok := r.Lookup(1); !ok || w.Name != "a" {
					t.Errorf("Lookup(1) = %+v, %v during Replace", w, ok)
				}
			}
		})
	}
	wg.Wait()
}

func TestRegistryCallerUnknown(t *testing.T) {
	r := NewRegistry(nil)
	_, err := r.Caller(7, 1, 0, 99)
	if !errors.Is(err, ErrUnknownWorkload) {
		t.Fatalf("Caller of an unknown id: error = %v, want ErrUnknownWorkload", err)
	}
}

func TestCallerLogAttrs(t *testing.T) {
	c := Caller{
		Workload: "agent", WorkloadID: 1, PID: 42, UID: 1000, Executable: "/usr/bin/psql", CgroupID: 1234,
		Identity: Identity{Subject: "alice", Groups: []string{"dba"}, Issuer: "https://issuer.test"},
	}
	got := map[string]slog.Value{}
	var keys []string
	for _, a := range c.LogAttrs() {
		got[a.Key] = a.Value
		keys = append(keys, a.Key)
	}
	want := map[string]string{"workload": "agent", "subject": "alice", "pid": "42", "uid": "1000", "exe": "/usr/bin/psql", "cgroup_id": "1234"}
	if len(keys) != len(want) {
		t.Errorf("keys = %v, want exactly %v", keys, want)
	}
	for k, v := range want {
		if got[k].String() != v {
			t.Errorf("%s = %q, want %q", k, got[k].String(), v)
		}
	}
}
