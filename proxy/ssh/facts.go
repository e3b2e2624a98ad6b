package ssh

import (
	"fmt"
	"strings"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy/ssh/sshfacts"
)

// maxUnwrap bounds how deeply wrapped commands are followed.
const maxUnwrap = 8

// maxGuesses bounds how many words of a wrapper whose options cannot be
// read are each followed as a possible command.
const maxGuesses = 3

// ExecFacts are the policy facts of an exec request's command. A command
// the splitter cannot read (an unterminated quote, a NUL, too long) is an
// error: the handler denies it, as the PostgreSQL handler denies SQL it
// cannot parse.
//
// ssh.programs names every program the command runs, as far as the words
// show it: the first word of each simple command, and also the programs
// run through a shell (sh -c '...'), env, sudo, doas, nice, nohup, timeout,
// xargs, find -exec, jobs -x, busybox and the like (gosu, su-exec, runcon,
// chpst, setuidgid, systemd-nspawn, start-stop-daemon --start, ip netns
// exec, zsh's repeat and -, the dynamic loader, ...), so that
// `bash -c 'rm -rf x'` and `xargs rm` name rm. ssh.program_paths has the same programs as written:
// a program written with a slash (./ls, /tmp/bin/ls) runs that file,
// whatever its base name.
//
// ssh.compound is also set where the words alone do not say what runs:
//   - a program word the shell changes ($'\x72m', r${IFS:0:0}m, r?, {rm,x});
//   - any assignment (PATH=/x ls, env LD_PRELOAD=/x.so ls), which can
//     change which file or library runs;
//   - shells, su and runuser (they run a script, a -c string or stdin),
//     and programs that run code given as an argument or a file: eval,
//     trap, source, ., enable, mapfile, script, watch, env -S, flock -c,
//     sudo -s, jobs -x, ...;
//   - bash builtins that evaluate an array subscript of a variable name
//     (test -v 'a[$(rm x)]', printf -v, read, unset, declare, let, ...)
//     with a $ or ` in any argument, since the subscript's substitution
//     runs even when the word was quoted;
//   - a wrapper with an option this file does not know (strace, unshare
//     and the like always): its command is then guessed, not read;
//   - a wrapper that sets variables, as an assignment does (envdir and
//     chpst -e from files, systemd-nspawn -E), or runs a shell or an
//     init for want of a command (chroot DIR, systemd-nspawn -b), or
//     runs its command in another root, where the program word names a
//     file of that tree (chroot DIR CMD, systemd-nspawn, chpst -/,
//     sudo -R, start-stop-daemon -r);
//   - a word read here that is not literal (sshfacts.Facts.LiteralWords:
//     the shell may change its text or make it several words or none):
//     a wrapper's options, their values and its positional words
//     (timeout {5,touch} cat runs touch, nice -n 5${IFS}touch cat too),
//     any argument of find ($'-exec', {-exec,touch,x,\;}), of jobs and
//     of the subscript-evaluating builtins (declare {-i,x=TERM}, test -v
//     ??????? with a file a[TERM]). Words after a wrapper's command are
//     that command's, and stay as free as any program's arguments.
//
// It cannot see what a script file or an alias runs: deny-lists of
// programs are a speed bump, allow-lists the real control.
func ExecFacts(command string) (policy.SSH, error) {
	f := policy.SSH{Request: "exec", Command: command}
	a, err := sshfacts.Analyze(command)
	if err != nil {
		return f, fmt.Errorf("interlock cannot read this command: %w", err)
	}
	f.Argv = a.Argv
	var u unwrapper
	if err := u.commands(a, 0); err != nil {
		return f, fmt.Errorf("interlock cannot read this command: %w", err)
	}
	f.Programs, f.ProgramPaths, f.Assignments = u.programs, u.paths, u.assignments
	f.Compound = u.compound || len(u.assignments) > 0
	return f, nil
}

// unwrapper collects the programs of a command and of what it wraps.
type unwrapper struct {
	programs, paths, assignments []string
	compound                     bool
	// steps counts unwrap calls, so that guessing and nested scripts stay
	// bounded work.
	steps int
}

// maxSteps bounds the commands unwrapped for one exec request; past it
// the command is opaque (compound).
const maxSteps = 512

// commands adds the programs of every command of a, unwrapped.
func (u *unwrapper) commands(a sshfacts.Facts, depth int) error {
	u.assignments = append(u.assignments, a.Assignments...)
	if a.Compound || a.Substitution {
		u.compound = true
	}
	for i, argv := range a.Commands {
		var literal []bool
		if i < len(a.LiteralWords) {
			literal = a.LiteralWords[i]
		}
		if err := u.unwrap(argv, literalFlags(argv, literal), depth); err != nil {
			return err
		}
	}
	return nil
}

// literalFlags returns literal when it has a flag for each word of argv,
// and otherwise flags that call every word not literal.
func literalFlags(argv []string, literal []bool) []bool {
	if len(literal) == len(argv) {
		return literal
	}
	return make([]bool, len(argv))
}

// allLiteral reports whether every word is literal: the shell passes each
// on as the one word written, with quotes removed.
func allLiteral(literal []bool) bool {
	for _, l := range literal {
		if !l {
			return false
		}
	}
	return true
}

