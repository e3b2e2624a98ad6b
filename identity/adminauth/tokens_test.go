package adminauth

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Tokens used across the tests; the file texts below spell them out.
const (
	aliceToken = "alice-0123456789abcdef"
	bobToken   = "bob-fedcba9876543210"
	carolToken = "carol-00000000000000000000"
)

const goodFile = `# admin tokens
- token: "` + aliceToken + `"
  subject: alice
  groups: [dba, oncall]
- token: ` + bobToken + `
  subject: bob
- {token: "` + carolToken + `", subject: carol, groups: []}
`

// writeFile writes content to a new file in a temporary folder with mode.
func writeFile(t testing.TB, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin-tokens.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask; set it exactly.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadTokens(t *testing.T) {
	toks, err := LoadTokens(writeFile(t, goodFile, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if toks.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", toks.Len())
	}
	tests := []struct {
		token   string
		subject string
		groups  []string
	}{
		{aliceToken, "alice", []string{"dba", "oncall"}},
		{bobToken, "bob", nil},
		{carolToken, "carol", nil},
	}
	for _, tt := range tests {
		id, ok := toks.Lookup(tt.token)
		if !ok {
			t.Errorf("Lookup(%s's token) found nothing", tt.subject)
			continue
		}
		if id.Subject != tt.subject || !slices.Equal(id.Groups, tt.groups) || id.Issuer != "" || id.Method != MethodToken {
			t.Errorf("Lookup(%s's token) = %+v", tt.subject, id)
		}
	}
	// The caller cannot change the set through the returned groups.
	id, _ := toks.Lookup(aliceToken)
	id.Groups[0] = "root"
	if id, _ := toks.Lookup(aliceToken); id.Groups[0] != "dba" {
		t.Errorf("changing a returned identity changed the set: groups %v", id.Groups)
	}
}

func TestLoadTokensEmpty(t *testing.T) {
	var zero Tokens
	if _, ok := zero.Lookup(""); ok || zero.Len() != 0 {
		t.Error("a zero Tokens matched a token")
	}
	for _, content := range []string{"", "# nobody yet\n", "[]\n", "~\n", "---\n"} {
		toks, err := LoadTokens(writeFile(t, content, 0o600))
		if err != nil {
			t.Errorf("LoadTokens(%q): %v", content, err)
			continue
		}
		if toks.Len() != 0 {
			t.Errorf("LoadTokens(%q).Len() = %d", content, toks.Len())
		}
		if _, ok := toks.Lookup(aliceToken); ok {
			t.Errorf("LoadTokens(%q) matched a token", content)
		}
		if _, ok := toks.Lookup(""); ok {
			t.Errorf("LoadTokens(%q) matched the empty token", content)
		}
	}
}

func TestLoadTokensErrors(t *testing.T) {
	const secret = "s3cret-s3cret-s3cret-s3cret"
	tests := []struct {
		name    string
		content string
		line    int
		column  int // 0: not checked
		want    string
	}{
		{"empty token", "- token: \"\"\n  subject: alice\n", 1, 10, "token: is empty"},
		{"null token", "- token:\n  subject: alice\n", 1, 0, "token: is empty"},
		{"short token", "- token: short-token\n  subject: alice\n", 1, 10, "token: is 11 bytes; a token is at least 16"},
		{"numeric token", "- token: 12345678901234567890\n  subject: alice\n", 1, 10, "token: is a number; write it as a string in quotes"},
		{"token with a space", "- token: \"" + secret + " x\"\n  subject: alice\n", 1, 10, "has a space"},
		{"token with a newline", "- token: \"" + secret + "\\n\"\n  subject: alice\n", 1, 10, "has a space, control"},
		{"non-ASCII token", "- token: \"" + secret + "é\"\n  subject: alice\n", 1, 10, "non-ASCII"},
		{"token as a list", "- token: [" + secret + "]\n  subject: alice\n", 1, 0, "token: is a list"},
		{"missing token", "- token: \"" + secret + "\"\n  subject: alice\n- subject: bob\n  groups: [dba]\n", 3, 3, "entry has no token"},
		{"missing subject", "- token: \"" + secret + "\"\n  groups: [dba]\n", 1, 3, "entry has no subject"},
		{"empty subject", "- token: \"" + secret + "\"\n  subject: \"\"\n", 2, 12, "subject: is empty"},
		{"subject with a control character", "- token: \"" + secret + "\"\n  subject: \"al\\x01ice\"\n", 2, 0, "control character"},
		{"subject with spaces around", "- token: \"" + secret + "\"\n  subject: \" alice\"\n", 2, 0, "starts or ends with a space"},
		{"numeric subject", "- token: \"" + secret + "\"\n  subject: 42\n", 2, 12, "subject: is a number"},
		{"duplicate token", "- token: \"" + secret + "\"\n  subject: alice\n- token: " + secret + "\n  subject: mallory\n", 3, 10, "also the token of the entry at line 1"},
		{"field set twice", "- token: \"" + secret + "\"\n  subject: alice\n  subject: bob\n", 3, 3, `mapping key "subject" already defined`},
		{"unknown field", "- token: \"" + secret + "\"\n  subjet: alice\n", 2, 3, `unknown field "subjet"; fields are token, subject, groups`},
		{"token written as a key", "- " + secret + ": alice\n", 1, 3, "unknown field; fields are"},
		{"groups not a list", "- token: \"" + secret + "\"\n  subject: alice\n  groups: dba\n", 3, 11, "groups is a list such as [dba, oncall], not a string"},
		{"empty group", "- token: \"" + secret + "\"\n  subject: alice\n  groups: [dba, \"\"]\n", 3, 0, "group: is empty"},
		{"group listed twice", "- token: \"" + secret + "\"\n  subject: alice\n  groups: [dba, dba]\n", 3, 0, `group "dba" is listed twice`},
		{"top level mapping", "token: \"" + secret + "\"\nsubject: alice\n", 1, 1, "the file is a list of entries"},
		{"top level string", secret + "\n", 1, 1, "the file is a list of entries such as \"- token: ...\", not a string"},
		{"entry not a mapping", "- " + secret + "\n", 1, 3, "an entry is a mapping with token, subject and groups, not a string"},
		{"two documents", "- token: \"" + secret + "\"\n  subject: alice\n---\n- token: \"" + secret + "x\"\n  subject: bob\n", 4, 0, "more than one YAML document"},
		{"alias", "- token: &t \"" + secret + "\"\n  subject: alice\n- token: *t\n  subject: bob\n", 3, 10, "aliases are not supported"},
		{"tag", "- token: !!str \"" + secret + "\"\n  subject: alice\n", 1, 0, "tags are not supported"},
		{"merge key", "- token: \"" + secret + "\"\n  <<: {subject: alice}\n", 2, 0, "merge keys are not supported"},
		{"syntax error quoting the token", "- token: \"" + secret + "\n  subject: alice\n", 0, 0, "not valid YAML"},
		{"bad indentation", "- token: \"" + secret + "\"\n    subject: alice\n   groups: [x]\n", 0, 0, "not valid YAML"},
		{"deep brackets", "- token: \"" + secret + "\"\n  subject: alice\n  groups: " + strings.Repeat("[", 100) + "\n", 0, 0, "brackets nest 100 deep"},
		{"long line", "- token: \"" + strings.Repeat("a", maxLineLength) + "\"\n  subject: alice\n", 1, 0, "line is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.content, 0o600)
			_, err := LoadTokens(path)
			if err == nil {
				t.Fatal("LoadTokens succeeded")
			}
			if !errors.Is(err, ErrInvalidTokensFile) {
				t.Errorf("error %q does not wrap ErrInvalidTokensFile", err)
			}
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error %q is not a *FileError", err)
			}
			if fe.File != path || (tt.line != 0 && fe.Line != tt.line) || (tt.column != 0 && fe.Column != tt.column) {
				t.Errorf("error at %s:%d:%d, want %s:%d:%d (%q)", fe.File, fe.Line, fe.Column, path, tt.line, tt.column, err)
			}
			if !strings.HasPrefix(err.Error(), path+":") {
				t.Errorf("error %q does not start with the file name", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q repeats the token", err)
			}
		})
	}
}

func TestLoadTokensRefusesInsecureFiles(t *testing.T) {
	tests := []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o700, true}, // the owner's own bits are the owner's business
		{0o640, false},
		{0o660, false},
		{0o604, false},
		{0o602, false},
		{0o644, false},
		{0o666, false},
	}
	for _, tt := range tests {
		path := writeFile(t, goodFile, tt.mode)
		_, err := LoadTokens(path)
		if tt.ok {
			if err != nil {
				t.Errorf("mode %04o: %v", tt.mode, err)
			}
			continue
		}
		if !errors.Is(err, ErrInsecureFile) {
			t.Errorf("mode %04o: error %v, want ErrInsecureFile", tt.mode, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, path) || !strings.Contains(msg, "chmod 600 "+path) || !strings.Contains(msg, "mode 0"+octal(tt.mode)) {
			t.Errorf("mode %04o: error %q should name the file, the mode and the fix", tt.mode, msg)
		}
	}

	t.Run("not a regular file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadTokens(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("LoadTokens(folder) = %v", err)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.yaml")
		if _, err := LoadTokens(path); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("LoadTokens(missing) = %v", err)
		}
	})

	t.Run("owned by another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("changing a file's owner needs root")
		}
		path := writeFile(t, goodFile, 0o600)
		if err := os.Chown(path, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		_, err := LoadTokens(path)
		if !errors.Is(err, ErrInsecureFile) || !strings.Contains(err.Error(), "uid 4242") {
			t.Errorf("LoadTokens(file of uid 4242) = %v", err)
		}
	})
}

