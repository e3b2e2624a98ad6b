// Package keyfile reads and writes the gateway's own key files (the agent
// facing CAs' keys and certificates, SSH host keys): a private key is read
// only when group and others cannot access it, as OpenSSH refuses an
// "unprotected private key file", and a new file is written whole and on
// disk, or not at all.
//
// Errors are the os package's, wrapped with what was refused; a missing
// file is reported as fs.ErrNotExist by [ReadPrivate].
package keyfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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

// ReadPrivate reads a private key file, refusing one that group or others
// may read or write, or that is not a regular file. The mode is taken from
// the open file, so it is the mode of the file read.
func ReadPrivate(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("mode %04o: a private key must not be accessible by group or others (chmod 600 %s)", perm, path)
	}
	return io.ReadAll(f)
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
