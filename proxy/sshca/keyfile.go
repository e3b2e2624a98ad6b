package sshca

import (
	"crypto/rsa"
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// minRSABits is the smallest RSA key accepted from an operator: OpenSSH
// itself refuses below 1024 bits, and 2048 is the smallest size still
// considered safe for a long-lived key.
const minRSABits = 2048

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
