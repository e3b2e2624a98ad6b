package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/postgres"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
	sshproxy "github.com/interlock-dev/interlock/proxy/ssh"
	"github.com/interlock-dev/interlock/proxy/sshca"
	"github.com/interlock-dev/interlock/proxy/tcp"
	"github.com/interlock-dev/interlock/proxy/tlsca"
	"github.com/interlock-dev/interlock/record"
)

// handlers builds one protocol handler per protocol the configuration
// uses, with the policy, the recordings store, the agent-facing CA and the
// command metrics they share.
func (g *gateway) handlers() (map[string]proxy.Handler, error) {
	cfg := g.cfg
	pol, st, err := g.loadPolicy(cfg)
	if err != nil {
		return nil, err
	}
	g.policy = policy.NewLive(pol)
	g.policyState = st
	g.reloads = newReloadMetrics(g.metrics)
	g.reloads.lastSuccess.Set(float64(st.Loaded.UnixNano()) / 1e9)
	commands, err := proxy.NewCommandMetrics(g.metrics)
	if err != nil {
		return nil, err
	}
	store, err := record.OpenStore(recordingsDir(cfg))
	if err != nil {
		return nil, fmt.Errorf("opening recordings: %w", err)
	}
	store.Strict = cfg.Gateway.StrictRecording
	g.recordings = store
	handlers := map[string]proxy.Handler{"tcp": tcp.New(g.metrics)}

	pgTargets := map[uint32]postgres.Target{}
	for i := range cfg.Targets {
		t := &cfg.Targets[i]
		if t.Protocol != "postgres" {
			continue
		}
		u := t.Upstream
		pgTargets[t.ID()] = postgres.Target{
			Name:         t.Name,
			User:         u.User,
			PasswordFile: u.PasswordFile,
			Database:     u.Database,
			TLS:          u.TLS,
			CAFile:       u.CAFile,
			ServerName:   serverName(t),
			AgentTLS:     t.AgentTLSEnabled(),
		}
	}
	if len(pgTargets) > 0 {
		ca, err := tlsca.LoadOrCreate(filepath.Join(cfg.Gateway.StateDir, "ca"))
		if err != nil {
			return nil, fmt.Errorf("loading the agent-facing CA: %w", err)
		}
		pg, err := postgres.New(postgres.Options{
			Targets:    pgTargets,
			Policy:     g.policy,
			Classifier: sqlfacts.NewClassifier(8192),
			Recordings: store,
			CA:         ca,
			Commands:   commands,
			Logger:     g.logger,
			Rewriter:   postgres.NewMaskRewriter,
			Login:      g.login,
			Reviewer:   gatewayReviewer{g},

			LargeMessageMemory:      int64(cfg.Gateway.LargeMessageMemoryMiB) << 20,
			RetainedStatementMemory: int64(cfg.Gateway.PreparedStatementMemoryMiB) << 20,
		})
		if err != nil {
			return nil, err
		}
		handlers["postgres"] = pg
	}

	sshTargets := map[uint32]sshproxy.Target{}
	for i := range cfg.Targets {
		t := &cfg.Targets[i]
		if t.Protocol != "ssh" {
			continue
		}
		u := t.Upstream
		st := sshproxy.Target{
			Name:           t.Name,
			Address:        t.Address,
			User:           u.User,
			PrivateKeyFile: u.PrivateKeyFile,
			PasswordFile:   u.PasswordFile,
			KnownHosts:     u.KnownHosts,
			HostKey:        u.HostKey,
		}
		if t.AgentHostKey {
			st.AgentHostKeyFile = agentHostKeyFile(cfg, t.Name)
			if err := os.MkdirAll(filepath.Dir(st.AgentHostKeyFile), 0o700); err != nil {
				return nil, fmt.Errorf("creating the agent host key folder: %w", err)
			}
		}
		sshTargets[t.ID()] = st
	}
	if len(sshTargets) > 0 {
		ca, err := sshca.LoadOrCreate(sshCADir(cfg))
		if err != nil {
			return nil, fmt.Errorf("loading the SSH CA: %w", err)
		}
		h, err := sshproxy.New(sshproxy.Options{
			Targets:    sshTargets,
			Policy:     g.policy,
			Recordings: store,
			CA:         ca,
			Commands:   commands,
			Logger:     g.logger,
			Login:      g.login,
			Reviewer:   gatewayReviewer{g},
		})
		if err != nil {
			return nil, err
		}
		handlers["ssh"] = h
	}
	return handlers, nil
}

// sshCADir is the gateway's SSH CA folder under the state folder.
func sshCADir(cfg *config.Config) string { return filepath.Join(cfg.Gateway.StateDir, "ssh-ca") }

// agentHostKeyFile is a target's own agent-facing host key.
func agentHostKeyFile(cfg *config.Config, target string) string {
	return filepath.Join(cfg.Gateway.StateDir, "ssh-host-keys", target)
}

// serverName is the name verify-full checks: the configured one, else the
// target's hostname ("" lets the handler use the dialled IP).
func serverName(t *config.Target) string {
	if t.Upstream.ServerName != "" {
		return t.Upstream.ServerName
	}
	return t.Host
}