// script adds the programs of a shell script given as an argument (sh -c
// SCRIPT, eval, trap, su -c).
func (u *unwrapper) script(s string, depth int) error {
	u.compound = true
	inner, err := sshfacts.Analyze(s)
	if err != nil {
		return err
	}
	return u.commands(inner, depth+1)
}

// unwrap adds argv's program and, when it is a wrapper, what it runs.
// literal has, for each word of argv, whether it is literal.
func (u *unwrapper) unwrap(argv []string, literal []bool, depth int) error {
	if depth > 0 {
		// A wrapped command's leading NAME=value words (env, sudo) set
		// its environment.
		for len(argv) > 0 && isAssignment(argv[0]) {
			u.assignments = append(u.assignments, argv[0])
			argv, literal = argv[1:], literal[1:]
		}
	}
	if len(argv) == 0 {
		return nil
	}
	word := argv[0]
	prog := word[strings.LastIndexByte(word, '/')+1:]
	u.programs = append(u.programs, prog)
	u.paths = append(u.paths, word)
	if !plainProgram(word) || !literal[0] {
		u.compound = true
	}
	if u.steps++; depth >= maxUnwrap || u.steps > maxSteps {
		u.compound = true // too deep or too much to follow: treat as opaque
		return nil
	}
	args := argv[1:]
	literal = literal[1:]
	switch {
	case word == "-" && len(args) > 0:
		// zsh's precommand modifier: - CMD runs CMD, a - before its
		// argv[0] (bash and dash look for a program named -).
		return u.unwrap(args, literal, depth+1)
	case shells[prog]:
		u.compound = true // a shell runs its -c string, a script file or stdin
		if s, ok := shellScript(args); ok {
			return u.script(s, depth)
		}
		return nil
	case prog == "su" || prog == "runuser" || prog == "sg":
		return u.switchUser(prog, args, literal, depth)
	case prog == "repeat":
		return u.repeat(args, literal, depth)
	case prog == "start-stop-daemon":
		return u.startStopDaemon(args, literal, depth)
	case prog == "ip":
		return u.ipExec(args, literal, depth)
	case prog == "eval":
		if len(args) == 0 {
			return nil
		}
		return u.script(strings.Join(args, " "), depth)
	case prog == "trap":
		u.compound = true
		for len(args) > 0 && strings.HasPrefix(args[0], "-") {
			args = args[1:]
		}
		if len(args) > 0 {
			return u.script(args[0], depth)
		}
		return nil
	case runsCode[prog]:
		u.compound = true
		return nil
	case evaluatesSubscripts[prog]:
		// A word the shell changes may become an option or a name
		// with a subscript: declare {-i,x=TERM}, test -v ??????? with
		// a file a[TERM].
		u.compound = u.compound || evaluatesText(prog, args) || !allLiteral(literal)
		return nil
	case prog == "find":
		// find reads every argument: a word the shell changes may
		// become -exec, or the ; that ends one ($'-exec', {-exec,rm}).
		if !allLiteral(literal) {
			u.compound = true
		}
		cmds := findExec(args)
		if len(cmds) > 0 {
			u.compound = true
		}
		for _, c := range cmds {
			if err := u.unwrap(args[c[0]:c[1]], literal[c[0]:c[1]], depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if spec, ok := wrappers[prog]; ok {
		return u.wrapper(prog, spec, args, literal, depth)
	}
	if w, ok := plainWrappers[prog]; ok {
		return u.plainWrapper(w, args, literal, depth)
	}
	if opaqueWrappers[prog] || dynamicLoader(prog) {
		u.compound = true
		return u.guess(args, literal, depth)
	}
	return nil
}

// guess follows each of the first few words of args that do not look like
// options as a possible command, and a word with blanks or operators also
// as a possible script (script -c CMD, watch CMD): for a wrapper whose
// options are not known, listing too many programs is safer than missing
// the one it runs. The caller has made the command compound.
func (u *unwrapper) guess(args []string, literal []bool, depth int) error {
	n := 0
	for i, a := range args {
		if strings.HasPrefix(a, "-") || isAssignment(a) {
			continue
		}
		if err := u.unwrap(args[i:], literal[i:], depth+1); err != nil {
			return err
		}
		if strings.ContainsAny(a, " \t\n;&|()<>`$") && depth+1 < maxUnwrap {
			// Not a script after all when it cannot be read: its
			// program is listed as the word it is.
			if inner, err := sshfacts.Analyze(a); err == nil {
				if err := u.commands(inner, depth+1); err != nil {
					return err
				}
			}
		}
		if n++; n == maxGuesses {
			break
		}
	}
	return nil
}

// plainProgram reports whether a program word names its program as
// written: the shell neither expands nor globs it.
func plainProgram(word string) bool {
	if word == "[" || word == "[[" {
		return true
	}
	if strings.HasPrefix(word, "~") || strings.HasPrefix(word, "=") {
		return false // ~user/x, and zsh's =ls
	}
	return !strings.ContainsAny(word, "$`*?[]{}")
}

// isAssignment reports whether word is NAME=value.
func isAssignment(word string) bool {
	name, _, ok := strings.Cut(word, "=")
	if !ok || name == "" || ('0' <= name[0] && name[0] <= '9') {
		return false
	}
	for _, c := range []byte(name) {
		if c != '_' && !('a' <= c && c <= 'z') && !('A' <= c && c <= 'Z') && !('0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

var shells = map[string]bool{
	"sh": true, "bash": true, "rbash": true, "dash": true, "zsh": true, "ksh": true, "ksh93": true,
	"mksh": true, "lksh": true, "oksh": true, "pdksh": true, "ash": true, "yash": true, "posh": true,
	"fish": true, "csh": true, "tcsh": true,
}

// runsCode are programs and builtins that run code named by an argument,
// a file or later input: their commands cannot be listed.
var runsCode = map[string]bool{
	"source": true, ".": true, "enable": true, "bind": true, "compgen": true, "complete": true,
	"fc": true, "mapfile": true, "readarray": true, "alias": true, "hash": true,
	"emulate": true, "zmodload": true, "autoload": true, "sched": true,
}

// evaluatesSubscripts are bash builtins that evaluate a variable name's
// array subscript (a[$(cmd)]), or an arithmetic expression, given as an
// argument: a substitution there runs even when the word was quoted.
var evaluatesSubscripts = map[string]bool{
	"test": true, "[": true, "[[": true, "printf": true, "read": true, "unset": true, "wait": true,
	"let": true, "declare": true, "typeset": true, "local": true, "export": true, "readonly": true,
	"getopts": true, "shift": true, "return": true, "exit": true, "break": true, "continue": true,
	"ulimit": true, "caller": true, "kill": true,
}

// evaluatesText reports arguments of an evaluatesSubscripts builtin that
// make bash evaluate text: a substitution; an array subscript (test -v
// 'a[i]', printf -v, read, unset: the subscript is arithmetic, which
// evaluates the text of the variables it names — TERM='a[$(cmd)]' runs
// cmd — with no $ in the word); any argument of let, which is arithmetic;
// and an assignment of declare and its kin with the integer attribute
// (declare -i x=TERM).
func evaluatesText(prog string, args []string) bool {
	if prog == "let" && len(args) > 0 {
		return true
	}
	integer := false
	for _, a := range args {
		if strings.ContainsAny(a, "$`[") {
			return true
		}
		if len(a) > 1 && (a[0] == '-' || a[0] == '+') && strings.Contains(a, "i") {
			integer = true
		}
	}
	switch prog {
	case "declare", "typeset", "local", "export", "readonly":
		return integer
	}
	return false
}

// shellScript is the string a shell is told to run with -c, wherever the
// -c is among its options (bash -o pipefail -c, bash -c -e): the first
// word after the options.
func shellScript(args []string) (string, bool) {
	cmode := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--" || a == "-":
			if cmode && i+1 < len(args) {
				return args[i+1], true
			}
			return "", false
		case a == "--rcfile" || a == "--init-file":
			i++
		case a == "--command" || a == "-command":
			cmode = true
		case strings.HasPrefix(a, "--"):
		case len(a) > 1 && (a[0] == '-' || a[0] == '+'):
			if a[0] == '-' && strings.Contains(a, "c") {
				cmode = true
			}
			// -o and -O take the next word (bash -eo pipefail).
			i += strings.Count(a, "o") + strings.Count(a, "O")
		default:
			return a, cmode
		}
	}
	return "", false
}

// switchUser adds what su, runuser or sg run: a -c string (anywhere among
// the arguments, su root -c CMD), or runuser -u's command. They run the
// user's shell (runuser -u a command of its options' choosing: -m keeps
// the environment), so they are always compound.
func (u *unwrapper) switchUser(prog string, args []string, literal []bool, depth int) error {
	u.compound = true
	if prog == "runuser" {
		cmd, cmdLiteral, known := runuserCommand(args, literal)
		if len(cmd) > 0 {
			return u.unwrap(cmd, cmdLiteral, depth+1)
		}
		if !known {
			// A newer runuser's option: its command, or its -c
			// string below, is guessed.
			if err := u.guess(args, literal, depth); err != nil {
				return err
			}
		}
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-c" || a == "--command" || a == "--session-command":
			if i+1 < len(args) {
				if err := u.script(args[i+1], depth); err != nil {
					return err
				}
				i++
			}
		case strings.HasPrefix(a, "--command=") || strings.HasPrefix(a, "--session-command="):
			_, s, _ := strings.Cut(a, "=")
			if err := u.script(s, depth); err != nil {
				return err
			}
		case len(a) > 2 && a[0] == '-' && a[1] != '-' && strings.Contains(a, "c"):
			// -lc CMD, or -cCMD
			s := a[strings.IndexByte(a, 'c')+1:]
			if s == "" && i+1 < len(args) {
				s = args[i+1]
				i++
			}
			if err := u.script(s, depth); err != nil {
				return err
			}
		}
	}
	if prog == "sg" && len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		return u.script(strings.Join(args[1:], " "), depth) // sg GROUP CMD
	}
	return nil
}

// runuserSpec is runuser's options (util-linux).
var runuserSpec = spec("c: f g: G: l m p P s: u: h V w:",
	"command: session-command: fast group: supp-group: login preserve-environment pty shell: user: whitelist-environment: help version", 0)

// runuserCommand is the command runuser -u USER runs itself, without a
// shell, with the literal flag of each of its words. getopt_long takes
// options from anywhere before --, so -u may come after the command
// (runuser rm -u root x runs rm x) and runuser may take some of the
// command's own: the command is the words that are not options, in
// order, then those after --. Without -u, runuser runs the user's shell,
// and cmd is nil. known is false after an option runuser does not have
// (a newer runuser's): which word is the command is then not known.
func runuserCommand(args []string, literal []bool) (cmd []string, cmdLiteral []bool, known bool) {
	user := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			cmd, cmdLiteral = append(cmd, args[i+1:]...), append(cmdLiteral, literal[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			cmd, cmdLiteral = append(cmd, a), append(cmdLiteral, literal[i])
			continue
		}
		if strings.HasPrefix(a, "--") {
			long, _, hasValue := strings.Cut(a[2:], "=")
			name, kind, ok := runuserSpec.longOption(long)
			if !ok {
				return nil, nil, false
			}
			user = user || name == "user"
			if kind == valueRequired && !hasValue {
				i++
			}
			continue
		}
		for j := 1; j < len(a); j++ {
			kind, ok := runuserSpec.short[a[j]]
			if !ok {
				return nil, nil, false
			}
			user = user || a[j] == 'u'
			if kind != noValue {
				if j == len(a)-1 && kind == valueRequired {
					i++ // -u USER: the value is the next word
				}
				break
			}
		}
	}
	if !user || len(cmd) == 0 {
		return nil, nil, true
	}
	return cmd, cmdLiteral, true
}

// optionKind is whether an option takes a value.
type optionKind uint8

const (
	noValue       optionKind = iota
	valueRequired            // -o VALUE, -oVALUE, --opt VALUE, --opt=VALUE
	valueOptional            // -oVALUE, --opt=VALUE only
)

// wrapperSpec is what a wrapper accepts before the command it runs, as its
// getopt reads it (options stop at the first other word).
type wrapperSpec struct {
	short map[byte]optionKind
	long  map[string]optionKind
	// positional is how many words come between the options and the
	// command: timeout's duration, taskset's mask, chroot's folder.
	positional int
	// compound options make the wrapper run its command through a shell
	// or run code of their own: sudo -s, env -S, flock -c.
	compound map[string]bool
	// noPositional are options whose use means the positional words are
	// not there: runcon -t TYPE CMD has no CONTEXT.
	noPositional map[string]bool
	// exactLong: long options are known by their full names only. For a
	// wrapper whose options are listed in part (systemd-nspawn), a prefix
	// that names one listed option may be, to the wrapper, an option of
	// its own not listed, with another grammar.
	exactLong bool
	// shellWithout: without a command the wrapper runs a shell or an init
	// of its own (chroot DIR, systemd-nspawn -D DIR), or, with a
	// compound option, its arguments (systemd-nspawn -b ARGS).
	shellWithout bool
	// root are the options that make the command run in another root
	// folder (sudo -R DIR, chpst -/ DIR), where its program word names a
	// file of that tree, not the one a rule allows (chroot /tmp/x
	// /usr/bin/ls runs /tmp/x/usr/bin/ls): the command is compound. ""
	// is the first positional word (chroot DIR, unless DIR is /), "*"
	// the wrapper itself (systemd-nspawn runs its command in a
	// container's tree, the current folder's by default).
	root map[string]bool
}

// inRoot sets root.
func (s wrapperSpec) inRoot(opts ...string) wrapperSpec {
	s.root = map[string]bool{}
	for _, o := range opts {
		s.root[o] = true
	}
	return s
}

// withShell sets shellWithout.
func (s wrapperSpec) withShell() wrapperSpec { s.shellWithout = true; return s }

// exact sets exactLong.
func (s wrapperSpec) exact() wrapperSpec { s.exactLong = true; return s }

// positionalUnless sets noPositional.
func (s wrapperSpec) positionalUnless(opts ...string) wrapperSpec {
	s.noPositional = map[string]bool{}
	for _, o := range opts {
		s.noPositional[o] = true
	}
	return s
}

func spec(short string, long string, positional int, compound ...string) wrapperSpec {
	s := wrapperSpec{short: map[byte]optionKind{}, long: map[string]optionKind{}, positional: positional, compound: map[string]bool{}}
	kinds := func(list string, set func(string, optionKind)) {
		for _, o := range strings.Fields(list) {
			k := noValue
			switch {
			case strings.HasSuffix(o, "::"):
				k, o = valueOptional, strings.TrimSuffix(o, "::")
			case strings.HasSuffix(o, ":"):
				k, o = valueRequired, strings.TrimSuffix(o, ":")
			}
			set(o, k)
		}
	}
	kinds(short, func(o string, k optionKind) { s.short[o[0]] = k })
	kinds(long, func(o string, k optionKind) { s.long[o] = k })
	for _, c := range compound {
		s.compound[c] = true
	}
	return s
}

// wrappers are programs that run the command in their arguments, with the
// options each accepts (short ones space-separated, ':' after one taking a
// value, '::' after one whose value must be attached). An option not
// listed makes the command compound, its command guessed.
var wrappers = map[string]wrapperSpec{
	"env": spec("i 0 v u: C: S:",
		"ignore-environment null unset: chdir: split-string: block-signal:: default-signal:: ignore-signal:: list-signal-handling debug help version",
		0, "S", "split-string"),
	"sudo": spec("A B b E e H h:: i K k l N n P S s V v a: c: C: D: g: p: R: r: T: t: U: u:",
		"askpass background preserve-env:: edit set-home help host: login remove-timestamp reset-timestamp list non-interactive preserve-groups prompt: chroot: chdir: role: stdin shell type: command-timeout: other-user: user: group: close-from: version validate",
		0, "s", "i", "shell", "login").inRoot("R", "chroot"),
	"doas":    spec("n s L a: u: C:", "", 0, "s"),
	"nice":    spec("n:", "adjustment: help version", 0),
	"nohup":   spec("", "help version", 0),
	"timeout": spec("v k: s:", "foreground preserve-status verbose kill-after: signal: help version", 1),
	"xargs": spec("0 o p r t x a: E: I: L: n: P: s: d: e:: i:: l::",
		"null arg-file: delimiter: eof:: replace:: max-lines:: max-args: max-procs: max-chars: interactive no-run-if-empty open-tty verbose exit show-limits process-slot-var: help version",
		0),
	"stdbuf":    spec("i: o: e:", "input: output: error: help version", 0),
	"ionice":    spec("t c: n: p: P: u:", "ignore class: classdata: pid: pgid: uid: help version", 0),
	"chrt":      spec("a b d e f i m o p r R v T: P: D:", "all-tasks batch deadline ext fifo idle max other pid rr reset-on-fork verbose sched-runtime: sched-period: sched-deadline: help version", 1),
	"command":   spec("p v V", "", 0),
	"builtin":   spec("", "", 0),
	"exec":      spec("c l a:", "", 0),
	"time":      spec("a p q v V f: o:", "append portability quiet verbose version format: output: help", 0),
	"setsid":    spec("c f w", "ctty fork wait help version", 0),
	"busybox":   spec("", "", 0),
	"toybox":    spec("", "", 0),
	"taskset":   spec("a p c", "all-tasks pid cpu-list help version", 1),
	"flock":     spec("s e x u n o F E: w: c:", "shared exclusive unlock nonblock close no-fork verbose timeout: conflict-exit-code: command: help version", 1, "c", "command"),
	"chroot":    spec("", "userspec: groups: skip-chdir help version", 1).withShell().inRoot(""),
	"noglob":    spec("", "", 0),
	"nocorrect": spec("", "", 0),
	// bash's jobs -x runs its command, each %job argument replaced by
	// a process group ID: listed, and compound as it rewrites words.
	"jobs": spec("l n p r s x", "", 0, "x"),
	// coreutils' runcon takes a CONTEXT first unless -c, -u, -r, -t or
	// -l give its parts.
	"runcon": spec("c u: r: t: l:", "compute user: role: type: range: help version", 1).
		positionalUnless("c", "u", "r", "t", "l", "compute", "user", "role", "type", "range"),
	// runit's chpst and daemontools' softlimit and setlock read their
	// options with djb's getopt (no long ones, -- ends them). chpst -e
	// sets variables from files, as an assignment does; -/ changes the
	// root.
	"chpst":     spec("u: U: b: e: /: C: n: l: L: m: d: o: p: f: c: r: t: v P 0 1 2 V", "", 0, "e").inRoot("/"),
	"softlimit": spec("a: c: d: f: l: m: o: p: r: s: t:", "", 0),
	"setlock":   spec("n N x X", "", 1),
	"tini":      spec("h s v w g l p: e:", "version", 0),
	"dumb-init": spec("h v V c r:", "help single-child rewrite: verbose version", 0),
	// nocache's script reads its options with bash's getopts (nocache
	// -n 2 -f CMD); older ones read a leading -n N, or none.
	"nocache": spec("n: D: f", "", 0),
	// systemd-nspawn has too many options to follow every version's:
	// those listed, by their full names only; any other makes the
	// command compound. -E sets the command's environment; -b boots
	// the container's init, the words after the options its arguments.
	"systemd-nspawn": spec("h D: u: a b L: M: j S: Z: q i: x p: n U E: P",
		"directory: template: ephemeral image: read-only volatile:: user: chdir: capability: drop-capability: "+
			"bind: bind-ro: tmpfs: overlay: overlay-ro: inaccessible: setenv: uuid: register: keep-unit "+
			"network-veth private-network network-bridge: network-zone: port: private-users:: link-journal: "+
			"resolv-conf: timezone: machine: hostname: slice: property: boot as-pid2 quiet pipe settings: console: help version",
		0, "E", "setenv", "b", "boot").exact().withShell().inRoot("*"),
}

// plainWrapper is a wrapper that takes its words by position, not with
// getopt: gosu USER CMD, envdir DIR CMD. A word starting with - there is
// the user or the command, and -- is not special.
type plainWrapper struct {
	// words come before the command.
	words int
	// lead is a first word the wrapper reads when it is exactly this
	// (eatmydata --), leadWords long. Another first word
	// starting with - may be an option the wrapper reads: the command
	// is then guessed.
	lead      string
	leadWords int
	// compound: the wrapper sets variables from files (envdir), as an
	// assignment does.
	compound bool
}

var plainWrappers = map[string]plainWrapper{
	"gosu":      {words: 1},
	"su-exec":   {words: 1},
	"setuidgid": {words: 1}, // daemontools, and runit's chpst by that name
	"envuidgid": {words: 1},
	"envdir":    {words: 1, compound: true},
	"pgrphack":  {},
	"fghack":    {},
	"eatmydata": {lead: "--", leadWords: 1},
}

// plainWrapper adds what a plainWrapper runs. The words it reads must be
// literal, as a getopt wrapper's: gosu {root,touch} x runs touch.
func (u *unwrapper) plainWrapper(w plainWrapper, args []string, literal []bool, depth int) error {
	n := 0
	if len(args) > 0 && strings.HasPrefix(args[0], "-") {
		if args[0] != w.lead {
			if w.lead != "" {
				u.compound = true
				return u.guess(args, literal, depth)
			}
		} else {
			n = w.leadWords
		}
	}
	n += w.words
	if w.compound {
		u.compound = true
	}
	if len(args) <= n {
		return nil
	}
	if !allLiteral(literal[:n]) {
		u.compound = true
	}
	return u.unwrap(args[n:], literal[n:], depth+1)
}

// repeat adds what zsh's repeat N CMD runs N times (bash runs a program
// named repeat). zsh evaluates N as arithmetic, which runs the a[$(cmd)]
// of a variable's value, so an N other than digits is compound. The
// loop's body may start on this line after a reserved word: repeat N do
// CMD; done, repeat N { CMD }, repeat N ! CMD; a body of another kind
// (repeat N if ...) is guessed.
func (u *unwrapper) repeat(args []string, literal []bool, depth int) error {
	if len(args) == 0 {
		return nil
	}
	if !literal[0] || args[0] == "" || strings.Trim(args[0], "0123456789") != "" {
		u.compound = true
	}
	rest, restLiteral := args[1:], literal[1:]
	if len(rest) > 0 && zshReserved[rest[0]] {
		u.compound = true
		switch rest[0] {
		case "do", "{", "!":
			rest, restLiteral = rest[1:], restLiteral[1:]
		default:
			return u.guess(rest[1:], restLiteral[1:], depth)
		}
	}
	return u.unwrap(rest, restLiteral, depth+1)
}

// zshReserved are zsh's reserved words that may open a loop's body.
// time, nocorrect, noglob and [[ are followed as the wrappers and
// builtins they are in bash.
var zshReserved = map[string]bool{
	"do": true, "{": true, "!": true, "if": true, "while": true, "until": true, "for": true,
	"foreach": true, "case": true, "select": true, "coproc": true, "function": true,
}

// startStopDaemonSpec is start-stop-daemon's options: dpkg's, with the
// grammar OpenRC's (Alpine, Gentoo) gives the same letters, but for -P
// (dpkg's --procsched VALUE, OpenRC's --progress), left out to be read as
// an option not known. OpenRC's own (-e VAR=VALUE, -3 CMD, ...) are not
// known either.
var startStopDaemonSpec = spec("S K T H V p: x: n: u: g: c: s: a: r: d: N: I: k: b C O: m R: t o q v",
	"start stop status help version pid: ppid: pidfile: exec: name: user: group: chuid: signal: startas: "+
		"chroot: chdir: nicelevel: procsched: iosched: umask: background notify-await notify-timeout: "+
		"no-close output: make-pidfile remove-pidfile retry: test oknodo quiet verbose", 0).exact()

// startStopDaemon adds what start-stop-daemon starts, as dpkg's or
// OpenRC's would: --startas's program, --exec's (OpenRC prefers it to
// --startas: both are followed), or, with neither, OpenRC's first word
// that is not an option, else its --name; with as arguments the words
// that are not options, wherever they are (getopt_long permutes them),
// then those after --. OpenRC starts without --start, unless --stop or
// --signal is given; with --stop or --status the programs named are only
// looked for. dpkg's runs a --startas or --exec without a slash from
// --chdir (default /), not from PATH, so its path is written so. --chroot
// makes the command compound, as chroot's DIR does; so does an option not
// known, its command then guessed.
func (u *unwrapper) startStopDaemon(args []string, literal []bool, depth int) error {
	s := startStopDaemonSpec
	start, stop := false, false
	// where in args option values are (or the words that hold them
	// attached: -x/bin/ls)
	startas, execAt, nameAt, chdirAt := -1, -1, -1, -1
	var operands []int
	unknown := func() error {
		u.compound = true
		return u.guess(args, literal, depth)
	}
	// read notes option name, whose value is the word at index at.
	read := func(name string, at int) {
		if !literal[at] {
			u.compound = true // a word the shell changes may be other options
		}
		switch name {
		case "S", "start":
			start = true
		case "K", "stop", "T", "status", "s", "signal":
			stop = true
		case "a", "startas":
			startas = at
		case "x", "exec":
			execAt = at
		case "n", "name":
			nameAt = at
		case "d", "chdir":
			chdirAt = at
		case "r", "chroot":
			u.compound = true
		}
	}
	values := map[int]string{} // attached values: -x/bin/ls, --exec=/bin/ls
	value := func(at int) string {
		if v, ok := values[at]; ok {
			return v
		}
		return args[at]
	}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			operands = append(operands, i)
			continue
		}
		if strings.HasPrefix(a, "--") {
			name, value, hasValue := strings.Cut(a[2:], "=")
			full, kind, ok := s.longOption(name)
			if !ok || (kind == noValue && hasValue) {
				return unknown()
			}
			read(full, i)
			if kind == valueRequired && !hasValue {
				if i+1 >= len(args) {
					return unknown()
				}
				i++
				read(full, i)
			} else {
				values[i] = value
			}
			continue
		}
		for j := 1; j < len(a); j++ {
			kind, ok := s.short[a[j]]
			if !ok {
				return unknown()
			}
			opt := a[j : j+1]
			read(opt, i)
			if kind == noValue {
				continue
			}
			if j+1 < len(a) {
				values[i] = a[j+1:]
			} else {
				if i+1 >= len(args) {
					return unknown()
				}
				i++
				read(opt, i)
			}
			break
		}
	}
	if stop && !start {
		return nil
	}
	var cmdArgs []string
	var cmdLiteral []bool
	for _, o := range operands {
		cmdArgs, cmdLiteral = append(cmdArgs, args[o]), append(cmdLiteral, literal[o])
	}
	cmdArgs, cmdLiteral = append(cmdArgs, args[i:]...), append(cmdLiteral, literal[i:]...)
	if startas < 0 && execAt < 0 {
		// OpenRC: the first word that is not an option, else --name,
		// found in PATH.
		if len(cmdArgs) == 0 && nameAt >= 0 {
			cmdArgs, cmdLiteral = []string{value(nameAt)}, []bool{literal[nameAt]}
		}
		return u.unwrap(cmdArgs, cmdLiteral, depth+1)
	}
	dir := "/"
	if chdirAt >= 0 {
		dir = strings.TrimSuffix(value(chdirAt), "/") + "/"
	}
	for _, at := range []int{startas, execAt} {
		if at < 0 {
			continue
		}
		word := value(at)
		if !strings.Contains(word, "/") {
			word = dir + word
		}
		cmd := append([]string{word}, cmdArgs...)
		if err := u.unwrap(cmd, append([]bool{literal[at]}, cmdLiteral...), depth+1); err != nil {
			return err
		}
	}
	return nil
}

