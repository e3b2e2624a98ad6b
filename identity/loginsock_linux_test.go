package identity

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startLoginServer serves logins on a socket in a temporary folder; every
// caller is in the OIDC workload "support" and every token is good.
func startLoginServer(t *testing.T, workload func(pid uint32) (Workload, error)) (string, *Logins) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "login.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ls := NewLogins(nil)
	t.Cleanup(ls.Close)
	srv := &LoginServer{
		Workload: workload,
		Verify: func(context.Context, Workload, string) (Identity, time.Time, error) {
			return Identity{Subject: "mallory", Issuer: "https://idp.example/"}, time.Now().Add(time.Hour), nil
		},
		Logins: ls,
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Serve(ctx, ln)
	return sock, ls
}

// sendToken writes token on conn, closes the writing side and returns the
// gateway's answer.
func sendToken(t *testing.T, conn *net.UnixConn, token string) LoginReply {
	t.Helper()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, token); err != nil {
		t.Fatal(err)
	}
	conn.CloseWrite()
	var r LoginReply
	if err := json.NewDecoder(conn).Decode(&r); err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return r
}

// TestLoginResolvesCallerAtAccept: the caller's workload is read as soon
// as the connection is accepted, not after the token arrives (up to 30 s
// later), when the pid may belong to another process.
func TestLoginResolvesCallerAtAccept(t *testing.T) {
	resolved := make(chan uint32, 1)
	sock, _ := startLoginServer(t, func(pid uint32) (Workload, error) {
		resolved <- pid
		return Workload{Name: "support", OIDC: "corp"}, nil
	})
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	select {
	case pid := <-resolved:
		if pid != uint32(os.Getpid()) {
			t.Errorf("resolved pid %d, want ours %d", pid, os.Getpid())
		}
	case <-time.After(5 * time.Second):
		t.Error("the caller's workload was not resolved before its token was sent")
	}
	if r := sendToken(t, conn, "token"); r.Error != "" || r.Subject != "mallory" {
		t.Errorf("login of a live caller: %+v", r)
	}
}

// loginConnectEnv makes the test binary the helper of
// TestLoginRefusedWhenCallerExited: it connects its descriptor 3 to the
// socket the variable names, and exits.
const loginConnectEnv = "INTERLOCK_TEST_LOGIN_CONNECT"

func TestLoginConnectHelper(t *testing.T) {
	path := os.Getenv(loginConnectEnv)
	if path == "" {
		return // only a helper process
	}
	if err := unix.Connect(3, &unix.SockaddrUnix{Name: path}); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// TestLoginRefusedWhenCallerExited: the audit's pid reuse. A process
// connects to the login socket (SO_PEERCRED records its pid) and exits,
// leaving the connection to another process that sends the token. Its
// pid may by then be a workload's process; the login is refused because
// the process that connected is gone.
func TestLoginRefusedWhenCallerExited(t *testing.T) {
	sock, ls := startLoginServer(t, func(pid uint32) (Workload, error) {
		// Stands for a pid now held by a process of the workload.
		return Workload{Name: "support", OIDC: "corp"}, nil
	})
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "login client")
	defer f.Close()
	helper := exec.Command(os.Args[0], "-test.run=^TestLoginConnectHelper$")
	helper.Env = append(os.Environ(), loginConnectEnv+"="+sock)
	helper.ExtraFiles = []*os.File{f}
	if out, err := helper.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	// The helper connected our socket and has exited (and been reaped).
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := sendToken(t, c.(*net.UnixConn), "token-of-mallory")
	if r.Error == "" || !strings.Contains(r.Error, "exited") {
		t.Errorf("login over a connection whose process exited: %+v, want it refused because the process exited", r)
	}
	if l, ok := ls.Lookup("support"); ok {
		t.Errorf("workload support was bound to %s", l.Identity.Subject)
	}
}
