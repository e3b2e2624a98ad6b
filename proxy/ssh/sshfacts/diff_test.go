package sshfacts

import (
	"math/rand"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

func TestDiffShell(t *testing.T) {
	r := rand.New(rand.NewSource(int64(len(os.Getenv("SEEDX")))))
	alpha := []string{"a", "b", " ", "\t", "\n", "'", "\"", "\\", "$", "`", "#", "~", "=", "*", "?", "[", "]", "{", "}", ",", ".", ";", "&", "|", "(", ")", "<", ">", "!", "x=", "if", "\\\n", "%", "@", "-", "é", "\r", "A", "1", ":", "^"}
	for _, sh := range []string{"dash", "bash"} {
		n := 0
		for it := 0; it < 200000 && n < 4000; it++ {
			var b strings.Builder
			k := 1 + r.Intn(14)
			for i := 0; i < k; i++ {
				b.WriteString(alpha[r.Intn(len(alpha))])
			}
			c := b.String()
			f, err := Analyze(c)
			if err != nil || !f.Literal() || strings.TrimLeft(c, " \t\n;") != c || strings.Contains(c, "\n;") || strings.HasPrefix(c, "\\\n") || c[0] == '#' {
				continue
			}
			n++
			want := append(append([]string(nil), f.Assignments...), f.Argv...)
			out, err := exec.Command(sh, "-c", "set -- "+c+"\nprintf '%s\\0' \"$#\" \"$@\"").CombinedOutput()
			if err != nil && strings.Contains(strings.ToLower(string(out)), "syntax error") {
				continue
			}
			if err != nil {
				t.Errorf("%s: %q: %v %q", sh, c, err, out)
				continue
			}
			var got []string
			if len(out) > 0 {
				got = strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")[1:]
			}
			if !(len(got) == 0 && len(want) == 0) && !reflect.DeepEqual(got, want) {
				t.Errorf("%s: %q: shell %q, ours %q", sh, c, got, want)
			}
		}
		t.Logf("%s: %d literal commands compared", sh, n)
	}
}
