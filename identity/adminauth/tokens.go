package adminauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/identity/keyfile"
)

// Limits on a tokens file and its entries.
const (
	// MinTokenLength is the shortest token accepted: 16 random bytes are out
	// of reach of guessing, and shorter tokens are more often typed by hand.
	MinTokenLength = 16
	maxTokenLength = 4096
	maxSubjectLen  = 256
	maxTokensFile  = 1 << 20
)

// Tokens is the set of static admin bearer tokens loaded from a file. It
// holds only the SHA-256 of each token. It is safe for concurrent use;
// Reload swaps the whole set at once.
type Tokens struct {
	path   string
	reload sync.Mutex // one Reload at a time
	set    atomic.Pointer[[]tokenEntry]
}

type tokenEntry struct {
	sum [sha256.Size]byte
	id  Identity
}

// LoadTokens reads the tokens file at path: a YAML list of entries with a
// token (at least MinTokenLength bytes of printable ASCII, no spaces), a
// subject and optional groups. The file must be a regular file that neither
// group nor others can read or write, owned by root or by the user running
// the gateway. A file with no entries loads as an empty set that matches no
// token.
//
// Problems with the file's content are *FileError values naming the line;
// permission problems wrap ErrInsecureFile. No error holds a token.
func LoadTokens(path string) (*Tokens, error) {
	set, err := loadTokenSet(path)
	if err != nil {
		return nil, err
	}
	t := &Tokens{path: path}
	t.set.Store(&set)
	return t, nil
}

// Reload reads the file again and, when it is valid, replaces the set; on an
// error the set in use stays as it was. The gateway calls it on SIGHUP.
func (t *Tokens) Reload() error {
	t.reload.Lock()
	defer t.reload.Unlock()
	set, err := loadTokenSet(t.path)
	if err != nil {
		return err
	}
	t.set.Store(&set)
	return nil
}

// Path is the file the tokens are loaded from.
func (t *Tokens) Path() string { return t.path }

// Len is the number of tokens in the set.
func (t *Tokens) Len() int { return len(t.entries()) }

// entries is the set in use; none for a Tokens not made by LoadTokens.
func (t *Tokens) entries() []tokenEntry {
	if p := t.set.Load(); p != nil {
		return *p
	}
	return nil
}

// compareSums is subtle.ConstantTimeCompare; a variable only so a test can
// count the comparisons Lookup makes.
var compareSums = subtle.ConstantTimeCompare

// Lookup returns the identity token belongs to. It hashes the token and
// compares the hash with every entry in constant time, without stopping at
// a match, so how long it takes says nothing about which entry matched or
// how many there are. Hashing first also makes the comparison independent
// of the token's length.
func (t *Tokens) Lookup(token string) (Identity, bool) {
	set := t.entries()
	sum := sha256.Sum256([]byte(token))
	match := -1
	for i := range set {
		eq := compareSums(set[i].sum[:], sum[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return Identity{}, false
	}
	return set[match].id.clone(), true
}

func loadTokenSet(path string) ([]tokenEntry, error) {
	data, err := keyfile.ReadSecret(path, keyfile.Rules{
		What:      "admin tokens file",
		Forbidden: 0o077,
		Chmod:     "600",
		Regular:   true,
		Owner:     true,
		MaxSize:   maxTokensFile,
	})
	if err != nil {
		return nil, fmt.Errorf("loading admin tokens: %w", err)
	}
	entries, err := parseTokens(path, data)
	if err != nil {
		return nil, err
	}
	set := make([]tokenEntry, len(entries))
	for i, e := range entries {
		set[i] = tokenEntry{
			sum: e.sum,
			id: Identity{
				Identity: identity.Identity{Subject: e.subject, Groups: slices.Clone(e.groups)},
				Method:   MethodToken,
			},
		}
	}
	return set, nil
}
