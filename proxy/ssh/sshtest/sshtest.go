package sshtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
	"golang.org/x/crypto/ssh"
)

// SSHDPath is the server binary. sshd re-executes itself for every
// connection and so must be started by an absolute path.
const SSHDPath = "/usr/sbin/sshd"

// Options say how to start a server; the zero value is a server on
// 127.0.0.1 at a free port, for the current user, permitting forwarding.
type Options struct {
	// Host is the loopback address to listen on; default 127.0.0.1.
	Host string
	// Port 0 picks a free port.
	Port int
	// User is the OS account clients log in as; default the current
	// user. Root may log in with keys only (PermitRootLogin
	// prohibit-password).
	User string
	// ExtraConfig are sshd_config lines. A keyword set here (before any
	// Match line) replaces the harness's own line for it, since sshd keeps
	// the first value it reads; Match blocks go last. ListenAddress, Port,
	// HostKey and PidFile belong to the harness and are refused.
	ExtraConfig []string
	// NoTCPForwarding, NoAgentForwarding and NoX11Forwarding turn off what
	// the server permits by default: gateway tests need a server that
	// would forward, to show that the gateway is what refuses.
	NoTCPForwarding   bool
	NoAgentForwarding bool
	NoX11Forwarding   bool
}

// Server is a running sshd.
type Server struct {
	Host string
	Port int
	// User is the account the client key logs in as.
	User string
	// Dir is the server's temporary folder: keys, configuration, log.
	Dir string

	// HostKey is the server's public host key; HostKeyFile its private
	// key (OpenSSH format).
	HostKey     ssh.PublicKey
	HostKeyFile string
	// KnownHostsFile pins HostKey for Addr, for ssh's UserKnownHostsFile.
	KnownHostsFile string
	// ClientKeyFile is the private key authorized for User, usable by
	// ssh -i; ClientSigner is the same key for golang.org/x/crypto/ssh.
	ClientKeyFile string
	ClientSigner  ssh.Signer
	// AuthorizedKeysFile is the server's AuthorizedKeysFile; sshd reads it
	// at every login, so keys added with AuthorizeKey work at once.
	AuthorizedKeysFile string
	// ConfigFile is the sshd_config; LogFile is sshd's stderr (LogLevel
	// VERBOSE), of the server and of every connection.
	ConfigFile string
	LogFile    string

	daemon *redirecttest.Daemon // nil until sshd started

	mu        sync.Mutex // serializes AuthorizeKey
	closeOnce sync.Once
	closeErr  error
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Pid is the process id of the sshd this server started (the listener, not
// the per-connection processes it forks); 0 before it started.
func (s *Server) Pid() int {
	if s.daemon == nil {
		return 0
	}
	return s.daemon.Pid()
}

// LogTail is the end of sshd's log, for a test failure message.
func (s *Server) LogTail() string { return redirecttest.LogTail(s.LogFile) }

// ClientConfig is a golang.org/x/crypto/ssh configuration that logs in as
// User with the client key and accepts only this server's host key.
func (s *Server) ClientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:              s.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(s.ClientSigner)},
		HostKeyCallback:   ssh.FixedHostKey(s.HostKey),
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           10 * time.Second,
	}
}

// Dial connects to the server with ClientConfig.
func (s *Server) Dial() (*ssh.Client, error) {
	c, err := ssh.Dial("tcp", s.Addr(), s.ClientConfig())
	if err != nil {
		return nil, fmt.Errorf("dialing sshd at %s: %w", s.Addr(), err)
	}
	return c, nil
}

// AuthorizeKey lets pub log in as User too, e.g. the key a gateway holds.
func (s *Server) AuthorizeKey(pub ssh.PublicKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(s.AuthorizedKeysFile, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("authorizing key: %w", err)
	}
	_, err = f.Write(ssh.MarshalAuthorizedKey(pub))
	return errors.Join(err, f.Close())
}

// SSHOptions are the OpenSSH client options shared by ssh, scp and sftp for
// an isolated, non-interactive run against this server: no ssh_config, only
// the client key, only KnownHostsFile, never a prompt. They carry no port
// and no destination. ssh keeps the first value it is given for an option,
// so "-o Name=value" placed before these overrides them (for example
// another UserKnownHostsFile when a gateway answers with its own host key).
func (s *Server) SSHOptions() []string {
	return []string{
		"-F", "/dev/null",
		"-i", s.ClientKeyFile,
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + s.KnownHostsFile,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UpdateHostKeys=no",
		"-o", "BatchMode=yes",
		"-o", "ControlPath=none",
		"-o", "ConnectTimeout=10",
		"-o", "LogLevel=ERROR",
	}
}

// SSHArgs are the arguments for ssh to run command (none: a shell) on the
// server as User: SSHOptions, -p port, user@host, command. Further ssh
// options can be put before them.
func (s *Server) SSHArgs(command ...string) []string {
	args := append(s.SSHOptions(), "-p", strconv.Itoa(s.Port), s.User+"@"+s.Host)
	return append(args, command...)
}

// SCPArgs are the arguments for scp: SSHOptions, -P port, then args (scp
// options, then sources and target; name the server's files with Remote).
func (s *Server) SCPArgs(args ...string) []string {
	return append(append(s.SSHOptions(), "-P", strconv.Itoa(s.Port)), args...)
}

// Remote is path on the server as scp names it: user@host:path.
func (s *Server) Remote(path string) string {
	return s.User + "@" + s.bracketedHost() + ":" + path
}

// SFTPArgs are the arguments for sftp: SSHOptions, -P port, options (for
// example "-b", batchFile), user@host.
func (s *Server) SFTPArgs(options ...string) []string {
	args := append(append(s.SSHOptions(), "-P", strconv.Itoa(s.Port)), options...)
	return append(args, s.User+"@"+s.bracketedHost())
}

// bracketedHost is Host as scp and sftp parse it: an IPv6 address in
// brackets, so that its colons are not read as the path separator.
func (s *Server) bracketedHost() string {
	if strings.Contains(s.Host, ":") {
		return "[" + s.Host + "]"
	}
	return s.Host
}

// Start starts a server for tb and stops it, removing its files, when tb
// ends.
func Start(tb testing.TB, o Options) *Server {
	tb.Helper()
	return redirecttest.Launched(tb, "sshtest", ErrUnavailable, func() (*Server, error) { return Launch(o) })
}

// ClientBinary is the path of an OpenSSH client program ("ssh", "scp",
// "sftp"); the test is skipped (or failed, see Start) when it is missing.
func ClientBinary(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		redirecttest.Unavailable(tb, "no "+name+" client", "install openssh-client")
	}
	return p
}
