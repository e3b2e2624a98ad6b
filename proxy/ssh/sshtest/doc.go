// Package sshtest starts a real OpenSSH server for a test: Debian's
// openssh-server (/usr/sbin/sshd) on a loopback address, with a host key,
// a client key, authorized_keys, known_hosts and an sshd_config made for it
// in a temporary folder, stopped and removed when the test ends.
//
// interlock's SSH gateway is tested against this server with the real
// OpenSSH clients (ssh, scp, sftp from openssh-client) and with
// golang.org/x/crypto/ssh: [Server.SSHArgs], [Server.SCPArgs] and
// [Server.SFTPArgs] give client arguments isolated from the user's own
// ~/.ssh, and [Server.ClientConfig] a pinned x/crypto configuration.
//
// What it needs: root (sshd switches to the login user and uses privilege
// separation in /run/sshd, which it creates when missing and never
// removes), /usr/sbin/sshd, and a login account that is not locked (sshd
// runs with UsePAM no, and then refuses an account whose password field
// starts with "!"). By default the server permits TCP, agent and X11
// forwarding, so that a test can show it is the gateway that refuses them.
//
// Error contract: [Launch] returns an error wrapping [ErrUnavailable] when
// this machine cannot run a server at all (not root, no sshd, a locked
// account), and a plain error when a server could not be made or did not
// start (bad options, bad ExtraConfig, sshd exiting; the error carries the
// tail of sshd's log). [Start] skips the test on the first kind, or fails
// it when INTERLOCK_REQUIRE_PRIVILEGED=1 ([redirecttest.RequiredEnv]) says
// the environment must run it (CI), and fails it on the second.
// [Server.Close] stops only the sshd it started, with the per-connection
// processes that sshd forked, and removes the folder; it is safe to call
// twice.
package sshtest
