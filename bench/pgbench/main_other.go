//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "pgbench: the PostgreSQL benchmark runs on Linux only (the gateway's process attribution reads /proc)")
	os.Exit(1)
}
