package oidctest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// BinaryEnv names the Hydra binary; make test sets it to bin/hydra.
const BinaryEnv = "INTERLOCK_HYDRA"

// ErrUnavailable is returned by [Launch] when this machine cannot run
// Hydra at all (no binary), as opposed to a Hydra that failed to start.
// [Start] skips the test on it.
var ErrUnavailable = errors.New("cannot start Ory Hydra")

// errPortTaken is a Hydra that could not bind a port: someone took the
// free port between the probe and Hydra.
var errPortTaken = errors.New("port taken")

// Timing of start and stop.
const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 5 * time.Second
)

// DefaultAccessTokenTTL is the lifetime of access tokens when
// Options.AccessTokenTTL is zero.
const DefaultAccessTokenTTL = time.Hour

// Binary is the Hydra binary to run: $INTERLOCK_HYDRA, else bin/hydra
// below the repository root (the nearest folder up from the working
// directory that holds go.mod). Errors wrap ErrUnavailable.
func Binary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if err := executable(p); err != nil {
			return "", fmt.Errorf("%w: %s=%s: %w", ErrUnavailable, BinaryEnv, p, err)
		}
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("%w: %w (or set %s)", ErrUnavailable, err, BinaryEnv)
	}
	p := filepath.Join(root, "bin", "hydra")
	if err := executable(p); err != nil {
		return "", fmt.Errorf("%w: %w; build it with `make bin/hydra` (or set %s)", ErrUnavailable, err, BinaryEnv)
	}
	return p, nil
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("no Hydra binary: %w", err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or above it")
		}
		dir = parent
	}
}

// IssuerURL is the issuer of a provider whose public port is port; a test
// that configures a verifier before its provider runs uses it with
// Options.Port.
func IssuerURL(port int) string {
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/"
}

// host is the loopback address Hydra listens on.
const host = "127.0.0.1"

// Launch starts a provider outside a test (a demo, a tool). The caller
// owns it and must [Provider.Close] it; on error nothing is left behind.
func Launch(o Options) (*Provider, error) {
	if o.AccessTokenTTL == 0 {
		o.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if o.AccessTokenTTL < time.Millisecond {
		return nil, fmt.Errorf("access token TTL %s is shorter than a millisecond", o.AccessTokenTTL)
	}
	if o.Port < 0 || o.Port > 65535 {
		return nil, fmt.Errorf("port %d is out of range", o.Port)
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "oidctest-")
	if err != nil {
		return nil, fmt.Errorf("making the provider folder: %w", err)
	}
	p := &Provider{
		dir:     dir,
		logFile: filepath.Join(dir, "hydra.log"),
		http:    &http.Client{Timeout: 10 * time.Second},
	}
	if err := p.launch(bin, o); err != nil {
		return nil, errors.Join(err, p.Close())
	}
	return p, nil
}

func (p *Provider) launch(bin string, o Options) error {
	hookKey, err := randomHex(24)
	if err != nil {
		return err
	}
	if p.hook, err = startTokenHook("Bearer " + hookKey); err != nil {
		return err
	}
	secret, err := randomHex(32)
	if err != nil {
		return err
	}
	// A free port can be taken between the probe and Hydra binding it;
	// try a few times.
	for attempt := 0; ; attempt++ {
		p.publicPort, p.adminPort = o.Port, 0
		if p.publicPort == 0 {
			if p.publicPort, err = redirecttest.FreePort(host); err != nil {
				return err
			}
		}
		if p.adminPort, err = redirecttest.FreePort(host); err != nil {
			return err
		}
		if err := p.writeConfig(o, secret, hookKey); err != nil {
			return err
		}
		err := p.start(bin)
		if err == nil {
			return nil
		}
		if attempt == 4 || !errors.Is(err, errPortTaken) {
			return err
		}
	}
}

// writeConfig writes Hydra's configuration file. JSON is YAML, so the
// file is named .yaml and written with encoding/json.
func (p *Provider) writeConfig(o Options, secret, hookKey string) error {
	cfg := map[string]any{
		"dsn":     "memory",
		"log":     map[string]any{"level": "warn"},
		"secrets": map[string]any{"system": []string{secret}},
		"urls":    map[string]any{"self": map[string]any{"issuer": p.Issuer()}},
		"serve": map[string]any{
			"public": map[string]any{"host": host, "port": p.publicPort},
			"admin":  map[string]any{"host": host, "port": p.adminPort},
		},
		"strategies": map[string]any{"access_token": "jwt"},
		// Hydra's durations are digits and a unit, nothing fractional.
		"ttl": map[string]any{"access_token": strconv.FormatInt(o.AccessTokenTTL.Milliseconds(), 10) + "ms"},
		"oauth2": map[string]any{
			"allowed_top_level_claims": []string{"groups"},
			"mirror_top_level_claims":  false,
			"token_hook": map[string]any{
				"url": p.hook.url(),
				"auth": map[string]any{"type": "api_key", "config": map[string]any{
					"in": "header", "name": "Authorization", "value": "Bearer " + hookKey,
				}},
			},
		},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	// 0600: it holds the system secret.
	if err := os.WriteFile(p.configFile(), b, 0o600); err != nil {
		return fmt.Errorf("writing Hydra's configuration: %w", err)
	}
	return nil
}

func (p *Provider) configFile() string { return filepath.Join(p.dir, "hydra.yaml") }

// start runs Hydra and waits until both its listeners answer ready.
func (p *Provider) start(bin string) error {
	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out", "--config", p.configFile())
	cmd.Dir = p.dir
	// Only what a Go program needs: every other variable could be a Hydra
	// setting overriding the file.
	cmd.Env = []string{"HOME=" + p.dir, "TMPDIR=" + p.dir, "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = sysProcAttr()
	d, err := redirecttest.StartDaemon("hydra", cmd, p.logFile)
	if err != nil {
		return err
	}
	p.daemon = d
	err = d.WaitReady(readyTimeout, 25*time.Millisecond, p.ready)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redirecttest.ErrExited) && redirecttest.PortTaken(d.LogSinceStart()):
		return fmt.Errorf("hydra could not listen on %s or %s: %w", p.PublicURL(), p.AdminURL(), errPortTaken)
	}
	p.stop()
	return fmt.Errorf("hydra on %s: %w", p.Issuer(), err)
}

// ready asks both listeners' /health/ready.
func (p *Provider) ready() error {
	for _, base := range []string{p.PublicURL(), p.AdminURL()} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/health/ready", nil)
		if err != nil {
			cancel()
			return err
		}
		resp, err := p.http.Do(req)
		cancel()
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s/health/ready: %s", base, resp.Status)
		}
	}
	return nil
}

// stop ends the Hydra this provider started, by its pid: SIGTERM, then
// SIGKILL after stopTimeout. Hydra forks nothing, so the one process is
// all there is.
func (p *Provider) stop() {
	if p.daemon != nil {
		p.daemon.Stop(syscall.SIGTERM, stopTimeout)
	}
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making a secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}
