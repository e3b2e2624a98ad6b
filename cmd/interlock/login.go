package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/proxy"
)

// tokenVerifier checks a token against one configured issuer (Verify) or
// whichever configured issuer issued it (VerifyAny).
type tokenVerifier interface {
	Verify(ctx context.Context, issuer, raw string) (identity.Identity, time.Time, error)
	VerifyAny(ctx context.Context, raw string) (identity.Identity, time.Time, error)
}

// setUpLogins creates the logins of OIDC workloads and the handlers' login
// hook; the socket is served by serveLogin once the data path is up.
func (g *gateway) setUpLogins() {
	g.logins = identity.NewLogins(func(l identity.Login) {
		n := len(g.server.End(func(s proxy.SessionInfo) bool { return s.Workload == l.Workload }, proxy.ErrIdentityExpired))
		g.logger.Info("workload's OIDC login expired", "workload", l.Workload, "subject", l.Identity.Subject, "sessions_ended", n)
	})
	g.workloads.UseLogins(g.logins)
	g.loginLimit = identity.NewLoginLimiter(10, 6*time.Second)
}

// login is the handlers' proxy.LoginFunc: a token given as a protocol's
// password, verified against the caller's issuer and bound like a login.
func (g *gateway) login(ctx context.Context, caller identity.Caller, token, via string) (identity.Identity, time.Time, error) {
	if g.verifier == nil {
		return identity.Identity{}, time.Time{}, errors.New("no OIDC issuer is configured")
	}
	id, expires, err := g.verifyLogin(ctx, caller.Workload, caller.NeedsLogin, strings.TrimSpace(token))
	if err != nil {
		return identity.Identity{}, time.Time{}, err
	}
	if err := g.logins.Bind(identity.Login{Workload: caller.Workload, Identity: id, Expires: expires, Via: via, PID: caller.PID}); err != nil {
		return identity.Identity{}, time.Time{}, err
	}
	g.logger.Info("workload logged in", "workload", caller.Workload, "via", via, "subject", id.Subject, "issuer", id.Issuer, "expires", expires)
	return id, expires, nil
}

// verifyLogin verifies a workload's token, slowing down a workload that
// keeps presenting bad ones (each costs a signature check, and an unknown
// key id makes the verifier refetch the issuer's keys).
func (g *gateway) verifyLogin(ctx context.Context, workload, issuer, raw string) (identity.Identity, time.Time, error) {
	if g.verifier == nil {
		return identity.Identity{}, time.Time{}, errors.New("no OIDC issuer is configured")
	}
	if err := g.loginLimit.Check(workload); err != nil {
		return identity.Identity{}, time.Time{}, err
	}
	id, expires, err := g.verifier.Verify(ctx, issuer, raw)
	if err != nil {
		g.loginLimit.Failed(workload)
		return identity.Identity{}, time.Time{}, err
	}
	return id, expires, nil
}

// serveLogin listens on the login socket (mode 0666: any local process may
// try; SO_PEERCRED says who it is) when some workload needs a login.
func (g *gateway) serveLogin(ctx context.Context) error {
	path := g.cfg.Gateway.LoginSocket
	needed := false
	for _, w := range g.cfg.Workloads {
		needed = needed || w.Identity.OIDC != ""
	}
	if !needed {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("login socket: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("login socket: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return fmt.Errorf("login socket: %w", err)
	}
	srv := &identity.LoginServer{
		Workload: g.workloadOfProcess,
		Verify: func(ctx context.Context, w identity.Workload, raw string) (identity.Identity, time.Time, error) {
			return g.verifyLogin(ctx, w.Name, w.OIDC, raw)
		},
		Logins: g.logins,
		Logger: g.logger,
	}
	go func() {
		if err := srv.Serve(ctx, ln); err != nil {
			g.logger.Error("login socket stopped", "error", err)
		}
		os.Remove(path)
	}()
	g.logger.Info("login socket up", "path", path)
	return nil
}

// removeStaleSocket removes a socket a previous gateway left, and refuses
// to remove anything else.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("login socket: %w", err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("login socket: %s exists and is not a socket", path)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("login socket: %s is in use (is another gateway running?)", path)
	}
	return os.Remove(path)
}

// workloadOfProcess finds the configured workload of a local process from
// its cgroup.
func (g *gateway) workloadOfProcess(pid uint32) (identity.Workload, error) {
	if g.watcher == nil {
		return identity.Workload{}, errors.New("workloads are not resolved yet")
	}
	path, err := identity.ProcessCgroup(pid)
	if err != nil {
		return identity.Workload{}, err
	}
	b, ok := identity.MatchCgroupPath(path, g.watcher.Current())
	if !ok {
		return identity.Workload{}, fmt.Errorf("its cgroup %s belongs to no workload", path)
	}
	w, ok := g.workloads.Lookup(b.WorkloadID)
	if !ok {
		return identity.Workload{}, fmt.Errorf("workload id %d: %w", b.WorkloadID, identity.ErrUnknownWorkload)
	}
	return w, nil
}

func newLoginCommand() *cobra.Command {
	var path, tokenFile string
	cmd := &cobra.Command{
		Use:   "login [--token-file F]",
		Short: "Bind an OIDC token's identity to the calling workload",
		Long: `Presents an OIDC token (from --token-file, or stdin) on the gateway's local
login socket. The gateway finds the calling process's workload from its cgroup,
verifies the token against the workload's issuer (identity.oidc in the
configuration), and serves the workload with the token's identity until the
token expires. Run it from the workload itself (the same cgroup).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			var raw []byte
			if tokenFile != "" {
				raw, err = os.ReadFile(tokenFile)
			} else {
				raw, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), identity.MaxTokenSize+1))
			}
			if err != nil {
				return fmt.Errorf("reading the token: %w", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			r, err := identity.LoginAt(ctx, cfg.Gateway.LoginSocket, strings.TrimSpace(string(raw)))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "workload %s is %s (issuer %s, groups %s) until %s\n",
				r.Workload, r.Subject, r.Issuer, strings.Join(r.Groups, ","), r.Expires.Local().Format(time.RFC3339))
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the token (default: read stdin)")
	return cmd
}
