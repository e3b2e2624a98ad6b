package ssh_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readmeAllowList is the README's recommended allow-list rule, with an
// sftp scratch folder agents may write to.
const readmeAllowList = `
default: deny
rules:
  - name: read-only-tools
    when: >
      ssh.request == "exec" && !ssh.compound &&
      ssh.program_paths.all(p, p in ["ls", "cat", "id", "test", "printf", "read", "let", "declare", "unset"])
    action: allow
  - name: sftp-subsystem
    when: ssh.request == "subsystem" && ssh.subsystem == "sftp"
    action: allow
  - name: sftp-scratch
    when: ssh.request == "sftp" && (!ssh.file.writes || ssh.file.path.startsWith(%q))
    action: allow
`

// TestAllowListHolds runs, through a real sshd and the login shell (bash),
// commands that an allow-list of harmless programs once let through while
// they ran something else; each must be denied, and what it would have
// run must not have happened.
func TestAllowListHolds(t *testing.T) {
	remote := t.TempDir()
	e := newEnv(t, envOptions{policy: fmt.Sprintf(readmeAllowList, remote+"/")})

	if out, errOut, code := e.ssh(t, "", nil, "id -un"); code != 0 {
		t.Fatalf("an allowed command failed: %d %q %q", code, out, errOut)
	}

	// An uploaded program named like an allowed one.
	local := t.TempDir()
	pwned := filepath.Join(remote, "PWNED")
	evil := filepath.Join(local, "ls")
	if err := os.WriteFile(evil, []byte("#!/bin/sh\ntouch "+pwned+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	batch := filepath.Join(local, "batch")
	if err := os.WriteFile(batch, []byte(fmt.Sprintf("mkdir %[1]s/bin\nput %[2]s %[1]s/bin/ls\nchmod 755 %[1]s/bin/ls\n", remote, evil)), 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(e.listener, ":")
	var opts []string
	ao := e.agentOptions()
	for i := 0; i < len(ao); i++ {
		if ao[i] == "-p" { // sftp's port option is -P
			opts = append(opts, "-P", ao[i+1])
			i++
			continue
		}
		opts = append(opts, ao[i])
	}
	_ = port
	if out, errOut, code := run(t, "", "sftp", append(append(opts, "-b", batch), "agent@"+host)...); code != 0 {
		t.Fatalf("sftp upload to the scratch folder: %d %s %s", code, out, errOut)
	}

	for _, command := range []string{
		// bash evaluates array subscripts of variable names given to
		// builtins, quoted or not.
		"test -v 'a[$(touch " + pwned + ")]'",
		"[ -v 'a[$(touch " + pwned + ")]' ]",
		"printf -v 'a[$(touch " + pwned + ")]' x",
		"read 'a[$(touch " + pwned + ")]' </dev/null",
		"declare 'a[$(touch " + pwned + ")]=1'",
		"let 'a[$(touch " + pwned + ")]=1'",
		"unset 'a[`touch " + pwned + "`]'",
		// A program written with a path runs that file.
		remote + "/bin/ls",
		"cd " + remote + "/bin && ./ls",
		// Assignments choose which file runs.
		"PATH=" + remote + "/bin ls",
		// The program word is not what it looks like.
		"$'\\x74ouch' " + pwned,
		"t${IFS:0:0}ouch " + pwned,
	} {
		_, errOut, code := e.ssh(t, "", nil, command)
		if code != 126 || !strings.Contains(errOut, "interlock:") {
			t.Errorf("%s: exit %d, stderr %q; want it denied", command, code, errOut)
		}
		if _, err := os.Stat(pwned); err == nil {
			t.Fatalf("%s ran: %s exists", command, pwned)
		}
	}
}
