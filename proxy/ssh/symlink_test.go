package ssh_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSFTPRelativeSymlinkTarget: policy sees a relative symlink target as
// the file the link will point to, resolved against the link's folder
// (as the kernel does), not against the login directory.
func TestSFTPRelativeSymlinkTarget(t *testing.T) {
	remote := t.TempDir()
	protected := filepath.Join(remote, "protected")
	if err := os.Mkdir(protected, 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{policy: fmt.Sprintf(`
default: allow
rules:
  - name: no-links-into-protected
    when: ssh.request == "sftp" && ssh.file.op == "symlink" && ssh.file.path.startsWith(%q)
    action: deny
`, protected+"/")})
	host, port, _ := strings.Cut(e.listener, ":")
	var opts []string
	ao := e.agentOptions()
	for i := 0; i < len(ao); i++ {
		if ao[i] == "-p" { // sftp takes -P
			opts = append(opts, "-P", port)
			i++
			continue
		}
		opts = append(opts, ao[i])
	}
	local := t.TempDir()
	batch := filepath.Join(local, "batch")
	// From remote/links/, ../protected/secret is remote/protected/secret;
	// from the login directory it would be somewhere else.
	script := fmt.Sprintf("mkdir %[1]s/links\n-ln -s ../protected/secret %[1]s/links/denied\nln -s ../elsewhere %[1]s/links/allowed\n", remote)
	if err := os.WriteFile(batch, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, "", "sftp", append(append(opts, "-b", batch), "agent@"+host)...)
	if code != 0 {
		t.Fatalf("sftp: code %d\n%s\n%s", code, out, errOut)
	}
	if _, err := os.Lstat(filepath.Join(remote, "links", "denied")); err == nil {
		t.Error("a link into the protected folder was created")
	}
	if _, err := os.Lstat(filepath.Join(remote, "links", "allowed")); err != nil {
		t.Errorf("the allowed link was not created: %v", err)
	}
}
