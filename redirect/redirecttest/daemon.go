package redirecttest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Daemon is a server a test harness runs (PostgreSQL, sshd, Hydra): its
// output appended to a log file, its exit watched, and stopped by its own
// pid, never by name.
type Daemon struct {
	name    string
	logFile string
	logFrom int64 // the log's size when this run started
	cmd     *exec.Cmd
	done    chan struct{}
}

// ErrExited is wrapped by [Daemon.WaitReady] when the process exited
// before it was ready.
var ErrExited = errors.New("exited at start")

// StartDaemon starts cmd with its output appended to logFile (created
// 0600 if missing); name is what messages call it ("sshd"). The caller
// sets cmd's arguments, folder, environment and SysProcAttr.
func StartDaemon(name string, cmd *exec.Cmd, logFile string) (*Daemon, error) {
	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	from, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	d := &Daemon{name: name, logFile: logFile, logFrom: from, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// WaitReady calls ready every interval until it returns nil, the process
// exits (an error wrapping ErrExited, with its log since it started), or
// timeout passes (an error with ready's last error and the log's end).
func (d *Daemon) WaitReady(timeout, interval time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		select {
		case <-d.done:
			return fmt.Errorf("%s %w (%s):\n%s", d.name, ErrExited, d.cmd.ProcessState, d.LogSinceStart())
		default:
		}
		if last = ready(); last == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%s not ready within %s: %w\n%s", d.name, timeout, last, d.LogTail())
		}
		select {
		case <-d.done:
		case <-time.After(interval):
		}
	}
}

// Done is closed when the process has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Pid is the process's id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Stop ends the process: sig, then SIGKILL after grace, and returns once
// it has exited. A process that already exited is left alone.
func (d *Daemon) Stop(sig syscall.Signal, grace time.Duration) {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(grace):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// logTailBytes is how much of a log a failure message quotes.
const logTailBytes = 4000

// LogTail is the end of the log, for a failure message.
func (d *Daemon) LogTail() string { return LogTail(d.logFile) }

// LogSinceStart is what the process wrote to the log in this run (a log
// may hold earlier runs' output), cut to its end.
func (d *Daemon) LogSinceStart() string {
	b, _ := os.ReadFile(d.logFile)
	if int64(len(b)) >= d.logFrom {
		b = b[d.logFrom:]
	}
	return string(tail(b))
}

// LogTail is the end of the file at path, for a failure message; "" when
// it cannot be read.
func LogTail(path string) string {
	b, _ := os.ReadFile(path)
	return string(tail(b))
}

func tail(b []byte) []byte {
	if len(b) > logTailBytes {
		return b[len(b)-logTailBytes:]
	}
	return b
}

// PortTaken says whether a log says its process could not bind its port:
// someone took the port between a FreePort probe and the bind, and the
// harness may try another.
func PortTaken(log string) bool {
	l := strings.ToLower(log)
	return strings.Contains(l, "address already in use") || strings.Contains(l, "cannot bind any address") ||
		strings.Contains(l, "could not bind")
}

// FreePort is a TCP port on host that was free a moment ago.
func FreePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port on %s: %w", host, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Launched is a harness's Start: it runs launch for tb and closes what it
// launched when tb ends. An error wrapping unavailable (the machine lacks
// what the harness needs, as opposed to a start that failed) goes to
// Unavailable: a skip, or a failure under RequiredEnv; any other error
// fails tb. prefix starts failure messages ("pgtest").
func Launched[T io.Closer](tb testing.TB, prefix string, unavailable error, launch func() (T, error)) T {
	tb.Helper()
	v, err := launch()
	UnavailableIf(tb, err, unavailable)
	if err != nil {
		tb.Fatalf("%s: %v", prefix, err)
	}
	tb.Cleanup(func() {
		if err := v.Close(); err != nil {
			tb.Errorf("%s: %v", prefix, err)
		}
	})
	return v
}

// UnavailableIf passes err to Unavailable when it wraps unavailable, a
// harness's "this machine cannot run it" error, and does nothing
// otherwise.
func UnavailableIf(tb testing.TB, err, unavailable error) {
	tb.Helper()
	if errors.Is(err, unavailable) {
		Unavailable(tb, unavailable.Error(), strings.TrimPrefix(err.Error(), unavailable.Error()+": "))
	}
}
