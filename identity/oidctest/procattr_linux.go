package oidctest

import "syscall"

// sysProcAttr puts Hydra in a process group of its own, so that signals
// meant for the test's group do not reach it, and kills it when the test
// binary dies, so that a crashed test run leaves no Hydra behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
