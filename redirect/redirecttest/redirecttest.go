// Package redirecttest is the harness for interlock's privileged tests: it
// gates them on root, makes real cgroups, and runs real agent processes in
// them that dial, report what the kernel did, and exit. It is also what the
// other harnesses (pgtest, sshtest, oidctest) share: the one skip-or-fail
// gate (Unavailable, Launched) and the running of a server process with its
// log, readiness check and stop by pid (Daemon).
//
// A test binary that uses Agent must call MaybeRunAgent first thing in its
// TestMain: the agent is the test binary itself, re-executed.
package redirecttest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// RequiredEnv, when "1", turns a privileged test's skip into a failure. CI
// sets it so the data path is always exercised there.
const RequiredEnv = "INTERLOCK_REQUIRE_PRIVILEGED"

// RequirePrivileged skips the test with a reason when not root, or fails it
// when RequiredEnv says privileged tests must run.
func RequirePrivileged(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	Unavailable(tb, "this test needs root for eBPF and cgroups", "run as root")
}

// Unavailable is the one gate of every test that needs something this
// machine may lack (root, a server binary, a client): it skips tb saying
// what is missing and why, or fails it when RequiredEnv says the test must
// run, so that CI never passes by skipping.
func Unavailable(tb testing.TB, what, reason string) {
	tb.Helper()
	if os.Getenv(RequiredEnv) == "1" {
		tb.Fatalf("%s (%s), and %s=1 says this test must run", what, reason, RequiredEnv)
	}
	tb.Skipf("%s: %s (CI sets %s=1 and fails instead)", what, reason, RequiredEnv)
}

// Cgroup is a cgroup v2 folder a test made.
type Cgroup struct {
	Root string // the cgroup v2 mount point
	Path string // below Root, e.g. "/interlock-test-123/agents/demo"
	ID   uint64
}

// Dir is the cgroup's folder.
func (c Cgroup) Dir() string { return filepath.Join(c.Root, c.Path) }

// MakeCgroup creates root+path (and its parents) and removes every folder it
// created when the test ends, deepest first. The processes in it must have
// exited by then.
func MakeCgroup(tb testing.TB, root, path string) Cgroup {
	tb.Helper()
	var created []string
	dir := root
	for _, part := range strings.Split(strings.Trim(path, "/"), "/") {
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err == nil {
			created = append(created, dir)
		} else if !errors.Is(err, os.ErrExist) {
			tb.Fatalf("creating cgroup %s: %v", dir, err)
		}
	}
	tb.Cleanup(func() {
		for i := len(created) - 1; i >= 0; i-- {
			removeCgroup(tb, created[i])
		}
	})
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		tb.Fatalf("stat %s: %v", dir, err)
	}
	return Cgroup{Root: root, Path: "/" + strings.Trim(path, "/"), ID: st.Ino}
}

// removeCgroup removes dir and every cgroup below it (the gateway under
// test may have created some), deepest first. It retries briefly: a process
// that just exited leaves its cgroup busy for a moment.
func removeCgroup(tb testing.TB, dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroup(tb, filepath.Join(dir, e.Name()))
		}
	}
	var err error
	for range 50 {
		if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Errorf("removing cgroup %s: %v", dir, err)
}

// agentEnv carries the agent's action into the re-executed test binary.
const agentEnv = "INTERLOCK_TEST_AGENT"

// Dial is what an agent does: connect to Address over Network ("tcp4",
// "tcp6", "udp4", "udp6"), optionally with TCP Fast Open (sendto with
// MSG_FASTOPEN carrying Send), send Send, and read one line back (over
// UDP: one datagram, after sending Send or "ping").
type Dial struct {
	Network string `json:"network"`
	Address string `json:"address"`
	// Protocol is socket()'s protocol argument: 0 for the network's
	// usual one, unix.IPPROTO_MPTCP for a Multipath TCP socket.
	Protocol int    `json:"protocol,omitempty"`
	Send     string `json:"send,omitempty"`
	FastOpen bool   `json:"fastopen,omitempty"`
	// ViaChild makes the agent start a child process that does the dial,
	// to show that a workload's children are covered.
	ViaChild bool `json:"via_child,omitempty"`
	// Bind, when set, is the local address the socket is bound to (port
	// 0) before it connects.
	Bind string `json:"bind,omitempty"`
}

