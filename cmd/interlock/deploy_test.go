package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
)

// The systemd unit runs with ProtectSystem=strict, which leaves /run
// read-only: the folder of the default login socket must be the unit's
// RuntimeDirectory, and searchable by the workloads that log in.
func TestServiceUnitProvidesLoginSocketFolder(t *testing.T) {
	f, err := os.Open("../../deploy/interlock.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && !strings.HasPrefix(k, "#") {
			keys[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(config.DefaultLoginSocket)
	if got := "/run/" + keys["RuntimeDirectory"]; got != dir {
		t.Errorf("RuntimeDirectory makes %s; the login socket's folder is %s", got, dir)
	}
	mode, err := strconv.ParseUint(keys["RuntimeDirectoryMode"], 8, 32)
	if err != nil {
		t.Fatalf("RuntimeDirectoryMode %q: %v", keys["RuntimeDirectoryMode"], err)
	}
	if mode&0o001 == 0 || mode&0o022 != 0 {
		t.Errorf("RuntimeDirectoryMode %04o: workloads must be able to reach the socket (o+x) and not change the folder", mode)
	}
}
