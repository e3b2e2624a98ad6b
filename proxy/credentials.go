package proxy

import (
	"fmt"
	"os"
	"strings"
)

// ReadPasswordFile reads a target's upstream password: the file's content
// without its line ending; "" for path "". Handlers read it at each login,
// so a rotated password needs no restart. Who may read the file is checked
// when the configuration is loaded.
func ReadPasswordFile(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the upstream password: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
