package sshca

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := LoadOrCreate(filepath.Join(t.TempDir(), "ssh-ca"))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// hostCert mints a host certificate and returns it with its signer.
func hostCert(t *testing.T, ca *CA, principals ...string) (ssh.Signer, *ssh.Certificate) {
	t.Helper()
	signer, err := ca.HostSigner(principals)
	if err != nil {
		t.Fatal(err)
	}
	cert, ok := signer.PublicKey().(*ssh.Certificate)
	if !ok {
		t.Fatalf("host signer's public key is %T, want a certificate", signer.PublicKey())
	}
	return signer, cert
}

// checker trusts host certificates of ca for any host.
func checker(ca *CA) *ssh.CertChecker {
	return &ssh.CertChecker{IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
		return bytes.Equal(auth.Marshal(), ca.PublicKey().Marshal())
	}}
}

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ssh-ca")
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"": 0o700, KeyFile: 0o600, PublicKeyFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", filepath.Join(dir, name), fi.Mode().Perm(), want)
		}
	}
	if typ := ca.PublicKey().Type(); typ != ssh.KeyAlgoED25519 {
		t.Errorf("CA key type %s, want ed25519", typ)
	}
	keyPEM, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	if block, _ := pem.Decode(keyPEM); block == nil || block.Type != "OPENSSH PRIVATE KEY" {
		t.Errorf("%s is not an OpenSSH private key:\n%s", KeyFile, keyPEM)
	}
	pubLine, _ := os.ReadFile(filepath.Join(dir, PublicKeyFile))
	want := "ssh-ed25519 " + strings.Fields(string(ssh.MarshalAuthorizedKey(ca.PublicKey())))[1] + " interlock gateway SSH CA\n"
	if string(pubLine) != want {
		t.Errorf("%s = %q, want %q", PublicKeyFile, pubLine, want)
	}

	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.PublicKey().Marshal(), ca.PublicKey().Marshal()) {
		t.Error("reloading gave another CA key")
	}
	// A certificate of the reloaded CA passes for the first one's.
	_, cert := hostCert(t, again, "db.internal")
	if err := checker(ca).CheckCert("db.internal", cert); err != nil {
		t.Errorf("certificate of the reloaded CA: %v", err)
	}
}

func write(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // whatever the umask
		t.Fatal(err)
	}
}

