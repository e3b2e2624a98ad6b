package redirect

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestExpectedEntries: what SyncExpected writes for a set of expected
// paths, read back as Inspect reads it.
func TestExpectedEntries(t *testing.T) {
	long := "/agents.slice/" + strings.Repeat("x", 242) // 256 bytes
	tests := []struct {
		name string
		in   []Expected
		want []Expected // sorted by path
	}{
		{
			name: "folders on the way are added",
			in:   []Expected{{Path: "/agents.slice/team.slice/agent.service", WorkloadID: 3, Workload: true, EgressDeny: true}},
			want: []Expected{
				{Path: "/agents.slice", WorkloadID: 3},
				{Path: "/agents.slice/team.slice", WorkloadID: 3},
				{Path: "/agents.slice/team.slice/agent.service", WorkloadID: 3, Workload: true, EgressDeny: true},
			},
		},
		{
			name: "a workload wins over a folder at its path, whichever comes first",
			in: []Expected{
				{Path: "/a.slice", WorkloadID: 1},
				{Path: "/a.slice/b.service/c", WorkloadID: 2, Workload: true},
				{Path: "/a.slice/b.service", WorkloadID: 4, Workload: true},
				{Path: "/a.slice/b.service", WorkloadID: 4},
			},
			want: []Expected{
				{Path: "/a.slice", WorkloadID: 1},
				{Path: "/a.slice/b.service", WorkloadID: 4, Workload: true},
				{Path: "/a.slice/b.service/c", WorkloadID: 2, Workload: true},
			},
		},
		{
			name: "a path of 256 bytes is left out, its folders are not",
			in: []Expected{
				{Path: long, WorkloadID: 5, Workload: true},
				{Path: long[:255], WorkloadID: 6, Workload: true},
			},
			want: []Expected{
				{Path: "/agents.slice", WorkloadID: 5},
				{Path: long[:255], WorkloadID: 6, Workload: true},
			},
		},
		{
			name: "the root is never made",
			in:   []Expected{{Path: "/", WorkloadID: 1, Workload: true}},
			want: []Expected{},
		},
		{
			name: "the same workload twice",
			in:   []Expected{{Path: "/a", WorkloadID: 1, Workload: true}, {Path: "/a", WorkloadID: 1, Workload: true}},
			want: []Expected{{Path: "/a", WorkloadID: 1, Workload: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, err := expectedEntries(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got := []Expected{}
			for k, v := range entries {
				if !isNameKey(k) {
					got = append(got, exportExpected(k, v))
				}
			}
			slices.SortFunc(got, func(a, b Expected) int { return strings.Compare(a.Path, b.Path) })
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
			for k := range maps.Keys(entries) {
				if k.Path[cgroupPathMax-1] != 0 {
					t.Errorf("key %q fills the key: the kernel could not tell it from a cut path", exportExpected(k, redirectExpectedValue{}).Path)
				}
			}
		})
	}

	for _, bad := range [][]Expected{
		{{Path: "system.slice/a.service", Workload: true}},
		{{Path: "/system.slice/", Workload: true}},
		{{Path: "/system.slice//a.service", Workload: true}},
		{{Path: "", Workload: true}},
		{{Path: "/a", WorkloadID: 1, Workload: true}, {Path: "/a", WorkloadID: 2, Workload: true}},
	} {
		if _, err := expectedEntries(bad); err == nil {
			t.Errorf("%+v was accepted", bad)
		}
	}
}
