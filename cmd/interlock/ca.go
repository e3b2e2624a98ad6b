package main

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/proxy/sshca"
)

func newCACommand() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Print what agents must trust to accept the gateway's SSH host identity",
	}
	cmd.PersistentFlags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	var target string
	known := &cobra.Command{
		Use:   "ssh-known-hosts [PATTERN...]",
		Short: "Print the known_hosts line that makes agents trust the gateway's SSH CA",
		Long: `Prints the "@cert-authority" line for the gateway's SSH CA (created in
<state_dir>/ssh-ca on first use). Add it to the agents' known_hosts; it is the
one trust change the agent side needs. PATTERNs limit the hosts it vouches for
(default: the hosts of the configured ssh targets).

With --target NAME, prints instead a plain known_hosts line for that target's
own agent-facing host key (targets with agent_host_key: true), for clients
that cannot use certificates.`,
		RunE: func(cmd *cobra.Command, patterns []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if target != "" {
				t := cfg.Target(target)
				if t == nil || t.Protocol != "ssh" {
					return fmt.Errorf("--target: no ssh target %q in %s", target, path)
				}
				if !t.AgentHostKey {
					return fmt.Errorf("--target: target %q has no agent_host_key: true", target)
				}
				signer, err := sshca.LoadOrCreateHostKey(agentHostKeyFile(cfg, t.Name))
				if err != nil {
					return err
				}
				line, err := sshca.KnownHostsLineForKey([]string{t.Address}, signer.PublicKey())
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), line)
				return nil
			}
			if len(patterns) == 0 {
				for _, t := range cfg.Targets {
					if t.Protocol != "ssh" {
						continue
					}
					if host, _, err := net.SplitHostPort(t.Address); err == nil {
						patterns = append(patterns, host)
					}
				}
			}
			ca, err := sshca.LoadOrCreate(sshCADir(cfg))
			if err != nil {
				return err
			}
			line, err := ca.KnownHostsLine(patterns...)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)
			return nil
		},
	}
	known.Flags().StringVar(&target, "target", "", "print the known_hosts line of this target's own host key instead")
	cmd.AddCommand(known)
	return cmd
}
