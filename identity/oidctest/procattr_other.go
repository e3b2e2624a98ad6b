//go:build !linux

package oidctest

import "syscall"

// sysProcAttr is empty where Linux's parent-death signal does not exist:
// Close is then the only thing that stops Hydra.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
