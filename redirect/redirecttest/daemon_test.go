package redirecttest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func startShell(t *testing.T, log, script string) *Daemon {
	t.Helper()
	d, err := StartDaemon("shell", exec.Command("/bin/sh", "-c", script), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(syscall.SIGKILL, time.Second) })
	return d
}

// A daemon is ready when its check passes, and stops on the signal it is
// given.
func TestDaemonReadyAndStop(t *testing.T) {
	log := filepath.Join(t.TempDir(), "d.log")
	d := startShell(t, log, `echo listening; exec sleep 60`)
	err := d.WaitReady(10*time.Second, 5*time.Millisecond, func() error {
		if !strings.Contains(LogTail(log), "listening") {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.Pid() <= 0 || syscall.Kill(d.Pid(), 0) != nil {
		t.Fatalf("pid %d is not running", d.Pid())
	}
	start := time.Now()
	d.Stop(syscall.SIGTERM, 10*time.Second)
	select {
	case <-d.Done():
	default:
		t.Fatal("Stop returned before the process exited")
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("SIGTERM took %s: the grace period's kill, not the signal, ended it", time.Since(start))
	}
}

// A process that exits at start is reported with what it wrote in this
// run, not earlier runs' output in the same log, so a bind failure is told
// from another failure.
func TestDaemonExitedAtStart(t *testing.T) {
	log := filepath.Join(t.TempDir(), "d.log")
	never := func() error { return errors.New("not yet") }

	d := startShell(t, log, `echo "bind: Address already in use" >&2; exit 1`)
	err := d.WaitReady(10*time.Second, 5*time.Millisecond, never)
	if !errors.Is(err, ErrExited) || !PortTaken(d.LogSinceStart()) {
		t.Fatalf("WaitReady: %v; log since start %q; want ErrExited and a taken port", err, d.LogSinceStart())
	}

	d = startShell(t, log, `echo "FATAL: bad setting" >&2; exit 2`)
	err = d.WaitReady(10*time.Second, 5*time.Millisecond, never)
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "bad setting") || !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("WaitReady: %v; want ErrExited with the log and the status", err)
	}
	if PortTaken(d.LogSinceStart()) || strings.Contains(err.Error(), "already in use") {
		t.Fatalf("the second run's report includes the first run's output: %v", err)
	}
	if !strings.Contains(LogTail(log), "already in use") {
		t.Fatal("the log lost the first run's output")
	}
}

// A daemon that never gets ready fails after the timeout with the check's
// last error.
func TestDaemonNotReady(t *testing.T) {
	d := startShell(t, filepath.Join(t.TempDir(), "d.log"), `exec sleep 60`)
	err := d.WaitReady(100*time.Millisecond, 10*time.Millisecond, func() error { return os.ErrDeadlineExceeded })
	if err == nil || errors.Is(err, ErrExited) || !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "not ready within") {
		t.Fatalf("WaitReady: %v; want a timeout wrapping the check's error", err)
	}
}
