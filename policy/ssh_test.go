package policy

import "testing"

// sshReq is an SSH request from the agent to bastion.
func sshReq(s SSH) Request {
	return Request{
		Target:   Target{Name: "bastion", Protocol: "ssh", Address: "127.0.0.2:22"},
		Workload: Workload{Name: "agent"},
		SSH:      &s,
	}
}

func TestDecideSSH(t *testing.T) {
	p := mustCompile(t, Config{Default: "allow", Rules: []RuleConfig{
		{Name: "no-rm", When: `ssh.request == "exec" && "rm" in ssh.programs`, Action: "deny", Message: "no deleting"},
		{Name: "no-compound", When: `ssh.compound`, Action: "deny"},
		{Name: "db-tunnel", When: `ssh.request == "direct-tcpip" && ssh.forward.host == "127.0.0.1" && ssh.forward.port == 5432`, Action: "allow"},
		{Name: "no-forwarding", When: `ssh.request in ["direct-tcpip", "forwarded-tcpip", "agent-forwarding", "x11"]`, Action: "deny"},
		{Name: "no-lang", When: `ssh.request == "env" && ssh.env.name.startsWith("LD_")`, Action: "deny"},
		{Name: "etc-read-only", When: `ssh.request == "sftp" && ssh.file.writes && (ssh.file.path.startsWith("/etc/") || ssh.file.target.startsWith("/etc/"))`, Action: "deny"},
		{Name: "root-shell", When: `ssh.request == "shell" && ssh.user == "root"`, Action: "deny"},
		{Name: "no-sql", When: `sql.kind == "ddl"`, Action: "deny"},
		{Name: "sftp-only", When: `ssh.request == "subsystem" && ssh.subsystem != "sftp"`, Action: "deny"},
	}})
	tests := []struct {
		name string
		req  SSH
		want string // rule; "" = default allow
	}{
		{"plain exec", SSH{Request: "exec", Command: "id", Argv: []string{"id"}, Programs: []string{"id"}}, ""},
		{"rm", SSH{Request: "exec", Command: "rm -rf /tmp/x", Argv: []string{"rm", "-rf", "/tmp/x"}, Programs: []string{"rm"}}, "no-rm"},
		{"compound", SSH{Request: "exec", Command: "id; id", Programs: []string{"id", "id"}, Compound: true}, "no-compound"},
		{"allowed tunnel", SSH{Request: "direct-tcpip", ForwardHost: "127.0.0.1", ForwardPort: 5432}, "db-tunnel"},
		{"other tunnel", SSH{Request: "direct-tcpip", ForwardHost: "127.0.0.1", ForwardPort: 22}, "no-forwarding"},
		{"agent forwarding", SSH{Request: "agent-forwarding"}, "no-forwarding"},
		{"env", SSH{Request: "env", EnvName: "LD_PRELOAD", EnvValue: "/x.so"}, "no-lang"},
		{"env ok", SSH{Request: "env", EnvName: "LANG", EnvValue: "C"}, ""},
		{"sftp write etc", SSH{Request: "sftp", FileOp: "open", FilePath: "/etc/passwd", FileWrites: true}, "etc-read-only"},
		{"sftp rename into etc", SSH{Request: "sftp", FileOp: "rename", FilePath: "/tmp/a", FileTarget: "/etc/a", FileWrites: true}, "etc-read-only"},
		{"sftp read etc", SSH{Request: "sftp", FileOp: "open", FilePath: "/etc/passwd"}, ""},
		{"root shell", SSH{Request: "shell", User: "root"}, "root-shell"},
		{"subsystem", SSH{Request: "subsystem", Subsystem: "netconf"}, "sftp-only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sshReq(tc.req)
			d := p.Decide(r)
			wantAction := Allow
			if tc.want != "" && tc.want != "db-tunnel" {
				wantAction = Deny
			}
			if d.Rule != tc.want || d.Action != wantAction {
				t.Errorf("got %+v, want rule %q (%s)", d, tc.want, wantAction)
			}
		})
	}
	// A PostgreSQL request sees zero SSH facts, and the reverse.
	r := pg(SQL{Command: "SELECT", Kind: "read"})
	if d := p.Decide(r); d.Action != Allow || d.Rule != "" {
		t.Errorf("postgres request: %+v", d)
	}
}

func TestSSHFactsChecked(t *testing.T) {
	for _, when := range []string{`ssh.forward.prot == 1`, `ssh.file.op == 1`, `ssh.commandd == ""`, `ssh.forward.port == "22"`} {
		_, err := Compile(Config{Rules: []RuleConfig{{Name: "r", When: when, Action: "deny"}}}, testEnv())
		if err == nil {
			t.Errorf("%s compiled", when)
		}
	}
}
