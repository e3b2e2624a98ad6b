package pgtest

import "syscall"

// sysProcAttr kills the server when the test binary dies, so a crashed
// test run leaves no postgres behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
