package sshtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// ErrUnavailable is returned by [Launch] when this machine cannot run a
// server at all (not root, no sshd, a locked account), as opposed to a
// server that failed to start. [Start] skips the test on it.
var ErrUnavailable = errors.New("cannot start sshd")

// errPortTaken is an sshd that could not bind its port: someone took the
// free port between the probe and sshd.
var errPortTaken = errors.New("port taken")

// privsepDir is where sshd's unprivileged children chroot. The package
// that installs sshd makes it at boot; a container may not have it.
const privsepDir = "/run/sshd"

// readyTimeout bounds the wait for sshd's banner.
const readyTimeout = 10 * time.Second

// fill validates o and fills its defaults.
func (o *Options) fill() error {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if ip := net.ParseIP(o.Host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("host %q is not a loopback IP address", o.Host)
	}
	if o.Port < 0 || o.Port > 65535 {
		return fmt.Errorf("port %d is out of range", o.Port)
	}
	if o.User == "" {
		u, err := user.Current()
		if err != nil {
			return fmt.Errorf("finding the current user: %w", err)
		}
		o.User = u.Username
	}
	if _, err := overridden(o.ExtraConfig); err != nil {
		return err
	}
	return nil
}

// Launch starts a server outside a test (a demo, a benchmark program). The
// caller owns it and must [Server.Close] it; on error nothing is left
// behind.
func Launch(o Options) (*Server, error) {
	if err := o.fill(); err != nil {
		return nil, fmt.Errorf("sshtest options: %w", err)
	}
	u, err := user.Lookup(o.User)
	if err != nil {
		return nil, fmt.Errorf("looking up user %q: %w", o.User, err)
	}
	if err := available(u.Username); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err := makePrivsepDir(); err != nil {
		return nil, err
	}

	// Not t.TempDir: its parents are 0700, and a login user other than
	// root reads authorized_keys as itself.
	dir, err := os.MkdirTemp("", "sshtest-")
	if err != nil {
		return nil, fmt.Errorf("making the server folder: %w", err)
	}
	s := &Server{
		Host:               o.Host,
		User:               u.Username,
		Dir:                dir,
		HostKeyFile:        filepath.Join(dir, "ssh_host_ed25519_key"),
		KnownHostsFile:     filepath.Join(dir, "known_hosts"),
		ClientKeyFile:      filepath.Join(dir, "id_ed25519"),
		AuthorizedKeysFile: filepath.Join(dir, "authorized_keys"),
		ConfigFile:         filepath.Join(dir, "sshd_config"),
		LogFile:            filepath.Join(dir, "sshd.log"),
	}
	if err := s.launch(o, u.Uid == "0"); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// available says why this machine cannot run sshd for user, or nil.
func available(login string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("sshd needs root to switch to the login user and to separate privileges; run as root (CI sets %s=1)", redirecttest.RequiredEnv)
	}
	if _, err := os.Stat(SSHDPath); err != nil {
		return fmt.Errorf("no %s (install openssh-server)", SSHDPath)
	}
	locked, err := accountLocked("/etc/shadow", login)
	if err != nil {
		return err
	}
	if locked {
		return fmt.Errorf("account %s is locked (its /etc/shadow password starts with \"!\") and sshd without PAM refuses it; allow key logins with: usermod -p '*' %s", login, login)
	}
	return nil
}

// accountLocked says whether login's password field in the shadow file
// starts with "!", which sshd without PAM reads as a locked account. No
// shadow file, or no line for login, is not locked.
func accountLocked(shadow, login string) (bool, error) {
	f, err := os.Open(shadow)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", shadow, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, _ := strings.Cut(sc.Text(), ":")
		if name == login {
			return strings.HasPrefix(rest, "!"), nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("reading %s: %w", shadow, err)
	}
	return false, nil
}

// makePrivsepDir creates /run/sshd when missing. It is a system folder
// other sshds use too: it is never removed.
func makePrivsepDir() error {
	if err := os.Mkdir(privsepDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("creating %s: %w", privsepDir, err)
	}
	return nil
}

func (s *Server) launch(o Options, root bool) error {
	// A login user other than root opens authorized_keys as itself.
	if err := os.Chmod(s.Dir, 0o711); err != nil {
		return err
	}
	host, err := writeKeyPair(s.HostKeyFile, "interlock sshtest host key")
	if err != nil {
		return err
	}
	s.HostKey = host.PublicKey()
	if s.ClientSigner, err = writeKeyPair(s.ClientKeyFile, s.User+"@interlock-sshtest"); err != nil {
		return err
	}
	authorized := ssh.MarshalAuthorizedKey(s.ClientSigner.PublicKey())
	if err := os.WriteFile(s.AuthorizedKeysFile, authorized, 0o644); err != nil {
		return err
	}

	without := map[string]bool{}
	// A free port can be taken between the probe and sshd binding it; try
	// a few times.
	for attempt := 0; ; attempt++ {
		port := o.Port
		if port == 0 {
			if port, err = redirecttest.FreePort(o.Host); err != nil {
				return err
			}
		}
		s.Port = port
		if err := os.WriteFile(s.KnownHostsFile, []byte(knownHostsLine(s.Addr(), s.HostKey)), 0o644); err != nil {
			return err
		}
		if err := s.writeConfig(o, root, without); err != nil {
			return err
		}
		err := s.start()
		if err == nil {
			return nil
		}
		if o.Port != 0 || attempt == 4 || !errors.Is(err, errPortTaken) {
			return err
		}
	}
}

