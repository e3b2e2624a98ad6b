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

// TestLoginSurvivesAcceptFailure: an accept that fails for want of a
// descriptor (a local user can hold many logins open) is retried; it used
// to end the login socket for good, until the gateway restarted.
func TestLoginSurvivesAcceptFailure(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "login.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ls := NewLogins(nil)
	t.Cleanup(ls.Close)
	srv := &LoginServer{
		Workload: func(uint32) (Workload, error) { return Workload{Name: "support", OIDC: "corp"}, nil },
		Verify: func(context.Context, Workload, string) (Identity, time.Time, error) {
			return Identity{Subject: "alice", Issuer: "https://idp.example/"}, time.Now().Add(time.Hour), nil
		},
		Logins: ls,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	// Leave this process one descriptor: the client's socket takes it,
	// and the gateway's accept finds none.
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = uint64(len(fds)) // ReadDir's own descriptor is closed again
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	c, dialErr := net.Dial("unix", sock)
	time.Sleep(100 * time.Millisecond) // the accept fails meanwhile
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if dialErr != nil {
		t.Fatalf("dialling with one descriptor left: %v", dialErr)
	}
	c.Close()

	select {
	case err := <-served:
		t.Fatalf("the login socket stopped after an accept failed: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	defer lcancel()
	if r, err := LoginAt(lctx, sock, "token"); err != nil || r.Subject != "alice" {
		t.Errorf("login once descriptors are free again: %+v, %v", r, err)
	}
}

// TestLoginsBoundedPerUID: logins that never send their token hold two of
// the gateway's descriptors each for up to 30 s; one user gets
// MaxLoginsPerUID at once, and the next is answered at once with a
// refusal instead of being held too.
func TestLoginsBoundedPerUID(t *testing.T) {
	taken := make(chan struct{}, MaxLoginsPerUID+2)
	sock, _ := startLoginServer(t, func(uint32) (Workload, error) {
		taken <- struct{}{}
		return Workload{Name: "support", OIDC: "corp"}, nil
	})
	dial := func() *net.UnixConn {
		t.Helper()
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	held := make([]*net.UnixConn, MaxLoginsPerUID)
	for i := range held {
		held[i] = dial()
		select { // taken up, and counted, before the next connects
		case <-taken:
		case <-time.After(5 * time.Second):
			t.Fatalf("login %d was not taken up", i)
		}
	}

	over := dial()
	over.SetReadDeadline(time.Now().Add(5 * time.Second))
	var r LoginReply
	if err := json.NewDecoder(over).Decode(&r); err != nil {
		t.Fatalf("login %d of one user, no token sent: no answer (%v), want a refusal at once", MaxLoginsPerUID+1, err)
	}
	if !strings.Contains(r.Error, "under way") {
		t.Errorf("login %d of one user: %+v, want it refused", MaxLoginsPerUID+1, r)
	}

	// One ends; another may start.
	if r := sendToken(t, held[0], "token"); r.Error != "" {
		t.Fatalf("a held login: %+v", r)
	}
	if r := sendToken(t, dial(), "token"); r.Error != "" {
		t.Errorf("a login once another ended: %+v", r)
	}
}
