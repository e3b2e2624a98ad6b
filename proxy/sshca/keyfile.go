package sshca

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/crypto/ssh"
)

// minRSABits is the smallest RSA key accepted from an operator: OpenSSH
// itself refuses below 1024 bits, and 2048 is the smallest size still
// considered safe for a long-lived key.
const minRSABits = 2048

// readPrivateKeyFile reads a private key file, refusing one that group or
// others may read or write, as OpenSSH refuses an "unprotected private key
// file". The mode is taken from the open file so that it is the file read.
// A missing file is returned as the error of os.Open (fs.ErrNotExist).
func readPrivateKeyFile(path string) ([]byte, error) {
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

// parseSigner parses an unencrypted private key (OpenSSH, PKCS #1, PKCS #8
// or SEC 1 PEM) of a type the gateway signs with. RSA keys sign with
// rsa-sha2-512 only (and rsa-sha2-256 when allowSHA256): SHA-1 "ssh-rsa"
// signatures are refused by current OpenSSH clients.
func parseSigner(pemBytes []byte, allowSHA256 bool) (ssh.Signer, error) {
	raw, err := ssh.ParseRawPrivateKey(pemBytes)
	if err != nil {
		if _, ok := errors.AsType[*ssh.PassphraseMissingError](err); ok {
			return nil, errors.New("the key is encrypted; the gateway needs it unencrypted")
		}
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return nil, err
	}
	switch typ := signer.PublicKey().Type(); typ {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		return signer, nil
	case ssh.KeyAlgoRSA:
		pub, ok := raw.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("unexpected RSA key %T", raw)
		}
		if bits := pub.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits, want at least %d", bits, minRSABits)
		}
		algSigner, ok := signer.(ssh.AlgorithmSigner)
		if !ok {
			return nil, fmt.Errorf("RSA signer %T cannot choose its algorithm", signer)
		}
		algos := []string{ssh.KeyAlgoRSASHA512}
		if allowSHA256 {
			algos = append(algos, ssh.KeyAlgoRSASHA256)
		}
		return ssh.NewSignerWithAlgorithms(algSigner, algos)
	default:
		return nil, fmt.Errorf("unsupported key type %s; use ed25519, ECDSA or RSA", typ)
	}
}

// writeNew writes a file that must not exist yet and syncs it; on failure it
// removes what it created.
func writeNew(path string, data []byte, perm os.FileMode) error {
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
