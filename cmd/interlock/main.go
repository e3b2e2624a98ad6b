// Command interlock is the gateway that sits between AI agents and the
// infrastructure they reach. This package only wires the other packages
// together; see DESIGN.md for the architecture.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// defaultConfig is where the systemd unit and the DaemonSet put the file.
const defaultConfig = "/etc/interlock/interlock.yaml"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand(os.Stdout, os.Stderr).ExecuteContext(ctx); err != nil {
		// An exitError's command has already said what went wrong.
		var exit exitError
		if errors.As(err, &exit) {
			os.Exit(int(exit))
		}
		fmt.Fprintln(os.Stderr, "interlock:", err)
		os.Exit(1)
	}
}

// exitError carries a specific exit status out of a command.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "interlock",
		Short: "Control point between AI agents and the databases and hosts they reach",
		Long: `interlock sends the connections that selected workloads open to PostgreSQL,
SSH and other TCP targets through a local gateway (eBPF cgroup hooks; the
agent is not reconfigured), decides per command, records every session and
exports Prometheus metrics.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newGatewayCommand(),
		newCheckCommand(),
		newStatusCommand(),
		newSessionsCommand(),
		newCACommand(),
		newLoginCommand(),
		newApprovalsCommand(),
		newReloadCommand(),
		newUninstallCommand(),
		newVersionCommand(),
	)
	return root
}

func addConfigFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVarP(path, "config", "c", defaultConfig, "configuration file")
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			goVersion := "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
			}
			fmt.Fprintf(cmd.OutOrStdout(), "interlock %s (%s)\n", version, goVersion)
		},
	}
}
