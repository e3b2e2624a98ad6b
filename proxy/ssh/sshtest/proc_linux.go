package sshtest

import (
	"os"
	"strconv"
	"syscall"
)

// sysProcAttr puts sshd in a process group of its own, so that stopping it
// touches nothing else, and kills it when the test binary dies, so that a
// crashed test run leaves no sshd behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// descendants are the pids below root in the process tree, from /proc.
func descendants(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited since the listing
		}
		if ppid, ok := parentOf(stat); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// running says whether pid has not exited yet. A zombie has exited: the
// connection processes Close kills are reparented to init, which may be
// slow to reap them, or (in a container) never.
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	state, ok := stateOf(stat)
	return !ok || (state != 'Z' && state != 'X')
}
