package adminauth

import (
	"errors"
	"fmt"
	"strings"

	"github.com/interlock-dev/interlock/identity/keyfile"
)

// Sentinel errors; see the package documentation for when each is returned.
var (
	// ErrNoCredentials: the request carries no Authorization header, or the
	// CLI found neither --token-file nor INTERLOCK_TOKEN.
	ErrNoCredentials = errors.New("no credentials")
	// ErrInvalidCredentials: a credential was presented and is not valid.
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrUnavailable: the credential could not be checked right now (the
	// OIDC provider is unreachable). A TokenVerifier wraps it to get a 503
	// instead of a 401.
	ErrUnavailable = errors.New("credential check unavailable")
	// ErrInsecureFile: a secrets file others can read or write, or that
	// belongs to another user.
	ErrInsecureFile = keyfile.ErrInsecure
	// ErrInvalidTokensFile: the tokens file is not a valid list of tokens;
	// the error is a *FileError naming the line.
	ErrInvalidTokensFile = errors.New("invalid admin tokens file")
)

// FileError is a problem at one place of a tokens file. It matches
// ErrInvalidTokensFile with errors.Is. Its message never holds a token.
type FileError struct {
	File   string
	Line   int // 1-based; 0 when the problem is the file as a whole
	Column int // 1-based; 0 when not known
	Err    error
}

func (e *FileError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FileError) Unwrap() error { return e.Err }

// Is makes every FileError an ErrInvalidTokensFile, so callers need not know
// the type to branch on it.
func (e *FileError) Is(target error) bool { return target == ErrInvalidTokensFile }