func octal(m os.FileMode) string {
	const digits = "01234567"
	p := m.Perm()
	return string([]byte{digits[p>>6&7], digits[p>>3&7], digits[p&7]})
}

// TestLookupComparesEveryEntry checks the behaviour the constant-time
// design rests on: every lookup makes one comparison per entry, whether the
// token matches the first entry, the last or none.
func TestLookupComparesEveryEntry(t *testing.T) {
	toks, err := LoadTokens(writeFile(t, goodFile, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	realCompare := compareSums
	calls := 0
	compareSums = func(x, y []byte) int {
		calls++
		if len(x) != 32 || len(y) != 32 {
			t.Errorf("compared %d and %d bytes, want two SHA-256 sums", len(x), len(y))
		}
		return realCompare(x, y)
	}
	t.Cleanup(func() { compareSums = realCompare })

	tests := []struct {
		token string
		want  string // subject, "" for no match
	}{
		{aliceToken, "alice"},
		{carolToken, "carol"},
		{"nobody-0123456789abcdef", ""},
		{aliceToken[:len(aliceToken)-1], ""}, // a prefix
		{aliceToken + "0", ""},               // longer
		{strings.ToUpper(aliceToken), ""},
		{" " + aliceToken, ""},
		{"", ""},
	}
	for _, tt := range tests {
		calls = 0
		id, ok := toks.Lookup(tt.token)
		if ok != (tt.want != "") || id.Subject != tt.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tt.token, id.Subject, ok, tt.want)
		}
		if calls != toks.Len() {
			t.Errorf("Lookup(%q) made %d comparisons, want one per entry (%d)", tt.token, calls, toks.Len())
		}
	}
}

