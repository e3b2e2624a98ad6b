package proxy

import (
	"fmt"
	"strings"

	"github.com/interlock-dev/interlock/identity/keyfile"
)

// maxPasswordFile bounds an upstream password file.
const maxPasswordFile = 64 << 10

// ReadPasswordFile reads a target's upstream password: the file's content
// without its line ending; "" for path "". Handlers read it at each login,
// so a rotated password needs no restart. A file that group or others may
// read or write is refused (the error wraps keyfile.ErrInsecure), as the
// upstream private key and the gateway's own keys are: the password is
// the credential the agent must never see.
func ReadPasswordFile(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := keyfile.ReadSecret(path, keyfile.Rules{What: "upstream password file", Forbidden: 0o077, Chmod: "600", Regular: true, MaxSize: maxPasswordFile})
	if err != nil {
		return "", fmt.Errorf("reading the upstream password: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