// opaqueWrappers run a command given in their arguments after options
// this file does not read: always compound, their command guessed.
var opaqueWrappers = map[string]bool{
	"strace": true, "ltrace": true, "valgrind": true, "gdb": true, "perf": true, "nsenter": true,
	"unshare": true, "setpriv": true, "prlimit": true, "systemd-run": true, "script": true,
	"pkexec": true, "capsh": true, "firejail": true, "bwrap": true, "fakeroot": true,
	"faketime": true, "proot": true, "schroot": true, "cgexec": true, "numactl": true,
	"catchsegv": true, "unbuffer": true, "torsocks": true, "proxychains": true,
	"proxychains4": true, "watch": true, "parallel": true, "setarch": true, "linux32": true,
	"linux64": true, "xvfb-run": true, "dbus-launch": true, "sshpass": true,
	"expect": true, "entr": true, "sudoedit": true, "ssh-agent": true, "dbus-run-session": true,
	"cpulimit": true, "trickle": true, "rlwrap": true, "timelimit": true, "daemonize": true,
	"fakechroot": true, "systemd-inhibit": true, "systemd-cat": true, "torify": true, "tsocks": true,
	"sem": true, "chronic": true, "ifne": true, "lckdo": true, "zrun": true, "pee": true, "mispipe": true,
	"s6-setuidgid": true, "s6-envdir": true, "s6-softlimit": true, "s6-applyuidgid": true,
}