func TestReloadKeepsOldSetOnError(t *testing.T) {
	path := writeFile(t, goodFile, 0o600)
	toks, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	rewrite := func(content string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	stillAlice := func(when string) {
		t.Helper()
		if id, ok := toks.Lookup(aliceToken); !ok || id.Subject != "alice" {
			t.Errorf("%s: alice's token no longer works", when)
		}
	}

	rewrite("- token: short\n  subject: alice\n", 0o600)
	if err := toks.Reload(); !errors.Is(err, ErrInvalidTokensFile) {
		t.Errorf("Reload(invalid file) = %v", err)
	}
	stillAlice("after an invalid file")

	rewrite("- token: \"dave-0123456789abcdef\"\n  subject: dave\n", 0o644)
	if err := toks.Reload(); !errors.Is(err, ErrInsecureFile) {
		t.Errorf("Reload(world-readable file) = %v", err)
	}
	stillAlice("after a world-readable file")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := toks.Reload(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Reload(removed file) = %v", err)
	}
	stillAlice("after the file was removed")

	rewrite("- token: \"dave-0123456789abcdef\"\n  subject: dave\n", 0o600)
	if err := toks.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := toks.Lookup(aliceToken); ok {
		t.Error("alice's token still works after it was removed from the file")
	}
	if id, ok := toks.Lookup("dave-0123456789abcdef"); !ok || id.Subject != "dave" {
		t.Error("dave's new token does not work")
	}

	rewrite("[]\n", 0o600)
	if err := toks.Reload(); err != nil || toks.Len() != 0 {
		t.Errorf("Reload(empty list) = %v, Len %d; an empty file revokes every token", err, toks.Len())
	}
}

// TestReloadWhileLooking runs lookups during reloads; with -race it checks
// the swap.
func TestReloadWhileLooking(t *testing.T) {
	path := writeFile(t, goodFile, 0o600)
	toks, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if _, ok := toks.Lookup(aliceToken); !ok {
					t.Error("alice's token stopped working during a reload")
					return
				}
			}
		})
	}
	for range 20 {
		if err := toks.Reload(); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
}
