package ssh_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/proxy/ssh/sshtest"
)

// misbehaveEnv names what the test binary, started by sshd as its sftp
// subsystem, does wrong (see misbehavingSFTPServer).
const misbehaveEnv = "INTERLOCK_TEST_SFTP_MISBEHAVE"

func TestMain(m *testing.M) {
	if mode := os.Getenv(misbehaveEnv); mode != "" {
		misbehavingSFTPServer(mode, os.Stdin, os.Stdout)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// misbehavingSFTPServer is an sftp server on r and w that answers INIT
// and REALPATH as a server does, and an OPEN as mode says:
//   - "unsolicited": a HANDLE to an id the client never sent, then the
//     open's own failure;
//   - "twice": a HANDLE, then a second HANDLE to the same id;
//   - "malformed": a HANDLE whose handle runs past the packet's end.
//
// It then reads until the stream ends, so the session ends only if the
// gateway ends it.
func misbehavingSFTPServer(mode string, r io.Reader, w io.Writer) {
	in := bufio.NewReader(r)
	packet := func(typ byte, id uint32, fields ...[]byte) {
		body := []byte{typ}
		if typ != 2 { // VERSION has no id
			body = binary.BigEndian.AppendUint32(body, id)
		}
		for _, f := range fields {
			body = append(body, f...)
		}
		w.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...))
	}
	str := func(s string) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...) }
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(in, hdr[:]); err != nil {
			return
		}
		b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(in, b); err != nil || len(b) < 5 {
			return
		}
		id := binary.BigEndian.Uint32(b[1:])
		const (
			typeInit, typeOpen, typeRealpath = 1, 3, 16
			typeStatus, typeHandle, typeName = 101, 102, 104
		)
		switch b[0] {
		case typeInit:
			packet(2, 0, u32(3))
		case typeRealpath:
			packet(typeName, id, u32(1), str("/tmp"), str("/tmp"), u32(0))
		case typeOpen:
			switch mode {
			case "unsolicited":
				packet(typeHandle, id+1000, str("stolen"))
				packet(typeStatus, id, u32(2), str("no such file"), str(""))
			case "twice":
				packet(typeHandle, id, str("first"))
				packet(typeHandle, id, str("second"))
			case "malformed":
				packet(typeHandle, id, u32(100), []byte("short"))
			}
		default:
			packet(typeStatus, id, u32(8), str("unsupported"), str(""))
		}
	}
}

// TestSFTPServerMisbehaves: a reply from the server that answers no
// request the gateway forwarded (an id the agent never sent, a second
// reply to one) or that the gateway cannot read never reaches the agent:
// the gateway's view of handles is built from request and reply pairs,
// and such a reply could give the agent a handle no decision opened. The
// gateway ends the session, and records why.
func TestSFTPServerMisbehaves(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode    string
		handles int // HANDLE replies the agent may see: the first of "twice"
		why     string
	}{
		{"unsolicited", 0, "reply to no pending request"},
		{"twice", 1, "reply to no pending request"},
		{"malformed", 0, "parsing the server's sftp reply"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			dir := t.TempDir()
			server := filepath.Join(dir, "sftp-server")
			script := "#!/bin/sh\n" + misbehaveEnv + "=" + tc.mode + " exec " + self + "\n"
			if err := os.WriteFile(server, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			sshd := sshtest.Start(t, sshtest.Options{Host: "127.0.0.2", ExtraConfig: []string{"Subsystem sftp " + server}})
			e := startProxy(t, sshd, envOptions{policy: "default: allow\n"})
			s := dialSFTP(t, e)
			s.write(sftpPacket(3, 1, "/tmp/x", uint32(1), uint32(0))) // OPEN for reading

			type reply struct {
				typ byte
				id  uint32
			}
			replies := make(chan reply, 16)
			ended := make(chan error, 1)
			go func() {
				for {
					var hdr [4]byte
					if _, err := io.ReadFull(s.r.r, hdr[:]); err != nil {
						ended <- err
						return
					}
					b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
					if _, err := io.ReadFull(s.r.r, b); err != nil || len(b) < 5 {
						ended <- errors.Join(err, io.ErrUnexpectedEOF)
						return
					}
					replies <- reply{b[0], binary.BigEndian.Uint32(b[1:])}
				}
			}()
			var handles []uint32
			timeout := time.After(15 * time.Second)
		read:
			for {
				select {
				case r := <-replies:
					if r.typ == 102 {
						handles = append(handles, r.id)
					}
				case err := <-ended:
					if !errors.Is(err, io.EOF) {
						t.Errorf("the session ended with %v, want its end", err)
					}
					break read
				case <-timeout:
					t.Error("the session goes on")
					break read
				}
			}
			s.close()
			if len(handles) != tc.handles {
				t.Errorf("the agent got HANDLE replies to %v, want %d of them", handles, tc.handles)
			}
			var recorded bool
			for _, c := range e.commands(t) {
				if c.Command == "sftp" && c.Decision == "deny" && strings.Contains(c.Message, "ended the sftp session") && strings.Contains(c.Message, tc.why) {
					recorded = true
				}
			}
			if !recorded {
				t.Errorf("the recording does not say the gateway ended the session (%s)", tc.why)
			}
		})
	}
}
