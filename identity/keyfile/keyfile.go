// Package keyfile reads and writes the gateway's own key and secret files
// (the agent-facing CAs' keys and certificates, SSH host keys, the admin
// tokens): a private key or secret is read only when others cannot access
// it, as OpenSSH refuses an "unprotected private key file", and a new file
// is written whole and on disk, or not at all.
//
// Errors are the os package's, wrapped with what was refused; a missing
// file is reported as fs.ErrNotExist by [ReadPrivate] and [ReadSecret],
// and a file others may access or that belongs to another user wraps
// [ErrInsecure].
package keyfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
)

// ErrPartial: one file of a key pair exists without the other.
var ErrPartial = errors.New("half of a key pair")

// ReadPair reads a private key file (as ReadPrivate does) and the public
// file that goes with it (a certificate or public key). When neither
// exists the error matches fs.ErrNotExist, and the caller may create the
// pair; when only one does, ErrPartial, naming both; any other failure is
// returned wrapped with the path of the file it concerns.
func ReadPair(privPath, pubPath string) (priv, pub []byte, err error) {
	priv, privErr := ReadPrivate(privPath)
	pub, pubErr := os.ReadFile(pubPath)
	privMissing, pubMissing := errors.Is(privErr, fs.ErrNotExist), errors.Is(pubErr, fs.ErrNotExist)
	switch {
	case privMissing && pubMissing:
		return nil, nil, fmt.Errorf("%s and %s: %w", privPath, pubPath, fs.ErrNotExist)
	case privMissing:
		return nil, nil, fmt.Errorf("%w: %s exists but %s is missing; restore it, or remove both to create a new pair", ErrPartial, pubPath, privPath)
	case pubMissing:
		return nil, nil, fmt.Errorf("%w: %s exists but %s is missing; restore it, or remove both to create a new pair", ErrPartial, privPath, pubPath)
	case privErr != nil:
		return nil, nil, fmt.Errorf("%s: %w", privPath, privErr)
	case pubErr != nil:
		return nil, nil, fmt.Errorf("%s: %w", pubPath, pubErr)
	}
	return priv, pub, nil
}

// ErrInsecure: a secret file others can read or write, or that belongs
// to another user.
var ErrInsecure = errors.New("insecure file permissions")

// Rules say what ReadSecret refuses.
type Rules struct {
	What      string      // names the file in errors: "private key", "admin tokens file"
	Forbidden fs.FileMode // permission bits that must be clear
	Chmod     string      // the mode to suggest: "600"
	Regular   bool        // refuse pipes and devices
	Owner     bool        // refuse a file owned by someone other than root and this process's user
	MaxSize   int64
}

// maxPrivateKey bounds a private key file; PEM keys are a few KiB.
const maxPrivateKey = 1 << 20

// ReadPrivate reads a private key file, refusing one that group or others
// may read or write, that is not a regular file, or that belongs to a user
// other than root and the gateway's own: its owner could replace the key
// (an SSH target's, the admin API's TLS key) with one of their choosing.
func ReadPrivate(path string) ([]byte, error) {
	return ReadSecret(path, Rules{What: "private key", Forbidden: 0o077, Chmod: "600", Regular: true, Owner: true, MaxSize: maxPrivateKey})
}

// ReadSecret reads a file holding secrets after checking, on the open
// descriptor so that a swap between check and read cannot slip by, what r
// forbids. Permission and owner problems wrap ErrInsecure.
func ReadSecret(path string, r Rules) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if r.Regular && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s is not a regular file", r.What, path)
	}
	if perm := fi.Mode().Perm(); perm&r.Forbidden != 0 {
		return nil, fmt.Errorf("%s %s has mode %04o, which lets others read or change it; run: chmod %s %s: %w",
			r.What, path, perm, r.Chmod, path, ErrInsecure)
	}
	if r.Owner {
		if uid, foreign := foreignOwner(fi); foreign {
			owner := "root"
			if euid := os.Geteuid(); euid != 0 {
				owner = strconv.Itoa(euid)
			}
			return nil, fmt.Errorf("%s %s belongs to uid %d, not to root or the user running the gateway; run: chown %s %s: %w",
				r.What, path, uid, owner, path, ErrInsecure)
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, r.MaxSize+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > r.MaxSize {
		return nil, fmt.Errorf("%s %s is larger than %d bytes", r.What, path, r.MaxSize)
	}
	return data, nil
}

// WriteNew writes a file that must not exist yet and syncs it; on failure
// it removes what it created. A caller that writes several files syncs
// their folder once with SyncDir afterwards.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// SyncDir makes the entries of a folder durable: new files in it survive a
// crash only once it is synced.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
