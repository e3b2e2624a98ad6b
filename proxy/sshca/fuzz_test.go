package sshca

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzHostSigner feeds HostSigner the address or name an agent dialled:
// either it is refused as an invalid principal, or the certificate names
// exactly one principal, valid for that principal in a certificate check,
// and asking again with the normalised principal gives the cached signer.
func FuzzHostSigner(f *testing.F) {
	for _, s := range []string{"127.0.0.2", "db.example.com", "[::1]", "DB.", "*", "a b", "fe80::1%eth0", "db:22"} {
		f.Add(s)
	}
	ca, err := LoadOrCreate(filepath.Join(f.TempDir(), "ssh-ca"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, principal string) {
		signer, err := ca.HostSigner([]string{principal})
		if err != nil {
			if !errors.Is(err, ErrInvalidPrincipal) {
				t.Fatalf("HostSigner(%q) = %v, want ErrInvalidPrincipal", principal, err)
			}
			return
		}
		cert := signer.PublicKey().(*ssh.Certificate)
		if len(cert.ValidPrincipals) != 1 {
			t.Fatalf("principals %q", cert.ValidPrincipals)
		}
		name := cert.ValidPrincipals[0]
		if err := checkName(name); err != nil {
			t.Fatalf("HostSigner(%q) certified %q: %v", principal, name, err)
		}
		if err := checker(ca).CheckCert(name, cert); err != nil {
			t.Fatal(err)
		}
		again, err := ca.HostSigner([]string{name})
		if err != nil || again != signer {
			t.Fatalf("normalised principal %q: %v, another signer %v", name, err, again != signer)
		}
	})
}

// FuzzKnownHostsLineForKey: a host is refused as an invalid pattern, or the
// line parses back to one host and the key, and formatting that host again
// gives the same line.
func FuzzKnownHostsLineForKey(f *testing.F) {
	for _, s := range []string{"127.0.0.2", "127.0.0.2:2222", "[::1]:2222", "::1", "db:22", "db:", "[db]:x", "*.corp"} {
		f.Add(s)
	}
	key, err := LoadOrCreateHostKey(filepath.Join(f.TempDir(), "host.key"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host string) {
		line, err := KnownHostsLineForKey([]string{host}, key.PublicKey())
		if err != nil {
			if !errors.Is(err, ErrInvalidPattern) {
				t.Fatalf("KnownHostsLineForKey(%q) = %v, want ErrInvalidPattern", host, err)
			}
			return
		}
		marker, hosts, pub, _, rest, err := ssh.ParseKnownHosts([]byte(line + "\n"))
		if err != nil || marker != "" || len(hosts) != 1 || len(rest) != 0 || !bytes.Equal(pub.Marshal(), key.PublicKey().Marshal()) {
			t.Fatalf("%q gave %q: parsed back as marker %q hosts %q rest %q err %v", host, line, marker, hosts, rest, err)
		}
		again, err := KnownHostsLineForKey(hosts, key.PublicKey())
		if err != nil || again != line {
			t.Fatalf("%q gave %q, its host %q gave %q, %v", host, line, hosts[0], again, err)
		}
	})
}
