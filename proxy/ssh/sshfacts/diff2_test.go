package sshfacts

import (
	"math/rand"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestDiffShellSimple(t *testing.T) {
	r := rand.New(rand.NewSource(int64(len(os.Getenv("SEEDX")))))
	alpha := []string{"a", "b", " ", "\t", "\n", "'", "\"", "\\", "$", "`", "#", "~", "=", "*", "?", "[", "]", "{", "}", ",", ".", ";", "&", "|", "(", ")", "<", ">", "!", "x=", "if", "\\\n", "%", "@", "-", "é", "\r", "A", "1", ":", "^", "$(", "${", "<<", "fi", "then", "do", "done", "{ ", "; }", "in", "case", "esac", ")"}
	dir := t.TempDir()
	for _, sh := range []string{"dash", "bash"} {
		n := 0
		for it := 0; it < 400000 && n < 4000; it++ {
			var b strings.Builder
			k := 1 + r.Intn(14)
			for i := 0; i < k; i++ {
				b.WriteString(alpha[r.Intn(len(alpha))])
			}
			c := b.String()
			f, err := Analyze(c)
			if err != nil || (f.Compound && os.Getenv("SUBST") == "") || (f.Substitution && os.Getenv("SUBST") != "") || strings.TrimLeft(c, " \t\n;") != c || strings.HasPrefix(c, "\\\n") || c[0] == '#' {
				continue
			}
			n++
			cmd := exec.Command(sh, "-x", "-c", "set -- "+c+"\n")
			cmd.Env = []string{"PATH=" + dir}
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil && (strings.Contains(strings.ToLower(string(out)), "syntax error") || strings.Contains(string(out), "bad substitution") || strings.Contains(string(out), "unexpected EOF")) {
				continue
			}
			plus := 0
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "+") {
					plus++
				}
				if strings.HasPrefix(line, "++") {
					t.Errorf("%s: %q: substitution ran: %q", sh, c, out)
				}
			}
			if os.Getenv("SUBST") != "" {
				plus = 0
			}
			if plus > 1 {
				t.Errorf("%s: %q: %v %q", sh, c, err, out)
			}
		}
		t.Logf("%s: %d simple commands compared", sh, n)
	}
}
