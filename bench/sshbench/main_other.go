//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "sshbench: the SSH benchmark runs on Linux only (it reads CPU times from /proc)")
	os.Exit(1)
}