// wrapper adds what a wrapper runs. An option it does not know makes the
// command compound, and the command is then guessed. So does a word it
// reads (an option, its value, a positional word such as timeout's
// duration) that is not literal: the shell may make it other words, and
// the command another one (timeout {5,touch} cat runs touch). The command
// word itself is checked by unwrap; the words after it are the command's.
func (u *unwrapper) wrapper(prog string, s wrapperSpec, args []string, literal []bool, depth int) error {
	if prog == "jobs" && !allLiteral(literal) {
		u.compound = true // a jobspec the shell changes may be -x
	}
	if s.root["*"] {
		u.compound = true
	}
	i := 0
	var split []string // env -S's words
	execute := false   // jobs -x
	positional := s.positional
	unknown := func() error {
		u.compound = true
		return u.guess(args, literal, depth)
	}
	for i < len(args) {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if prog == "env" && a == "-" {
			i++ // env - is env -i
			continue
		}
		if prog == "nice" && len(a) > 1 && a[0] == '-' && strings.Trim(a[1:], "-0123456789") == "" {
			i++ // nice -10: the old form of -n 10
			continue
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		i++
		if strings.HasPrefix(a, "--") {
			name, value, hasValue := strings.Cut(a[2:], "=")
			full, kind, ok := s.longOption(name)
			if !ok || (kind == noValue && hasValue) {
				return unknown()
			}
			if kind == valueRequired && !hasValue {
				if i >= len(args) {
					return unknown()
				}
				value, hasValue = args[i], true
				i++
			}
			if s.noPositional[full] {
				positional = 0
			}
			if s.root[full] {
				u.compound = true
			}
			if s.compound[full] {
				u.compound = true
				if full == "split-string" {
					split = append(split, value)
				}
				if full == "setenv" {
					u.assignments = append(u.assignments, value)
				}
				if full == "command" {
					return u.script(value, depth)
				}
			}
			continue
		}
		for j := 1; j < len(a); j++ {
			kind, ok := s.short[a[j]]
			if !ok {
				return unknown()
			}
			opt := a[j : j+1]
			execute = execute || (prog == "jobs" && opt == "x")
			var value string
			if kind != noValue {
				value = a[j+1:]
				if value == "" && kind == valueRequired {
					if i >= len(args) {
						return unknown()
					}
					value = args[i]
					i++
				}
				j = len(a)
			}
			if s.noPositional[opt] {
				positional = 0
			}
			if s.root[opt] {
				u.compound = true
			}
			if s.compound[opt] {
				u.compound = true
				if prog == "env" && opt == "S" {
					split = append(split, value)
				}
				if prog == "systemd-nspawn" && opt == "E" {
					u.assignments = append(u.assignments, value)
				}
				if prog == "flock" && opt == "c" {
					return u.script(value, depth)
				}
			}
		}
	}
	if !allLiteral(literal[:i]) {
		u.compound = true
	}
	if prog == "jobs" && !execute {
		return nil // jobs runs a command only with -x
	}
	rest, restLiteral := args[i:], literal[i:]
	if len(split) > 0 {
		// env -S splits its string into words (with quotes and ${VAR}
		// of its own) that come before the rest. The command is
		// compound already; its words are not the shell's.
		var words []string
		for _, s := range split {
			w, err := sshfacts.Split(s)
			if err != nil {
				return err
			}
			words = append(words, w...)
		}
		rest = append(words, rest...)
		restLiteral = append(make([]bool, len(words)), restLiteral...)
	}
	if prog == "env" {
		for len(rest) > 0 && strings.Contains(rest[0], "=") {
			u.assignments = append(u.assignments, rest[0])
			rest, restLiteral = rest[1:], restLiteral[1:]
		}
	}
	if len(rest) < positional {
		if s.shellWithout {
			u.compound = true // chroot DIR runs the user's shell
		}
		return nil
	}
	if !allLiteral(restLiteral[:positional]) || (positional > 0 && s.root[""] && rest[0] != "/") {
		u.compound = true
	}
	rest, restLiteral = rest[positional:], restLiteral[positional:]
	if prog == "flock" && len(rest) > 1 && (rest[0] == "-c" || rest[0] == "--command") {
		return u.script(rest[1], depth) // flock FILE -c CMD
	}
	if len(rest) == 0 {
		if s.shellWithout {
			u.compound = true
		}
		return nil
	}
	return u.unwrap(rest, restLiteral, depth+1)
}

// longOption finds a long option by its name or an unambiguous prefix of
// it, as getopt_long does.
func (s wrapperSpec) longOption(name string) (string, optionKind, bool) {
	if k, ok := s.long[name]; ok {
		return name, k, true
	}
	if s.exactLong {
		return "", noValue, false
	}
	found, kind, n := "", noValue, 0
	for full, k := range s.long {
		if name != "" && strings.HasPrefix(full, name) {
			found, kind = full, k
			n++
		}
	}
	return found, kind, n == 1
}

// findExec is where the commands of find's -exec, -execdir, -ok and
// -okdir are in args: each as the start and end of its words.
func findExec(args []string) [][2]int {
	var cmds [][2]int
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-exec", "-execdir", "-ok", "-okdir":
			j := i + 1
			for j < len(args) && args[j] != ";" && args[j] != "+" {
				j++
			}
			if j > i+1 {
				cmds = append(cmds, [2]int{i + 1, j})
			}
			i = j
		}
	}
	return cmds
}

