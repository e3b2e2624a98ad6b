package sshtest

import (
	"bytes"
	"strconv"
)

// parentOf reads the parent pid from a /proc/<pid>/stat line,
// "pid (comm) state ppid ...". comm is whatever name a process gave
// itself, parentheses and spaces included, so the fields start after the
// last ')'.
func parentOf(stat []byte) (int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	fields := bytes.Fields(stat[i+1:])
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(string(fields[1]))
	if err != nil || ppid < 0 {
		return 0, false
	}
	return ppid, true
}

// stateOf reads the state letter (R, S, Z...) from a /proc/<pid>/stat
// line.
func stateOf(stat []byte) (byte, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	fields := bytes.Fields(stat[i+1:])
	if len(fields) < 1 || len(fields[0]) != 1 {
		return 0, false
	}
	return fields[0][0], true
}
