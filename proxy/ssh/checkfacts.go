package ssh

import (
	"path"
)

// The functions of this file give `interlock check` the handler's own
// mapping from what a client sends to the facts policy decides on, so a
// policy test decides as the gateway would.

// ForwardHost is ssh.forward.host as the handler sets it for a forward
// to or from host: one spelling per address (see forwardHost).
func ForwardHost(host string) string { return forwardHost(host) }

// SFTPPaths are ssh.file.path and ssh.file.target as the handler sets
// them for an SFTP operation op (ssh.file.op) on p and p2: cleaned
// lexically, and for a symlink a relative p (the link's target) joined
// to the link's folder. The login directory a relative path starts from
// is known only in a session, so a relative p or p2 is an error
// (errHomeUnknown) other than a symlink's p, and the REALPATH of "."
// with which a client asks for that directory, whose path is ".".
func SFTPPaths(op, p, p2 string) (filePath, fileTarget string, err error) {
	if op == "realpath" && (p == "." || p == "") {
		return ".", "", nil // as isHomeQuery
	}
	var s sftpRelay // no login directory
	fileTarget, err = s.resolve(p2)
	if err != nil {
		return "", "", err
	}
	if op == "symlink" && p != "" && !path.IsAbs(p) {
		return path.Join(path.Dir(fileTarget), p), fileTarget, nil
	}
	filePath, err = s.resolve(p)
	if err != nil {
		return "", "", err
	}
	return filePath, fileTarget, nil
}

// HoldsForReview reports whether the handler can hold a request of this
// kind (ssh.request) for review: exec, shell and subsystem. It denies
// any other request a review rule matches (see conn.decide and
// sftpRelay.decide).
func HoldsForReview(request string) bool {
	switch request {
	case "exec", "shell", "subsystem":
		return true
	}
	return false
}
