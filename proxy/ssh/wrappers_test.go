package ssh

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExecFactsWrappers: a program run through a wrapper is listed, the
// wrapper's options and their values are not, and an option the wrapper
// table does not know makes the command compound, its command guessed.
func TestExecFactsWrappers(t *testing.T) {
	tests := []struct {
		command  string
		programs string
		compound bool
	}{
		// gosu, su-exec, setuidgid, envuidgid: a user, then the command;
		// they read no options, so -- and -x are a user or a command.
		{"gosu root rm -rf /", "gosu,rm", false},
		{"gosu nobody:nogroup /bin/rm x", "gosu,rm", false},
		{"gosu -- rm x", "gosu,rm", false},
		{"gosu root", "gosu", false},
		{"gosu {root,touch} x", "gosu,x", true},
		{"gosu root bash -c 'rm x'", "gosu,bash,rm", true},
		{"su-exec root rm x", "su-exec,rm", false},
		{"su-exec 1000:1000 -- x", "su-exec,--", false},
		{"setuidgid daemon rm x", "setuidgid,rm", false},
		{"envuidgid daemon rm x", "envuidgid,rm", false},
		{"pgrphack rm x", "pgrphack,rm", false},
		// envdir sets variables from files: any of them (LD_PRELOAD).
		{"envdir ./env rm x", "envdir,rm", true},
		// eatmydata [--] CMD; another leading option is one it may
		// read, so the command is guessed.
		{"eatmydata rm x", "eatmydata,rm", false},
		{"eatmydata -- rm x", "eatmydata,rm", false},
		{"eatmydata -q rm x", "eatmydata,rm,x", true},
		// nocache reads -n N, -D FILE and -f with bash's getopts: rm
		// runs after any of them, not a program named -f.
		{"nocache rm x", "nocache,rm", false},
		{"nocache -n 2 rm x", "nocache,rm", false},
		{"nocache -n2 rm x", "nocache,rm", false},
		{"nocache -n 2 -f rm x", "nocache,rm", false},
		{"nocache -fn2 -D /tmp/log -- rm x", "nocache,rm", false},
		{"nocache -q rm x", "nocache,rm,x", true},

		// runcon: CONTEXT unless -c, -u, -r, -t or -l give its parts.
		{"runcon system_u:system_r:unconfined_t:s0 rm x", "runcon,rm", false},
		{"runcon -t unconfined_t rm x", "runcon,rm", false},
		{"runcon --type=unconfined_t rm x", "runcon,rm", false},
		{"runcon --type unconfined_t rm x", "runcon,rm", false},
		{"runcon -c rm x", "runcon,rm", false},
		{"runcon -u user_u -r user_r rm x", "runcon,rm", false},
		{"runcon -tunconfined_t rm x", "runcon,rm", false},
		{"runcon -- ctx rm x", "runcon,rm", false},
		{"runcon -z ctx rm x", "runcon,ctx,rm,x", true},
		{"runcon {ctx,touch} x", "runcon,x", true},

		// chpst (runit), softlimit and setlock (daemontools).
		{"chpst -u nobody rm x", "chpst,rm", false},
		{"chpst -unobody -n -5 -m 1000 rm x", "chpst,rm", false},
		// chpst -/ DIR runs DIR's rm.
		{"chpst -unobody -n -5 -m 1000 -/ /srv rm x", "chpst,rm", true},
		{"chpst -vP012 rm x", "chpst,rm", false},
		{"chpst -e ./env rm x", "chpst,rm", true},
		{"chpst -q rm x", "chpst,rm,x", true},
		{"softlimit -m 1000000 -t 10 rm x", "softlimit,rm", false},
		{"setlock -nx /tmp/lock rm x", "setlock,rm", false},
		{"setlock /tmp/lock", "setlock", false},

		// tini and dumb-init.
		{"tini -- rm x", "tini,rm", false},
		{"tini -s -p SIGTERM -e 143 rm x", "tini,rm", false},
		{"tini -k rm x", "tini,rm,x", true},
		{"dumb-init --rewrite 15:2 rm x", "dumb-init,rm", false},
		{"dumb-init -c -r 15:2 -- rm x", "dumb-init,rm", false},
		{"dumb-init --single-child rm x", "dumb-init,rm", false},

		// systemd-nspawn: the listed options, by full name only. It runs
		// the container's rm, a file of its tree: always compound.
		{"systemd-nspawn -D /srv/c rm x", "systemd-nspawn,rm", true},
		{"systemd-nspawn --directory=/srv/c -u root --bind /tmp:/tmp -q rm x", "systemd-nspawn,rm", true},
		{"systemd-nspawn -qxD /srv/c rm x", "systemd-nspawn,rm", true},
		{"systemd-nspawn -D /srv/c --private-users rm x", "systemd-nspawn,rm", true},
		{"systemd-nspawn -D /srv/c --private-users=pick rm x", "systemd-nspawn,rm", true},
		{"systemd-nspawn -D /srv/c --as-pid2 -- rm x", "systemd-nspawn,rm", true},
		{"systemd-nspawn -D /srv/c /usr/bin/ls", "systemd-nspawn,ls", true},
		{"systemd-nspawn -D /srv/c", "systemd-nspawn", true},
		{"systemd-nspawn -D /srv/c -E LD_PRELOAD=/x.so rm x", "systemd-nspawn,rm", true},
		{"systemd-nspawn -b -D /srv/c", "systemd-nspawn", true},
		{"systemd-nspawn --dir /srv/c rm x", "systemd-nspawn,c,rm,x", true},
		{"systemd-nspawn -D /srv/c --network-macvlan eth0 rm x", "systemd-nspawn,c,eth0,rm", true},

		// start-stop-daemon --start runs --startas, else --exec, with the
		// words that are not options and those after --.
		{"start-stop-daemon --start --exec /bin/rm -- -rf x", "start-stop-daemon,rm", false},
		{"start-stop-daemon -S -x /bin/rm", "start-stop-daemon,rm", false},
		{"start-stop-daemon -Sx/bin/rm x", "start-stop-daemon,rm", false},
		{"start-stop-daemon -S --exec=/bin/rm x", "start-stop-daemon,rm", false},
		// OpenRC's runs --exec before --startas: both are listed.
		{"start-stop-daemon -S -x /usr/bin/true -a /bin/rm", "start-stop-daemon,rm,true", false},
		{"start-stop-daemon -S -b -m -p /run/x.pid -c nobody -N 5 -k 022 -d / -x /bin/rm x", "start-stop-daemon,rm", false},
		{"start-stop-daemon --stop --exec /bin/rm", "start-stop-daemon", false},
		{"start-stop-daemon -K -s KILL -x /bin/rm", "start-stop-daemon", false},
		{"start-stop-daemon --start --startas $X", "start-stop-daemon,$X", true},
		{"start-stop-daemon --star -x /bin/rm", "start-stop-daemon,rm", true},
		{"start-stop-daemon -S -Z x -x /bin/rm", "start-stop-daemon,x,rm", true},
		// OpenRC's starts without --start, and runs its first word that
		// is not an option, or else its --name; -P is its --progress,
		// dpkg's --procsched VALUE.
		{"start-stop-daemon -x /bin/rm x", "start-stop-daemon,rm", false},
		{"start-stop-daemon rm x", "start-stop-daemon,rm", false},
		{"start-stop-daemon -S -n rm", "start-stop-daemon,rm", false},
		{"start-stop-daemon -S -P -x /bin/rm", "start-stop-daemon,rm", true},
		{"start-stop-daemon -s HUP -x /bin/rm", "start-stop-daemon", false},
		{"start-stop-daemon -T -x /bin/rm", "start-stop-daemon", false},
		// --chroot runs the tree's /usr/bin/ls.
		{"start-stop-daemon -S -r /srv/c -x /usr/bin/ls", "start-stop-daemon,ls", true},

		// zsh's repeat N CMD, and its body after do, { or !.
		{"repeat 3 rm x", "repeat,rm", false},
		{"repeat 3 do rm x; done", "repeat,rm", true},
		{"repeat 3 { rm x }", "repeat,rm", true},
		{"repeat 3 ! rm x", "repeat,rm", true},
		{"repeat 3 if rm x; then :; fi", "repeat,rm,x,:", true},
		{"repeat TERM rm x", "repeat,rm", true},
		{"repeat $N rm x", "repeat,rm", true},
		{"repeat 3 time rm x", "repeat,time,rm", false},
		{"repeat 3", "repeat", false},

		// ip netns exec and ip vrf exec; other forms with an exec are
		// guessed.
		{"ip netns exec blue rm x", "ip,rm", false},
		{"ip vrf exec red rm x", "ip,rm", false},
		{"ip addr show dev eth0", "ip", false},
		{"ip net e blue rm x", "ip,blue,rm,x", true},
		{"ip -all netns exec rm x", "ip,rm,x", true},
		{"ip -b /tmp/cmds", "ip,cmds", true},
		{"ip netns {exec,x} blue rm x", "ip,netns,{exec,x},blue", true},

		// runuser -u USER runs its command itself.
		{"runuser -u root rm x", "runuser,rm", true},
		{"runuser -u root -- rm x", "runuser,rm", true},
		{"runuser -m --user=root rm x", "runuser,rm", true},
		{"runuser -uroot rm x", "runuser,rm", true},
		{"runuser -g wheel -u root rm x", "runuser,rm", true},
		{"runuser root -c 'rm x'", "runuser,rm", true},
		// getopt_long takes -u after the command too.
		{"runuser rm -u root -- -rf x", "runuser,rm", true},
		{"runuser -g wheel rm -u root x", "runuser,rm", true},
		{"runuser rm --user=root x", "runuser,rm", true},
		{"runuser -u root rm -Z x", "runuser,root,rm,x", true},

		// zsh's precommand modifier -: - CMD runs CMD, also after
		// another one and in repeat's body.
		{" - rm x", "-,rm", false},
		{"repeat 3 - rm x", "repeat,-,rm", false},
		{"noglob - rm x", "noglob,-,rm", false},
		{"exec - - rm x", "exec,-,-,rm", false},
		{"-", "-", false},

		// A wrapper that changes the root runs a file of that tree,
		// whatever the program word says.
		{"chroot /srv/c /usr/bin/ls", "chroot,ls", true},
		{"chroot /srv/c ls", "chroot,ls", true},
		{"chroot / ls", "chroot,ls", false},
		{"sudo -R /srv/c /usr/bin/ls", "sudo,ls", true},
		{"sudo --chroot=/srv/c ls", "sudo,ls", true},

		// Others newly in the tables.
		{"toybox rm x", "toybox,rm", false},
		{"doas -a style rm x", "doas,rm", false},
		{"/lib64/ld-linux-x86-64.so.2 /bin/rm x", "ld-linux-x86-64.so.2,rm,x", true},
		{"ld.so --library-path /tmp rm x", "ld.so,tmp,rm,x", true},
		{"cpulimit -l 50 rm x", "cpulimit,50,rm,x", true},
		{"chronic rm x", "chronic,rm,x", true},
		{"pee 'rm x' cat", "pee,rm x,rm,cat", true},
		{"/lib/x86_64-linux-gnu/ld-2.31.so /bin/rm x", "ld-2.31.so,rm,x", true},
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
	// Paths as the wrapper finds them: dpkg's start-stop-daemon runs a
	// --exec or --startas without a slash from --chdir (default /), not
	// from PATH.
	for command, want := range map[string]string{
		"start-stop-daemon -S -d /tmp/up -x ls":     "start-stop-daemon,/tmp/up/ls",
		"start-stop-daemon -S -x /bin/true -a ls x": "start-stop-daemon,/ls,/bin/true",
		"start-stop-daemon -S --chdir=up/ -xls":     "start-stop-daemon,up/ls",
		"start-stop-daemon rm x":                    "start-stop-daemon,rm",
	} {
		f, err := ExecFacts(command)
		if err != nil {
			t.Errorf("%s: %v", command, err)
			continue
		}
		if got := strings.Join(f.ProgramPaths, ","); got != want {
			t.Errorf("%s: program paths %s, want %s", command, got, want)
		}
	}
	// Variables a wrapper sets are assignments.
	for command, want := range map[string]string{
		"systemd-nspawn -D /srv/c -E LD_PRELOAD=/x.so --setenv=A=1 rm x": "LD_PRELOAD=/x.so,A=1",
		"gosu root env B=2 rm x": "B=2",
	} {
		f, err := ExecFacts(command)
		if err != nil {
			t.Errorf("%s: %v", command, err)
			continue
		}
		if got := strings.Join(f.Assignments, ","); got != want {
			t.Errorf("%s: assignments %s, want %s", command, got, want)
		}
	}
}

// TestExecFactsWrappersRun runs, with the real wrappers this host has,
// commands whose facts name touch, and checks that touch is what ran: the
// tables' reading of the options is the wrapper's own.
func TestExecFactsWrappersRun(t *testing.T) {
	for _, tc := range []struct {
		command string
		wrapper string
		made    string // the files touch makes in DIR
	}{
		// start-stop-daemon works in /, and passes the word that is not
		// an option (getopt_long permutes it) before those after --.
		{"start-stop-daemon --start --quiet --chdir DIR --name interlock-none -a TOUCH a -- b", "start-stop-daemon", "a,b"},
		{"start-stop-daemon -S -q -d DIR -N 1 -k 022 -xTOUCH c", "start-stop-daemon", "c"},
		{"runuser -u root -- TOUCH DIR/a DIR/b DIR/c", "runuser", "a,b,c"},
		{"runuser -u root TOUCH DIR/a DIR/b DIR/c", "runuser", "a,b,c"},
		{"runuser TOUCH DIR/a -u root DIR/b -- DIR/c", "runuser", "a,b,c"},
		{"chroot / TOUCH DIR/a DIR/b DIR/c", "chroot", "a,b,c"},
	} {
		if _, err := exec.LookPath(tc.wrapper); err != nil {
			t.Logf("%s is not installed", tc.wrapper)
			continue
		}
		dir := t.TempDir()
		touch, err := exec.LookPath("touch")
		if err != nil {
			t.Skip("touch is not installed")
		}
		command := strings.NewReplacer("DIR", dir, "TOUCH", touch).Replace(tc.command)
		f, err := ExecFacts(command)
		if err != nil {
			t.Fatalf("%s: %v", command, err)
		}
		if len(f.Programs) != 2 || f.Programs[1] != "touch" {
			t.Errorf("%s: programs %q, want %s and touch", command, f.Programs, tc.wrapper)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, "sh", "-c", command).CombinedOutput()
		cancel()
		if err != nil {
			t.Logf("%s: %v: %s", command, err, out) // runuser needs root
			continue
		}
		var made []string
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			made = append(made, e.Name())
		}
		if got := strings.Join(made, ","); got != tc.made {
			t.Errorf("%s made %q in %s, want %s", command, got, filepath.Base(dir), tc.made)
		}
	}
}
