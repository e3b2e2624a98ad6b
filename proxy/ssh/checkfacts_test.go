package ssh

import (
	"errors"
	"testing"
)

func TestSFTPPaths(t *testing.T) {
	tests := []struct {
		op, p, p2  string
		path, targ string
		err        error
	}{
		{"open", "/srv/../etc/shadow", "", "/etc/shadow", "", nil},
		{"rename", "/srv/a/", "/srv//b/./c", "/srv/a", "/srv/b/c", nil},
		{"symlink", "../etc", "/srv/a/l", "/srv/etc", "/srv/a/l", nil},
		{"symlink", "/etc/../x", "/srv/a/l", "/x", "/srv/a/l", nil},
		{"realpath", ".", "", ".", "", nil},
		{"open", "x", "", "", "", errHomeUnknown},
		{"rename", "/a", "b", "", "", errHomeUnknown},
		{"symlink", "/a", "l", "", "", errHomeUnknown},
	}
	for _, tc := range tests {
		path, targ, err := SFTPPaths(tc.op, tc.p, tc.p2)
		if path != tc.path || targ != tc.targ || !errors.Is(err, tc.err) {
			t.Errorf("SFTPPaths(%q, %q, %q) = %q, %q, %v; want %q, %q, %v", tc.op, tc.p, tc.p2, path, targ, err, tc.path, tc.targ, tc.err)
		}
	}
}
