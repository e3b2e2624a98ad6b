package sshtest

import (
	"fmt"
	"strings"
)

// harnessKeywords are sshd_config keywords ExtraConfig may not set: the
// harness's files and address depend on them.
var harnessKeywords = map[string]bool{
	"listenaddress": true,
	"port":          true,
	"hostkey":       true,
	"pidfile":       true,
}

// optionalKeywords are set when this sshd knows them and left out when
// `sshd -t` rejects them, so one harness runs on old and new OpenSSH.
// PerSourcePenalties (9.8) would otherwise block 127.0.0.1 after a burst
// of connections that end before login, which is what gateway tests make.
var optionalKeywords = map[string]bool{
	"persourcepenalties": true,
}

// keyword is the lowercased keyword of an sshd_config line ("" for a blank
// line or a comment); sshd accepts "Keyword value" and "Keyword=value".
func keyword(line string) string {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return ""
	}
	end := strings.IndexAny(line, " \t=")
	if end < 0 {
		end = len(line)
	}
	return strings.ToLower(line[:end])
}

// overridden are the keywords ExtraConfig sets for the whole server, that
// is before its first Match line.
func overridden(extra []string) (map[string]bool, error) {
	set := map[string]bool{}
	for _, line := range extra {
		if strings.ContainsAny(line, "\r\n") {
			return nil, fmt.Errorf("ExtraConfig line %q spans lines", line)
		}
		k := keyword(line)
		if k == "match" {
			break
		}
		if harnessKeywords[k] {
			return nil, fmt.Errorf("ExtraConfig may not set %s: the harness owns it", strings.Fields(line)[0])
		}
		if k != "" {
			set[k] = true
		}
	}
	return set, nil
}

// configFiles are the paths an sshd_config names.
type configFiles struct {
	hostKey, authorizedKeys, pidFile string
	// home is the sessions' HOME: an empty folder, so that the login
	// user's shell start-up files (~/.bashrc, which bash reads for
	// commands run by sshd) do not run in tests. A host's .bashrc may do
	// slow or lock-taking things (pyenv's rehash holds a lock file that a
	// killed session leaves behind, stalling every later session).
	home string
}

// sshdConfig is the configuration for a server on addr: the harness's
// lines minus those ExtraConfig overrides or this sshd lacks (without), then
// ExtraConfig. o must have passed Options.fill.
func sshdConfig(o Options, addr string, files configFiles, root bool, without map[string]bool) string {
	yesNo := func(no bool) string {
		if no {
			return "no"
		}
		return "yes"
	}
	rootLogin := "no"
	if root {
		rootLogin = "prohibit-password"
	}
	lines := []string{
		"ListenAddress " + addr,
		"HostKey " + files.hostKey,
		"PidFile " + files.pidFile,
		"AuthorizedKeysFile " + files.authorizedKeys,
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"HostbasedAuthentication no",
		// PAM's session modules (pam_loginuid) fail in containers; the
		// harness needs only key logins.
		"UsePAM no",
		"PermitRootLogin " + rootLogin,
		// AuthorizedKeysFile is one file for every account: only User may
		// use it, so that a test sees which account a login really got.
		"AllowUsers " + o.User,
		// The files live in a temporary folder, not a home with tight
		// modes.
		"StrictModes no",
		"PermitUserEnvironment no",
		"AcceptEnv LANG LC_* INTERLOCK_TEST_*",
		"SetEnv HOME=" + files.home,
		"AllowTcpForwarding " + yesNo(o.NoTCPForwarding),
		"AllowStreamLocalForwarding " + yesNo(o.NoTCPForwarding),
		"AllowAgentForwarding " + yesNo(o.NoAgentForwarding),
		"X11Forwarding " + yesNo(o.NoX11Forwarding),
		// In-process sftp needs no sftp-server binary (Debian's is
		// /usr/lib/openssh/sftp-server; ExtraConfig can name it instead).
		"Subsystem sftp internal-sftp",
		"LogLevel VERBOSE",
		"MaxStartups 100",
		"MaxSessions 100",
		"PrintMotd no",
		"PrintLastLog no",
		"UseDNS no",
		"PerSourcePenalties no",
	}
	set, _ := overridden(o.ExtraConfig) // fill has checked it
	var b strings.Builder
	b.WriteString("# sshd_config written by interlock's sshtest\n")
	for _, line := range lines {
		k := keyword(line)
		if set[k] || without[k] {
			continue
		}
		b.WriteString(line + "\n")
	}
	for _, line := range o.ExtraConfig {
		b.WriteString(line + "\n")
	}
	return b.String()
}
