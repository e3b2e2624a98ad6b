// Command demo is what `make demo` runs: the interlock gateway with
// demo.yaml, a TCP echo target on 127.0.0.2:7000, and a scripted agent
// started inside the workload's cgroup that dials the target (redirected
// through the gateway) and a host it may not reach (refused by the kernel).
// It prints what the agent saw, `interlock status` and the metrics, then
// stops the gateway and removes the data path again. It needs root.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/identity"
)

func main() {
	bin := flag.String("interlock", "bin/interlock", "the interlock binary")
	cfgPath := flag.String("config", "docs/demo/demo.yaml", "demo configuration")
	agent := flag.Bool("agent", false, "internal: run as the scripted agent")
	flag.Parse()
	if *agent {
		os.Exit(runAgent())
	}
	if err := run(*bin, *cfgPath); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n\033[1m==> "+format+"\033[0m\n", args...)
}

func run(bin, cfgPath string) error {
	if os.Geteuid() != 0 {
		return errors.New("the demo loads eBPF programs and creates cgroups: run it as root (sudo make demo)")
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	root, err := identity.CgroupV2Root()
	if err != nil {
		return err
	}
	agentCgroup := filepath.Join(root, cfg.Workloads[0].Match.Cgroup)
	defer os.Remove(agentCgroup)
	defer os.Remove(filepath.Dir(agentCgroup))
	defer os.RemoveAll(filepath.Dir(cfg.Gateway.StateDir))

	step("echo target listening on %s (a stand-in for a database or host)", cfg.Targets[0].Address)
	echo, err := net.Listen("tcp", cfg.Targets[0].Address)
	if err != nil {
		return err
	}
	defer echo.Close()
	go serveEcho(echo)

	step("starting the gateway: %s gateway --config %s", bin, cfgPath)
	gw := exec.Command(bin, "gateway", "--config", cfgPath)
	gw.Stdout, gw.Stderr = prefixed("  gateway | "), prefixed("  gateway | ")
	if err := gw.Start(); err != nil {
		return err
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = gw.Process.Signal(syscall.SIGTERM)
			_ = gw.Wait()
		}
	}
	defer func() {
		stop()
		out, _ := exec.Command(bin, "uninstall", "--config", cfgPath).CombinedOutput()
		fmt.Print("  " + string(out))
	}()
	if err := waitReady("http://"+cfg.Gateway.Admin+"/readyz", 15*time.Second); err != nil {
		return err
	}

	step("the agent runs inside cgroup %s and uses plain connect(2)", cfg.Workloads[0].Match.Cgroup)
	if err := startAgent(agentCgroup); err != nil {
		return err
	}

	step("interlock status")
	if err := runShow(bin, "status", "--config", cfgPath); err != nil {
		return err
	}

	step("metrics on http://%s/metrics (interlock_*)", cfg.Gateway.Admin)
	if err := showMetrics("http://" + cfg.Gateway.Admin + "/metrics"); err != nil {
		return err
	}

	step("stopping the gateway and removing the data path")
	stop()
	return nil
}

func startAgent(cgroupDir string) error {
	dir, err := os.Open(cgroupDir)
	if err != nil {
		return fmt.Errorf("the gateway should have created %s: %w", cgroupDir, err)
	}
	defer dir.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-agent")
	cmd.Stdout, cmd.Stderr = prefixed("  agent   | "), prefixed("  agent   | ")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	return cmd.Run()
}

// runAgent is the scripted agent: an ordinary client that knows nothing of
// interlock.
func runAgent() int {
	cg, _ := identity.ProcessCgroup(uint32(os.Getpid()))
	fmt.Printf("pid %d in cgroup %s\n", os.Getpid(), cg)

	fmt.Println("dialling 127.0.0.2:7000 (a target)")
	c, err := net.DialTimeout("tcp", "127.0.0.2:7000", 5*time.Second)
	if err != nil {
		fmt.Println("  unexpected:", err)
		return 1
	}
	fmt.Printf("  connected; getpeername says %s (the address dialled)\n", c.RemoteAddr())
	fmt.Fprintln(c, "hello")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil {
		fmt.Println("  unexpected:", err)
		return 1
	}
	fmt.Printf("  target answered %q — it saw the gateway's address, not the agent's %s\n", strings.TrimSpace(line), c.LocalAddr())

	fmt.Println("dialling 127.0.0.3:7100 (not a target, egress default deny)")
	_, err = net.DialTimeout("tcp", "127.0.0.3:7100", 5*time.Second)
	if !errors.Is(err, syscall.EPERM) {
		fmt.Println("  unexpected:", err)
		return 1
	}
	fmt.Println("  refused by the kernel:", err)
	return 0
}

func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			fmt.Fprintf(c, "echo from target: %s (client %s)\n", strings.TrimSpace(line), c.RemoteAddr())
		}()
	}
}

func waitReady(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gateway not ready after %s", timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func runShow(bin string, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = prefixed("  "), prefixed("  ")
	return cmd.Run()
}

func showMetrics(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "interlock_") {
			fmt.Println("  " + sc.Text())
		}
	}
	return sc.Err()
}

// prefixed writes each line with a prefix, so the gateway's log and the
// agent's output stay apart.
func prefixed(prefix string) io.Writer {
	r, w := io.Pipe()
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			fmt.Println(prefix + sc.Text())
		}
	}()
	return w
}