// ipExec adds what iproute2's ip netns exec NAME CMD and ip vrf exec
// NAME CMD run. ip takes its objects and commands by any prefix (ip net
// e) and can read commands from a file (-batch): only the plain form is
// read, and any other with a word exec could be a prefix of, or a -batch,
// is compound, its command guessed after that word.
func (u *unwrapper) ipExec(args []string, literal []bool, depth int) error {
	if len(args) >= 3 && (args[0] == "netns" || args[0] == "vrf") && args[1] == "exec" {
		if !allLiteral(literal[:3]) {
			u.compound = true
		}
		return u.unwrap(args[3:], literal[3:], depth+1)
	}
	for i, a := range args {
		if !literal[i] || (len(a) > 1 && strings.HasPrefix("-batch", a)) || (len(a) > 2 && strings.HasPrefix("--batch", a)) {
			u.compound = true
			return u.guess(args, literal, depth)
		}
		if a != "" && strings.HasPrefix("exec", a) {
			u.compound = true
			return u.guess(args[i+1:], literal[i+1:], depth)
		}
	}
	return nil
}

// dynamicLoader reports whether prog is the dynamic loader, which runs
// the program named in its arguments (/lib64/ld-linux-x86-64.so.2
// /bin/rm): ld.so, ld-linux*.so.N, ld-2.31.so, ld64.so.N,
// ld-musl-ARCH.so.N.
func dynamicLoader(prog string) bool {
	return (strings.HasPrefix(prog, "ld-") || strings.HasPrefix(prog, "ld64.") || strings.HasPrefix(prog, "ld.")) &&
		strings.Contains(prog, ".so")
}