// sshKeygen runs the real ssh-keygen, the way an operator makes a key.
func sshKeygen(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skipf("ssh-keygen not installed: %v", err)
	}
	if out, err := exec.Command(path, append([]string{"-q"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
	}
}

func TestLoadOrCreateRefuses(t *testing.T) {
	other := t.TempDir()
	if _, err := LoadOrCreate(other); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := os.ReadFile(filepath.Join(other, KeyFile))
	otherPub, _ := os.ReadFile(filepath.Join(other, PublicKeyFile))
	create := func(t *testing.T, dir string) {
		if _, err := LoadOrCreate(dir); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr string
	}{
		{"only the key", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, KeyFile), otherKey, 0o600)
		}, "ca.pub is missing"},
		{"only the public key", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, PublicKeyFile), otherPub, 0o644)
		}, "/ca is missing"},
		{"garbage key", func(t *testing.T, dir string) {
			create(t, dir)
			write(t, filepath.Join(dir, KeyFile), []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"), 0o600)
		}, "/ca: "},
		{"not PEM at all", func(t *testing.T, dir string) {
			create(t, dir)
			write(t, filepath.Join(dir, KeyFile), []byte("hello"), 0o600)
		}, "/ca: "},
		{"garbage public key", func(t *testing.T, dir string) {
			create(t, dir)
			write(t, filepath.Join(dir, PublicKeyFile), []byte("ssh-ed25519 bm90IGEga2V5\n"), 0o644)
		}, "ca.pub: "},
		{"public key of another CA", func(t *testing.T, dir string) {
			create(t, dir)
			write(t, filepath.Join(dir, PublicKeyFile), otherPub, 0o644)
		}, "ca.pub does not belong to"},
		{"private key of another CA", func(t *testing.T, dir string) {
			create(t, dir)
			write(t, filepath.Join(dir, KeyFile), otherKey, 0o600)
		}, "ca.pub does not belong to"},
		{"public key with options", func(t *testing.T, dir string) {
			create(t, dir)
			pub, _ := os.ReadFile(filepath.Join(dir, PublicKeyFile))
			write(t, filepath.Join(dir, PublicKeyFile), append([]byte("cert-authority "), pub...), 0o644)
		}, "options before the key"},
		{"two public keys", func(t *testing.T, dir string) {
			create(t, dir)
			pub, _ := os.ReadFile(filepath.Join(dir, PublicKeyFile))
			write(t, filepath.Join(dir, PublicKeyFile), append(pub, otherPub...), 0o644)
		}, "more than one line"},
		{"key readable by group", func(t *testing.T, dir string) {
			create(t, dir)
			os.Chmod(filepath.Join(dir, KeyFile), 0o640)
		}, "mode 0640"},
		{"key readable by others", func(t *testing.T, dir string) {
			create(t, dir)
			os.Chmod(filepath.Join(dir, KeyFile), 0o604)
		}, "mode 0604"},
		{"key is a folder", func(t *testing.T, dir string) {
			create(t, dir)
			os.Remove(filepath.Join(dir, KeyFile))
			os.Mkdir(filepath.Join(dir, KeyFile), 0o700)
		}, "not a regular file"},
		{"encrypted key", func(t *testing.T, dir string) {
			os.MkdirAll(dir, 0o700)
			sshKeygen(t, "-t", "ed25519", "-N", "secret", "-f", filepath.Join(dir, KeyFile))
		}, "encrypted"},
		{"small RSA key", func(t *testing.T, dir string) {
			os.MkdirAll(dir, 0o700)
			sshKeygen(t, "-t", "rsa", "-b", "1024", "-N", "", "-f", filepath.Join(dir, KeyFile))
		}, "RSA key of 1024 bits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ssh-ca")
			tt.setup(t, dir)
			before := snapshot(t, dir)
			_, err := LoadOrCreate(dir)
			if !errors.Is(err, ErrBadCA) || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("LoadOrCreate = %v, want ErrBadCA naming a file of %s and saying %q", err, dir, tt.wantErr)
			}
			if after := snapshot(t, dir); after != before {
				t.Errorf("LoadOrCreate changed the folder:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// snapshot describes the files of dir, their modes and content.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		fi, _ := e.Info()
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		b.WriteString(e.Name() + " " + fi.Mode().String() + "=" + string(data) + ";")
	}
	return b.String()
}