// Result is what the agent saw.
type Result struct {
	Errno string `json:"errno,omitempty"` // e.g. "EPERM", "ECONNREFUSED"; "" when the dial worked
	Error string `json:"error,omitempty"`
	Peer  string `json:"peer,omitempty"`  // getpeername after connect
	Local string `json:"local,omitempty"` // getsockname after connect
	Reply string `json:"reply,omitempty"` // first line the server sent back
	PID   int    `json:"pid"`
}

// Agent runs one Dial in a new process placed in cg (via CLONE_INTO_CGROUP,
// so it is in the cgroup before its first instruction) and returns what it
// saw.
func Agent(tb testing.TB, cg Cgroup, d Dial) Result {
	tb.Helper()
	f, err := os.Open(cg.Dir())
	if err != nil {
		tb.Fatalf("opening cgroup: %v", err)
	}
	defer f.Close()
	return runAgent(tb, d, &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())})
}

// Outsider runs one Dial in a process that stays in the test's own cgroup
// (not a workload).
func Outsider(tb testing.TB, d Dial) Result {
	tb.Helper()
	return runAgent(tb, d, nil)
}

func runAgent(tb testing.TB, d Dial, attr *syscall.SysProcAttr) Result {
	tb.Helper()
	spec, _ := json.Marshal(d)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), agentEnv+"="+string(spec))
	cmd.SysProcAttr = attr
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("agent %+v: %v\n%s", d, err, stderr.String())
	}
	var r Result
	if err := json.Unmarshal(out, &r); err != nil {
		tb.Fatalf("agent %+v printed %q: %v", d, out, err)
	}
	return r
}

// MaybeRunAgent runs the agent (or a holding agent, see StartHold) and
// exits when this process is one; otherwise it returns at once.
func MaybeRunAgent() {
	maybeRunHold()
	spec := os.Getenv(agentEnv)
	if spec == "" {
		return
	}
	var d Dial
	if err := json.Unmarshal([]byte(spec), &d); err != nil {
		fmt.Fprintln(os.Stderr, "bad agent spec:", err)
		os.Exit(2)
	}
	if d.ViaChild {
		d.ViaChild = false
		child, _ := json.Marshal(d)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), agentEnv+"="+string(child))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	r := dial(d)
	r.PID = os.Getpid()
	json.NewEncoder(os.Stdout).Encode(r)
	os.Exit(0)
}

