//go:build unix && !linux

package sshtest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// descendants finds nothing without /proc: Close then stops sshd only,
// and its connection processes end with their clients.
func descendants(int) []int { return nil }

func running(int) bool { return false }