func TestLoadsOperatorCA(t *testing.T) {
	tests := []struct {
		name    string
		keygen  []string
		keyType string
		sigAlgo string
	}{
		{"RSA", []string{"-t", "rsa", "-b", "2048"}, ssh.KeyAlgoRSA, ssh.KeyAlgoRSASHA512},
		{"RSA PKCS#1 PEM", []string{"-t", "rsa", "-b", "2048", "-m", "PEM"}, ssh.KeyAlgoRSA, ssh.KeyAlgoRSASHA512},
		{"ECDSA P-384", []string{"-t", "ecdsa", "-b", "384"}, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA384},
		{"ed25519", []string{"-t", "ed25519"}, ssh.KeyAlgoED25519, ssh.KeyAlgoED25519},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			sshKeygen(t, append(tt.keygen, "-N", "", "-C", "corp SSH CA", "-f", filepath.Join(dir, KeyFile))...)
			ca, err := LoadOrCreate(dir)
			if err != nil {
				t.Fatal(err)
			}
			if typ := ca.PublicKey().Type(); typ != tt.keyType {
				t.Errorf("CA key type %s, want %s", typ, tt.keyType)
			}
			_, cert := hostCert(t, ca, "db.internal")
			if cert.Signature.Format != tt.sigAlgo {
				t.Errorf("certificate signed with %s, want %s", cert.Signature.Format, tt.sigAlgo)
			}
			if err := checker(ca).CheckCert("db.internal", cert); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestHostSigner(t *testing.T) {
	ca := newCA(t)
	tests := []struct {
		name       string
		principals []string
		want       []string // ValidPrincipals
		other      string   // a host the certificate must not pass for
	}{
		{"IPv4", []string{"127.0.0.2"}, []string{"127.0.0.2"}, "127.0.0.3"},
		{"name lower-cased", []string{"DB.Example.COM"}, []string{"db.example.com"}, "DB.Example.COM"},
		{"trailing dot kept", []string{"db.internal."}, []string{"db.internal."}, "db.internal"},
		{"IPv6 canonical", []string{"[0:0::1]"}, []string{"::1"}, "0:0::1"},
		{"IPv6 zone", []string{"fe80::1%eth0"}, []string{"fe80::1%eth0"}, "fe80::1"},
		{"sorted and unique", []string{"db.internal", "127.0.0.2", "DB.internal"}, []string{"127.0.0.2", "db.internal"}, "internal"},
		{"short name", []string{"db"}, []string{"db"}, "db.internal"},
	}
	var hostKey ssh.PublicKey
	serials := map[uint64]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			signer, cert := hostCert(t, ca, tt.principals...)
			switch {
			case cert.CertType != ssh.HostCert:
				t.Errorf("certificate type %d, want host", cert.CertType)
			case !slices.Equal(cert.ValidPrincipals, tt.want):
				t.Errorf("principals %q, want %q", cert.ValidPrincipals, tt.want)
			case cert.KeyId != "interlock host "+tt.want[0]:
				t.Errorf("key id %q", cert.KeyId)
			case len(cert.CriticalOptions) != 0 || len(cert.Extensions) != 0:
				t.Errorf("critical options %v, extensions %v; want none", cert.CriticalOptions, cert.Extensions)
			case !bytes.Equal(cert.SignatureKey.Marshal(), ca.PublicKey().Marshal()):
				t.Error("not signed by the CA")
			case cert.Key.Type() != ssh.KeyAlgoED25519:
				t.Errorf("host key %s, want ed25519", cert.Key.Type())
			case serials[cert.Serial]:
				t.Errorf("serial %d used twice", cert.Serial)
			}
			serials[cert.Serial] = true
			if d := now.Add(-5*time.Minute).Unix() - int64(cert.ValidAfter); d < -1 || d > 1 {
				t.Errorf("valid after %d, want now-5m", cert.ValidAfter)
			}
			if d := now.Add(24*time.Hour).Unix() - int64(cert.ValidBefore); d < -1 || d > 1 {
				t.Errorf("valid before %d, want now+24h", cert.ValidBefore)
			}
			// One gateway host key under every certificate.
			if hostKey == nil {
				hostKey = cert.Key
			} else if !bytes.Equal(hostKey.Marshal(), cert.Key.Marshal()) {
				t.Error("another host key under this certificate")
			}
			for _, p := range tt.want {
				if err := checker(ca).CheckCert(p, cert); err != nil {
					t.Errorf("as %s: %v", p, err)
				}
			}
			if err := checker(ca).CheckCert(tt.other, cert); err == nil {
				t.Errorf("certificate passes for %s", tt.other)
			}
			// The signer signs with the key under the certificate.
			sig, err := signer.Sign(rand.Reader, []byte("session"))
			if err != nil {
				t.Fatal(err)
			}
			if err := cert.Key.Verify([]byte("session"), sig); err != nil {
				t.Errorf("signature does not verify with the certified key: %v", err)
			}
		})
	}
}

func TestHostSignerInvalidPrincipals(t *testing.T) {
	ca := newCA(t)
	tests := []struct {
		name       string
		principals []string
	}{
		{"none", nil},
		{"empty", []string{""}},
		{"one of two empty", []string{"db.internal", ""}},
		{"space", []string{"db internal"}},
		{"tab", []string{"db\tinternal"}},
		{"newline", []string{"db.internal\n@cert-authority * x"}},
		{"NUL", []string{"db\x00"}},
		{"DEL", []string{"db\x7f"}},
		{"no-break space", []string{"db\u00a0internal"}},
		{"line separator", []string{"db\u2028internal"}},
		{"comma", []string{"a,b"}},
		{"wildcard", []string{"*"}},
		{"wildcard name", []string{"*.corp"}},
		{"question mark", []string{"db?"}},
		{"negation", []string{"!db"}},
		{"hash", []string{"#db"}},
		{"hashed host", []string{"|1|abc"}},
		{"marker", []string{"@revoked"}},
		{"port", []string{"db.internal:22"}},
		{"bracketed port", []string{"[127.0.0.2]:22"}},
		{"open bracket", []string{"[::1"}},
		{"not UTF-8", []string{"db\xff"}},
		{"too long", []string{strings.Repeat("a", 256)}},
		{"too many", slices.Repeat([]string{"db"}, 257)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ca.HostSigner(tt.principals); !errors.Is(err, ErrInvalidPrincipal) {
				t.Errorf("HostSigner(%q) = %v, want ErrInvalidPrincipal", tt.principals, err)
			}
		})
	}
	if _, err := ca.HostSigner([]string{strings.Repeat("a", 255)}); err != nil {
		t.Errorf("255 bytes: %v", err)
	}
}