// writeConfig writes sshd_config and has `sshd -t` check it, leaving out
// the optional keywords this sshd does not know (recorded in without).
func (s *Server) writeConfig(o Options, root bool, without map[string]bool) error {
	files := configFiles{
		hostKey:        s.HostKeyFile,
		authorizedKeys: s.AuthorizedKeysFile,
		pidFile:        filepath.Join(s.Dir, "sshd.pid"),
		home:           filepath.Join(s.Dir, "home"),
	}
	if err := os.MkdirAll(files.home, 0o755); err != nil {
		return fmt.Errorf("creating the sessions' HOME: %w", err)
	}
	for {
		cfg := sshdConfig(o, s.Addr(), files, root, without)
		if err := os.WriteFile(s.ConfigFile, []byte(cfg), 0o644); err != nil {
			return err
		}
		out, err := exec.Command(SSHDPath, "-t", "-f", s.ConfigFile).CombinedOutput()
		if err == nil {
			return nil
		}
		dropped := false
		for k := range optionalKeywords {
			if !without[k] && strings.Contains(strings.ToLower(string(out)), k) {
				without[k] = true
				dropped = true
			}
		}
		if !dropped {
			return fmt.Errorf("checking %s with sshd -t: %w\n%s\n\n%s", s.ConfigFile, err, bytes.TrimSpace(out), cfg)
		}
	}
}

// start runs sshd and waits for its banner.
func (s *Server) start() error {
	// -D: stay in the foreground, our child; -e: log to stderr, the log
	// file, including every connection's process.
	cmd := exec.Command(SSHDPath, "-D", "-e", "-f", s.ConfigFile)
	cmd.Dir = s.Dir
	cmd.SysProcAttr = sysProcAttr()
	d, err := redirecttest.StartDaemon("sshd", cmd, s.LogFile)
	if err != nil {
		return err
	}
	s.daemon = d
	err = d.WaitReady(readyTimeout, 20*time.Millisecond, func() error {
		banner, err := readBanner(s.Addr())
		if err == nil && !strings.HasPrefix(banner, "SSH-2.0-") {
			err = fmt.Errorf("unexpected banner %q", banner)
		}
		return err
	})
	if errors.Is(err, redirecttest.ErrExited) && redirecttest.PortTaken(d.LogSinceStart()) {
		return fmt.Errorf("sshd could not listen on %s: %w\n%s", s.Addr(), errPortTaken, d.LogSinceStart())
	}
	if err != nil {
		return fmt.Errorf("sshd on %s: %w", s.Addr(), err)
	}
	return nil
}

// readBanner reads sshd's first line.
func readBanner(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(io.LimitReader(c, 256)).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading the banner: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// Close stops the sshd this server started, and every process it forked
// for a connection, then removes Dir. Calling it again returns the first
// result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.stop()
		if err := os.RemoveAll(s.Dir); err != nil {
			s.closeErr = fmt.Errorf("removing %s: %w", s.Dir, err)
		}
	})
	return s.closeErr
}

// stop kills sshd. Its per-connection processes call setsid, so they are
// neither in its process group nor stopped with it: they are found as its
// descendants while it and they are frozen (SIGSTOP, so nothing forks
// past the search), then killed by pid.
func (s *Server) stop() {
	if s.daemon == nil {
		return
	}
	select {
	case <-s.daemon.Done():
		return
	default:
	}
	pid := s.daemon.Pid()
	frozen := []int{pid}
	seen := map[int]bool{pid: true}
	syscall.Kill(pid, syscall.SIGSTOP)
	// A process stopped in the middle of fork shows its child only
	// after: search until a pass finds nothing new.
	for quiet := 0; quiet < 2; {
		quiet++
		for _, d := range descendants(pid) {
			if !seen[d] {
				seen[d] = true
				frozen = append(frozen, d)
				syscall.Kill(d, syscall.SIGSTOP)
				quiet = 0
			}
		}
		if quiet == 1 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	for _, p := range frozen[1:] {
		syscall.Kill(p, syscall.SIGKILL)
	}
	// The negative pid is the process group Setpgid made: sshd alone,
	// as its connection processes left it.
	syscall.Kill(-pid, syscall.SIGKILL)
	<-s.daemon.Done()
	// SIGKILL is delivered at once but a process takes a moment to exit;
	// Close returns when they have.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if !slices.ContainsFunc(frozen[1:], running) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
