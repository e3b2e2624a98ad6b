package ssh

import "testing"

func TestForwardHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.2", "127.0.0.2"},
		{"127.2", "127.0.0.2"},
		{"127.0.2", "127.0.0.2"},
		{"2130706434", "127.0.0.2"},
		{"0x7f000002", "127.0.0.2"},
		{"0X7F.0.0.2", "127.0.0.2"},
		{"0177.0.0.02", "127.0.0.2"},
		{"127.0.0.2.", "127.0.0.2"},
		{"::ffff:127.0.0.2", "127.0.0.2"},
		{"[::ffff:7f00:2]", "127.0.0.2"},
		{"0:0:0:0:0:0:0:1", "::1"},
		{"::1%1", "::1"}, // the kernel ignores the zone of a non-link-local address
		{"[0::1%lo]", "::1"},
		{"::ffff:127.0.0.2%eth0", "127.0.0.2"},
		{"fe80::1%eth0", "fe80::1%eth0"}, // a link-local address needs its zone
		{"ff02::1%eth0", "ff02::1%eth0"},
		{"LOCALHOST", "localhost"},
		{"localhost.", "localhost"},
		{"Db.Internal.", "db.internal"},
		{"", ""},
		{"256.0.0.1", "256.0.0.1"},
		{"1.2.3.4.5", "1.2.3.4.5"},
		{"08.0.0.1", "08.0.0.1"},
		{"4294967296", "4294967296"},
		{"1.16777216", "1.16777216"},
		{"1.16777215", "1.255.255.255"},
	} {
		if got := forwardHost(tc.in); got != tc.want {
			t.Errorf("forwardHost(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