func TestHostSignerCache(t *testing.T) {
	ca := newCA(t)
	now := time.Now()
	ca.now = func() time.Time { return now }

	first, firstCert := hostCert(t, ca, "db.internal", "127.0.0.2")
	if again, _ := hostCert(t, ca, "127.0.0.2", "DB.internal", "db.internal"); again != first {
		t.Error("same set, second call: a new certificate")
	}
	if other, _ := hostCert(t, ca, "127.0.0.2"); other == first {
		t.Error("another set: the same certificate")
	}
	now = now.Add(11 * time.Hour)
	if again, _ := hostCert(t, ca, "db.internal", "127.0.0.2"); again != first {
		t.Error("11h later: a new certificate, want the cached one")
	}
	now = now.Add(2 * time.Hour) // 13h: less than half the lifetime left
	fresh, freshCert := hostCert(t, ca, "db.internal", "127.0.0.2")
	if fresh == first || freshCert.Serial == firstCert.Serial {
		t.Error("13h later: still the first certificate, want a fresh one")
	}
	if freshCert.ValidBefore != firstCert.ValidBefore+13*3600 {
		t.Errorf("refreshed certificate valid before %d, want %d", freshCert.ValidBefore, firstCert.ValidBefore+13*3600)
	}
}

func TestHostSignerCacheBounded(t *testing.T) {
	ca := newCA(t)
	ca.certs.Max = 4
	for i := range 20 {
		if _, err := ca.HostSigner([]string{"host" + strconv.Itoa(i) + ".internal"}); err != nil {
			t.Fatal(err)
		}
	}
	n := ca.certs.Len()
	if n != 4 {
		t.Errorf("cache holds %d certificates, want 4", n)
	}
}

func TestHostSignerConcurrent(t *testing.T) {
	ca := newCA(t)
	sets := [][]string{{"a.internal"}, {"b.internal", "127.0.0.2"}, {"127.0.0.2"}, {"::1"}}
	const workers = 16
	got := make([][]ssh.Signer, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for _, set := range sets {
				s, err := ca.HostSigner(set)
				if err != nil {
					t.Error(err)
					return
				}
				got[w] = append(got[w], s)
			}
		})
	}
	wg.Wait()
	for w := range workers {
		for i, s := range got[w] {
			if s != got[0][i] {
				t.Errorf("worker %d got another certificate for %v", w, sets[i])
			}
		}
	}
}

