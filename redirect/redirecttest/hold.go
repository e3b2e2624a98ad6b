package redirecttest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const holdEnv = "INTERLOCK_TEST_HOLD"

// Hold is what a holding agent does: connect to Address over TCP and keep
// the connection open, reading, until the connection fails or ends.
type Hold struct {
	Address string `json:"address"`
	// OwnNetns runs the agent in a network namespace of its own, with
	// its loopback up and a listener of its own on Address to connect to.
	OwnNetns bool `json:"own_netns,omitempty"`
	// Listen makes the agent listen on Address instead, and hold the
	// first connection it accepts.
	Listen bool `json:"listen,omitempty"`
	// HalfClose shuts down the agent's sending side once connected: the
	// connection (FIN_WAIT2) still receives what the peer sends.
	HalfClose bool `json:"half_close,omitempty"`
	// LeaveNetns moves the agent's main thread to a new network
	// namespace once connected, so that /proc/PID/ns/net no longer
	// names the one its connection lives in (as unshare(CLONE_NEWNET)
	// does for a single-threaded process).
	LeaveNetns bool `json:"leave_netns,omitempty"`
}

// The holding agent's main goroutine stays on the main thread, the one
// /proc/PID/ns/net shows (LeaveNetns).
func init() {
	if os.Getenv(holdEnv) != "" {
		runtime.LockOSThread()
	}
}

// Holder is a running holding agent.
type Holder struct {
	Local string // the connection's local address (with Listen: the listener's)
	cmd   *exec.Cmd
	done  chan struct{}
	end   string // what ended the connection: "eof" or an errno name
}

// StartHold starts a holding agent in cg (CLONE_INTO_CGROUP) and returns
// once its connection is up. The test's cleanup ends it by its pid.
func StartHold(tb testing.TB, cg Cgroup, h Hold) *Holder {
	tb.Helper()
	f, err := os.Open(cg.Dir())
	if err != nil {
		tb.Fatalf("opening cgroup: %v", err)
	}
	defer f.Close()
	spec, _ := json.Marshal(h)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+string(spec))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	if h.OwnNetns {
		cmd.SysProcAttr.Cloneflags = unix.CLONE_NEWNET
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting a holding agent: %v", err)
	}
	hd := &Holder{cmd: cmd, done: make(chan struct{})}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-hd.done
	})
	lines := bufio.NewScanner(out)
	up := make(chan string, 1)
	go func() {
		first := true
		for lines.Scan() {
			if first {
				up <- lines.Text()
				first = false
				continue
			}
			hd.end = strings.TrimPrefix(lines.Text(), "end ")
		}
		if first {
			up <- ""
		}
		cmd.Wait()
		close(hd.done)
	}()
	select {
	case l := <-up:
		local, ok := strings.CutPrefix(l, "up ")
		if !ok {
			tb.Fatalf("holding agent %+v: %q", h, l)
		}
		hd.Local = local
	case <-time.After(10 * time.Second):
		tb.Fatalf("holding agent %+v did not connect", h)
	}
	return hd
}

// PID is the holding agent's process id.
func (h *Holder) PID() int { return h.cmd.Process.Pid }

// Ended waits up to timeout for the connection to end and says how it
// ended ("" while it is still open).
func (h *Holder) Ended(timeout time.Duration) string {
	select {
	case <-h.done:
		return h.end
	case <-time.After(timeout):
		return ""
	}
}

// Open says whether the connection is still up.
func (h *Holder) Open() bool {
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

// maybeRunHold runs the holding agent and exits when this process is one.
func maybeRunHold() {
	spec := os.Getenv(holdEnv)
	if spec == "" {
		return
	}
	var h Hold
	if err := json.Unmarshal([]byte(spec), &h); err != nil {
		fmt.Fprintln(os.Stderr, "bad hold spec:", err)
		os.Exit(2)
	}
	if err := hold(h); err != nil {
		fmt.Println("failed", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func hold(h Hold) error {
	if h.OwnNetns {
		if err := loopbackUp(); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", h.Address)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { buf := make([]byte, 512); c.Read(buf) }()
			}
		}()
	}
	var c net.Conn
	if h.Listen {
		ln, err := net.Listen("tcp", h.Address)
		if err != nil {
			return err
		}
		fmt.Println("up", ln.Addr())
		if c, err = ln.Accept(); err != nil {
			return err
		}
	} else {
		var err error
		if c, err = net.DialTimeout("tcp", h.Address, 5*time.Second); err != nil {
			return err
		}
		if h.HalfClose {
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				return err
			}
		}
		if h.LeaveNetns {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("leaving the network namespace: %w", err)
			}
		}
		fmt.Println("up", c.LocalAddr())
	}
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			var errno syscall.Errno
			if errors.As(err, &errno) {
				fmt.Println("end", unix.ErrnoName(errno))
			} else {
				fmt.Println("end eof")
			}
			return nil
		}
	}
}

// loopbackUp brings up the loopback of a new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading lo's flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	return nil
}