func dial(d Dial) Result {
	ap, err := netip.ParseAddrPort(d.Address)
	if err != nil {
		return Result{Error: err.Error()}
	}
	family, sa := unix.AF_INET, unix.Sockaddr(nil)
	if d.Network == "tcp6" || d.Network == "udp6" {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	sotype := unix.SOCK_STREAM
	udp := strings.HasPrefix(d.Network, "udp")
	if udp {
		sotype = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, sotype|unix.SOCK_CLOEXEC, d.Protocol)
	if err != nil {
		r := errnoResult(err)
		r.Error = "socket: " + r.Error
		return r
	}
	defer unix.Close(fd)
	if d.Bind != "" {
		b, err := netip.ParseAddr(d.Bind)
		if err != nil {
			return Result{Error: err.Error()}
		}
		var bsa unix.Sockaddr
		switch {
		case family == unix.AF_INET6:
			bsa = &unix.SockaddrInet6{Addr: b.As16()}
		case b.Is4():
			bsa = &unix.SockaddrInet4{Addr: b.As4()}
		default:
			return Result{Error: "bind: " + d.Bind + " is not an IPv4 address"}
		}
		if err := unix.Bind(fd, bsa); err != nil {
			r := errnoResult(err)
			r.Error = "bind: " + r.Error
			return r
		}
	}
	tv := unix.Timeval{Sec: 5}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)

	send := []byte(d.Send)
	if d.FastOpen {
		err = unix.Sendto(fd, send, unix.MSG_FASTOPEN, sa)
		send = nil
	} else {
		err = unix.Connect(fd, sa)
	}
	if err != nil {
		return errnoResult(err)
	}
	var r Result
	if p, err := unix.Getpeername(fd); err == nil {
		r.Peer = sockaddrString(p)
	}
	if l, err := unix.Getsockname(fd); err == nil {
		r.Local = sockaddrString(l)
	}
	if udp && len(send) == 0 {
		send = []byte("ping\n")
	}
	if len(send) > 0 {
		if _, err := unix.Write(fd, send); err != nil {
			return errnoResult(err)
		}
	}
	if udp {
		// One read takes the whole datagram: a byte at a time would
		// drop the rest of it.
		buf := make([]byte, 512)
		n, err := unix.Read(fd, buf)
		if err != nil {
			e := errnoResult(err)
			r.Errno, r.Error = e.Errno, e.Error
			return r
		}
		r.Reply, _, _ = strings.Cut(string(buf[:max(n, 0)]), "\n")
		return r
	}
	buf := make([]byte, 0, 512)
	one := make([]byte, 1)
	for len(buf) < 512 {
		n, err := unix.Read(fd, one)
		if n <= 0 || err != nil {
			if err != nil && len(buf) == 0 {
				e := errnoResult(err)
				r.Errno, r.Error = e.Errno, e.Error
			}
			break
		}
		if one[0] == '\n' {
			break
		}
		buf = append(buf, one[0])
	}
	r.Reply = string(buf)
	return r
}

func errnoResult(err error) Result {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return Result{Errno: unix.ErrnoName(errno), Error: err.Error()}
	}
	return Result{Error: err.Error()}
}

func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	}
	return fmt.Sprint(sa)
}

// EchoServer listens on addr and, for each connection, first writes the
// client address it sees ("from=IP:PORT") and then echoes what it reads.
// Comparing "from" with the agent's own local address tells a proxied
// connection (the gateway's address) from a direct one.
func EchoServer(tb testing.TB, addr string) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatalf("echo server on %s: %v", addr, err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "from=%s\n", c.RemoteAddr())
				buf := make([]byte, 4096)
				for {
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					n, err := c.Read(buf)
					if n > 0 {
						c.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln
}

// UDPEchoServer listens on addr and answers each datagram with the client
// address it sees ("from=IP:PORT"), as EchoServer does for TCP.
func UDPEchoServer(tb testing.TB, addr string) net.PacketConn {
	tb.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		tb.Fatalf("UDP echo server on %s: %v", addr, err)
	}
	tb.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			fmt.Fprintf(writerTo{pc, from}, "from=%s\n", from)
		}
	}()
	return pc
}

// writerTo writes each Write as one datagram to addr.
type writerTo struct {
	pc   net.PacketConn
	addr net.Addr
}

func (w writerTo) Write(b []byte) (int, error) { return w.pc.WriteTo(b, w.addr) }

// Port returns a listener's port.
func Port(ln net.Listener) uint16 {
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	n, _ := strconv.Atoi(p)
	return uint16(n)
}

// RunIn runs cmd as a new process placed in cg (CLONE_INTO_CGROUP) and
// returns its combined output: a real client (psql, ssh) as a workload.
func RunIn(tb testing.TB, cg Cgroup, cmd *exec.Cmd) ([]byte, error) {
	tb.Helper()
	f, err := os.Open(cg.Dir())
	if err != nil {
		tb.Fatalf("opening cgroup: %v", err)
	}
	defer f.Close()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(f.Fd())
	return cmd.CombinedOutput()
}