func TestKnownHostsLine(t *testing.T) {
	ca := newCA(t)
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ca.PublicKey())))
	tests := []struct {
		patterns  []string
		wantHosts string
	}{
		{nil, "*"},
		{[]string{"127.0.0.2"}, "127.0.0.2"},
		{[]string{"127.0.0.2", "db.example.com", "*.corp", "[10.0.0.1]:2222", "!bad.corp"}, "127.0.0.2,db.example.com,*.corp,[10.0.0.1]:2222,!bad.corp"},
	}
	for _, tt := range tests {
		line, err := ca.KnownHostsLine(tt.patterns...)
		if err != nil {
			t.Fatal(err)
		}
		if want := "@cert-authority " + tt.wantHosts + " " + key + " interlock gateway SSH CA"; line != want {
			t.Errorf("KnownHostsLine(%q) =\n%s\nwant\n%s", tt.patterns, line, want)
		}
		marker, hosts, pub, comment, rest, err := ssh.ParseKnownHosts([]byte(line + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		wantHosts := tt.patterns
		if wantHosts == nil {
			wantHosts = []string{"*"}
		}
		if marker != "cert-authority" || !slices.Equal(hosts, wantHosts) || !bytes.Equal(pub.Marshal(), ca.PublicKey().Marshal()) ||
			comment != Comment || len(rest) != 0 {
			t.Errorf("parsed back: marker %q hosts %q comment %q rest %q", marker, hosts, comment, rest)
		}
	}

	for _, bad := range [][]string{{""}, {"a b"}, {"a,b"}, {"a\nb"}, {"a\tb"}, {"ok", "a\x00"}, {"\xff"}} {
		if line, err := ca.KnownHostsLine(bad...); !errors.Is(err, ErrInvalidPattern) {
			t.Errorf("KnownHostsLine(%q) = %q, %v; want ErrInvalidPattern", bad, line, err)
		}
	}
}

// serveSSH runs an SSH server on addr (port 0 for any) presenting hostKeys,
// letting every client in with the "none" method and answering each "exec"
// request with "ok\n" and exit status 0. It returns the address it listens
// on; the server stops when the test ends.
func serveSSH(t *testing.T, addr string, hostKeys ...ssh.Signer) string {
	t.Helper()
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	for _, k := range hostKeys {
		cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serveConn(c, cfg) })
		}
	})
	return ln.Addr().String()
}

func serveConn(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return // the client refused the host key, typically
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			for r := range chReqs {
				if r.Type != "exec" {
					r.Reply(false, nil)
					continue
				}
				r.Reply(true, nil)
				io.WriteString(ch, "ok\n")
				ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
				ch.Close()
			}
		}()
	}
}

func TestHandshakeWithCertChecker(t *testing.T) {
	ca := newCA(t)
	signer, _ := hostCert(t, ca, "127.0.0.1", "db.internal")
	addr := serveSSH(t, "127.0.0.1:0", signer)
	_, port, _ := net.SplitHostPort(addr)

	otherCA := newCA(t)
	otherSigner, _ := hostCert(t, otherCA, "127.0.0.1", "db.internal")
	otherAddr := serveSSH(t, "127.0.0.1:0", otherSigner)
	_, otherPort, _ := net.SplitHostPort(otherAddr)

	tests := []struct {
		name    string
		dial    string
		as      string // the host:port the client believes it dialled
		wantErr string
	}{
		{"address", addr, "127.0.0.1:" + port, ""},
		{"name", addr, "db.internal:" + port, ""},
		{"another name", addr, "other.internal:" + port, "not in the set of valid principals"},
		{"another address", addr, "127.0.0.2:" + port, "not in the set of valid principals"},
		{"another CA", otherAddr, "db.internal:" + otherPort, "no authorities"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", tt.dial)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			cc := checker(ca)
			conn, chans, reqs, err := ssh.NewClientConn(c, tt.as, &ssh.ClientConfig{
				User:            "test",
				HostKeyCallback: cc.CheckHostKey,
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("handshake as %s: %v, want an error saying %q", tt.as, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake as %s: %v", tt.as, err)
			}
			client := ssh.NewClient(conn, chans, reqs)
			defer client.Close()
			sess, err := client.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			out, err := sess.Output("true")
			if err != nil || string(out) != "ok\n" {
				t.Errorf("exec: %q, %v", out, err)
			}
		})
	}
}

// The host key stays the same across the certificates of one CA value, and
// differs between two loads of the same folder: it is not persisted.
func TestHostKeyNotPersisted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ssh-ca")
	a, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, certA := hostCert(t, a, "db.internal")
	_, certB := hostCert(t, b, "db.internal")
	if bytes.Equal(certA.Key.Marshal(), certB.Key.Marshal()) {
		t.Error("two loads share a host key")
	}
	if pub, ok := certA.Key.(ssh.CryptoPublicKey); !ok {
		t.Errorf("host key %T", certA.Key)
	} else if _, ok := pub.CryptoPublicKey().(ed25519.PublicKey); !ok {
		t.Errorf("host key %T, want ed25519", pub.CryptoPublicKey())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("CA folder holds %d files, want 2", len(entries))
	}
}
