package ssh

import (
	"fmt"
	"path"
	"strings"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy/ssh/sshfacts"
)

// maxUnwrap bounds how deeply wrapped commands are followed.
const maxUnwrap = 8

// ExecFacts are the policy facts of an exec request's command. A command
// the splitter cannot read (an unterminated quote, a NUL, too long) is an
// error: the handler denies it, as the PostgreSQL handler denies SQL it
// cannot parse.
//
// ssh.programs names every program the command runs, as far as the words
// show it: the first word of each simple command, and also the programs
// run through a shell (sh -c '...'), env, sudo, doas, nice, nohup, timeout,
// xargs, find -exec, busybox and the like, so that `bash -c 'rm -rf x'` and
// `xargs rm` name rm. It cannot see what a script file or an alias runs:
// deny-lists of programs are a speed bump, allow-lists the real control.
func ExecFacts(command string) (policy.SSH, error) {
	f := policy.SSH{Request: "exec", Command: command}
	a, err := sshfacts.Analyze(command)
	if err != nil {
		return f, fmt.Errorf("interlock cannot read this command: %w", err)
	}
	f.Argv = a.Argv
	f.Compound = a.Compound || a.Substitution
	var programs []string
	if err := collectPrograms(a, &programs, &f.Compound, 0); err != nil {
		return f, fmt.Errorf("interlock cannot read this command: %w", err)
	}
	f.Programs = programs
	return f, nil
}

// collectPrograms appends the programs of every command of a, unwrapped.
func collectPrograms(a sshfacts.Facts, out *[]string, compound *bool, depth int) error {
	for _, argv := range a.Commands {
		if err := unwrap(argv, out, compound, depth); err != nil {
			return err
		}
	}
	return nil
}

// unwrap appends argv's program and, when it is a wrapper, what it runs.
func unwrap(argv []string, out *[]string, compound *bool, depth int) error {
	argv = skipAssignments(argv)
	if len(argv) == 0 {
		return nil
	}
	prog := path.Base(argv[0])
	*out = append(*out, prog)
	if depth >= maxUnwrap {
		*compound = true // too deep to follow: treat as opaque
		return nil
	}
	if script, ok := shellScript(prog, argv[1:]); ok {
		*compound = true // a shell interprets a string: more than one simple command
		inner, err := sshfacts.Analyze(script)
		if err != nil {
			return err
		}
		return collectPrograms(inner, out, compound, depth+1)
	}
	rest, ok := wrapped(prog, argv[1:])
	if !ok {
		return nil
	}
	if prog == "find" {
		*compound = true
		for _, cmd := range rest {
			if err := unwrap(cmd, out, compound, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if len(rest) == 1 {
		return unwrap(rest[0], out, compound, depth+1)
	}
	return nil
}

func skipAssignments(argv []string) []string {
	for len(argv) > 0 {
		name, _, ok := strings.Cut(argv[0], "=")
		if !ok || name == "" || strings.ContainsAny(name, "/-.") {
			break
		}
		argv = argv[1:]
	}
	return argv
}

var shells = map[string]bool{"sh": true, "bash": true, "dash": true, "zsh": true, "ksh": true, "ash": true, "mksh": true, "fish": true}

// shellScript is the string a shell is told to run with -c (also in
// combined flags such as -lc or -ec), or su's -c.
func shellScript(prog string, args []string) (string, bool) {
	if !shells[prog] && prog != "su" {
		return "", false
	}
	for i, a := range args {
		if a == "--" {
			break
		}
		if prog == "su" && (a == "-c" || a == "--command") && i+1 < len(args) {
			return args[i+1], true
		}
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.Contains(a, "c") && prog != "su" {
			if i+1 < len(args) {
				return args[i+1], true
			}
			return "", false
		}
		if !strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "+") {
			break
		}
	}
	return "", false
}

// optionsWithValue are, per wrapper, the short options that take the next
// word as their value.
var optionsWithValue = map[string]string{
	"env":     "uCS",
	"sudo":    "ugCDhprtUT",
	"doas":    "uC",
	"nice":    "n",
	"timeout": "sk",
	"xargs":   "adEILnPs",
	"stdbuf":  "ioe",
	"ionice":  "cnp",
	"chrt":    "",
	"command": "",
	"exec":    "a",
	"time":    "fo",
	"setsid":  "",
	"nohup":   "",
	"busybox": "",
	"taskset": "",
	"flock":   "wEn",
	"watch":   "nd",
	"chroot":  "",
}

// wrapped is the command (or commands, for find -exec) that a wrapper
// program runs: its words after the wrapper's options and, for timeout,
// taskset, chroot and flock, their one positional argument.
func wrapped(prog string, args []string) ([][]string, bool) {
	if prog == "find" {
		var cmds [][]string
		for i := 0; i < len(args); i++ {
			switch args[i] {
			case "-exec", "-execdir", "-ok", "-okdir":
				j := i + 1
				for j < len(args) && args[j] != ";" && args[j] != "+" {
					j++
				}
				if j > i+1 {
					cmds = append(cmds, args[i+1:j])
				}
				i = j
			}
		}
		return cmds, len(cmds) > 0
	}
	withValue, ok := optionsWithValue[prog]
	if !ok {
		return nil, false
	}
	i := 0
	for i < len(args) {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		i++
		if !strings.HasPrefix(a, "--") && len(a) == 2 && strings.ContainsRune(withValue, rune(a[1])) && i < len(args) {
			i++ // the option's value
		}
	}
	if prog == "env" {
		for i < len(args) && strings.Contains(args[i], "=") {
			i++
		}
	}
	switch prog {
	case "timeout", "taskset", "chroot", "flock", "chrt":
		i++ // the duration, mask, folder, lock file or priority
	}
	if i >= len(args) {
		return nil, false
	}
	return [][]string{args[i:]}, true
}
