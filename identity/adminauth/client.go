package adminauth

import (
	"fmt"
	"os"
	"strings"

	"github.com/interlock-dev/interlock/identity/keyfile"
)

// TokenEnv is the environment variable the CLI takes its admin credential
// from when no --token-file is given.
const TokenEnv = "INTERLOCK_TOKEN"

const maxClientTokenFile = 64 << 10

// ClientToken returns the CLI's admin credential: the trimmed content of
// tokenFile when it is not "", else the trimmed value of INTERLOCK_TOKEN.
// A token file others can read or write is refused (ErrInsecureFile);
// having neither returns ErrNoCredentials naming both ways. Pipes work as
// token files, so --token-file <(pass show interlock) does.
func ClientToken(tokenFile string) (string, error) {
	var tok, from string
	if tokenFile != "" {
		data, err := keyfile.ReadSecret(tokenFile, keyfile.Rules{
			What:      "token file",
			Forbidden: 0o007,
			Chmod:     "600",
			MaxSize:   maxClientTokenFile,
		})
		if err != nil {
			return "", fmt.Errorf("reading the admin token: %w", err)
		}
		tok, from = strings.TrimSpace(string(data)), tokenFile
		if tok == "" {
			return "", fmt.Errorf("reading the admin token: %s is empty: %w", tokenFile, ErrNoCredentials)
		}
	} else {
		tok, from = strings.TrimSpace(os.Getenv(TokenEnv)), TokenEnv
		if tok == "" {
			return "", fmt.Errorf("no admin token: pass --token-file FILE or set %s: %w", TokenEnv, ErrNoCredentials)
		}
	}
	// It goes into an HTTP header, where a newline or a space would break
	// it or split it.
	if strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", fmt.Errorf("reading the admin token: %s holds spaces, control characters or several lines; it must be one token: %w",
			from, ErrInvalidCredentials)
	}
	return tok, nil
}
