package identity

import (
	"errors"
	"testing"
)

func TestSelectorValidate(t *testing.T) {
	tests := []struct {
		name    string
		sel     Selector
		wantErr bool
	}{
		{"cgroup", Selector{Cgroup: "/agents/demo"}, false},
		{"relative cgroup", Selector{Cgroup: "agents/demo"}, false},
		{"root cgroup", Selector{Cgroup: "/"}, false},
		{"unit", Selector{SystemdUnit: "agent.service"}, false},
		{"template unit", Selector{SystemdUnit: "agent@1.service"}, false},
		{"both", Selector{Cgroup: "/a", SystemdUnit: "a.service"}, true},
		{"neither", Selector{}, true},
		{"unit with slash", Selector{SystemdUnit: "../a.service"}, true},
		{"unit dot dot", Selector{SystemdUnit: ".."}, true},
		{"unit like a flag", Selector{SystemdUnit: "--all"}, true},
		{"nul", Selector{Cgroup: "/a\x00b"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.sel.validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("validate() = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidSelector) {
				t.Errorf("error %v does not wrap ErrInvalidSelector", err)
			}
		})
	}
}

func TestCgroupPath(t *testing.T) {
	tests := []struct {
		root, dir string
		want      string
		wantErr   bool
	}{
		{"/sys/fs/cgroup", "/sys/fs/cgroup/agents/demo", "/agents/demo", false},
		{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified/system.slice/a.service", "/system.slice/a.service", false},
		{"/sys/fs/cgroup", "/sys/fs/cgroup", "/", false},
		{"/sys/fs/cgroup/", "/sys/fs/cgroup/a/", "/a", false},
		{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "", true},
		{"/sys/fs/cgroup", "/sys/fs/cgroup/../x", "", true},
	}
	for _, tt := range tests {
		got, err := cgroupPath(tt.root, tt.dir)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("cgroupPath(%q, %q) = %q, %v; want %q, error %v", tt.root, tt.dir, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestMatchCgroupPath(t *testing.T) {
	bindings := []Binding{
		{WorkloadID: 1, Name: "agents", Path: "/agents"},
		{WorkloadID: 2, Name: "demo", Path: "/agents/demo"},
		{WorkloadID: 3, Name: "unit", Path: "/system.slice/agent.service"},
		{WorkloadID: 4, Name: "unit-again", Path: "/system.slice/agent.service"},
		{WorkloadID: 5, Name: "unresolved"},
	}
	tests := []struct {
		name   string
		proc   string
		bs     []Binding
		want   uint32
		wantOK bool
	}{
		{"exact", "/agents/demo", bindings, 2, true},
		{"child of the deeper workload", "/agents/demo/sub/x", bindings, 2, true},
		{"child of the shallower workload", "/agents/other", bindings, 1, true},
		{"the shallower workload itself", "/agents", bindings, 1, true},
		{"name prefix is no ancestor", "/agents-other", bindings, 0, false},
		{"name prefix of the deeper one", "/agents/demo2", bindings, 1, true},
		{"same path twice: the first wins", "/system.slice/agent.service", bindings, 3, true},
		{"unit child scope", "/system.slice/agent.service/payload", bindings, 3, true},
		{"outside every workload", "/user.slice/user-1000.slice", bindings, 0, false},
		{"root process", "/", bindings, 0, false},
		{"unclean path", "/agents//demo/./x", bindings, 2, true},
		{"outside our namespace", "/../../agents/demo", bindings, 0, false},
		{"relative", "agents/demo", bindings, 0, false},
		{"empty", "", bindings, 0, false},
		{"no bindings", "/agents", nil, 0, false},
		{"root workload covers all", "/user.slice", []Binding{{WorkloadID: 9, Path: "/"}}, 9, true},
		{"deeper beats root", "/agents/demo", append([]Binding{{WorkloadID: 9, Path: "/"}}, bindings...), 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, ok := MatchCgroupPath(tt.proc, tt.bs)
			if ok != tt.wantOK || b.WorkloadID != tt.want {
				t.Errorf("MatchCgroupPath(%q) = %+v, %v; want workload %d, %v", tt.proc, b, ok, tt.want, tt.wantOK)
			}
		})
	}
}
