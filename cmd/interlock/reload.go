package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
)

// policyState is the policy in force, for status and the reload's answer.
type policyState struct {
	// SHA256 is of the configuration's policy section (its rules, masks
	// and tests as loaded), so that two gateways, or a gateway and a file,
	// can be compared.
	SHA256 string    `json:"sha256"`
	Loaded time.Time `json:"loaded"`
	Rules  int       `json:"rules"`
	Masks  int       `json:"masks"`
	Tests  int       `json:"tests"`
}

// reloadAnswer is what POST /api/v1/reload answers.
type reloadAnswer struct {
	Policy      policyState `json:"policy"`
	AdminTokens *int        `json:"admin_tokens,omitempty"` // reloaded, when a tokens file is configured
}

// reloadMetrics follow the gateway's reloads.
type reloadMetrics struct {
	total       *prometheus.CounterVec // {result}
	successful  prometheus.Gauge
	lastSuccess prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlock_config_reloads_total",
			Help: "Reloads of the configuration's policy (SIGHUP or POST /api/v1/reload), by result: success or failure (the policy in force stayed).",
		}, []string{"result"}),
		successful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "interlock_config_last_reload_successful",
			Help: "1 when the last reload succeeded (or there was none), 0 when it failed and the policy in force is not the file's.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "interlock_config_last_reload_success_timestamp_seconds",
			Help: "When the policy in force was loaded (start-up or the last successful reload), in Unix seconds.",
		}),
	}
	reg.MustRegister(m.total, m.successful, m.lastSuccess)
	m.total.WithLabelValues("success")
	m.total.WithLabelValues("failure")
	m.successful.Set(1)
	return m
}

// loadPolicy compiles cfg's policy for the gateway: with its logger (a
// rule that fails at run time is logged as it denies) and its metrics.
func (g *gateway) loadPolicy(cfg *config.Config) (*policy.Policy, policyState, error) {
	pol, err := policy.Compile(cfg.Policy, cfg.PolicyEnv(), policy.Options{Logger: g.logger})
	if err != nil {
		return nil, policyState{}, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	if err := pol.Register(g.metrics); err != nil {
		return nil, policyState{}, err
	}
	return pol, policyState{
		SHA256: policyDigest(cfg.Policy),
		Loaded: time.Now(),
		Rules:  len(cfg.Policy.Rules),
		Masks:  len(cfg.Policy.Masks),
		Tests:  len(cfg.Policy.Tests),
	}, nil
}

// policyDigest is the SHA-256 of a policy section as loaded (not of its
// text: comments and layout do not count).
func policyDigest(c policy.Config) string {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // plain strings, slices and structs
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// short is a digest's first 12 digits, as printed.
func short(digest string) string { return digest[:min(12, len(digest))] }

// notifyReloads catches SIGHUP from the gateway's start (its default
// action would end the process); watchReloads acts on it once the policy
// is loaded, until stop is closed.
func notifyReloads() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

func (g *gateway) watchReloads(hup chan os.Signal, stop <-chan struct{}) {
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-stop:
				return
			case <-hup:
				g.reload("SIGHUP") // logged
			}
		}
	}()
}

// reload re-reads the configuration file the gateway started with and
// puts its policy in force, and re-reads the admin tokens file. Each part
// that fails keeps what is in force, and the error says so. A reload
// changes the policy only: a file whose other sections differ from the
// running configuration is refused whole, so that no change is half
// applied (a target removed from the file, say, would still be served,
// without the rules that named it). A policy whose own tests fail is
// refused too.
func (g *gateway) reload(via string) (reloadAnswer, error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	var ans reloadAnswer
	var errs []error
	if g.tokens != nil {
		if err := g.tokens.Reload(); err != nil {
			g.logger.Error("reloading admin tokens; keeping the old set", "via", via, "error", err)
			errs = append(errs, fmt.Errorf("admin tokens not reloaded, the old set stays: %w", err))
		} else {
			n := g.tokens.Len()
			ans.AdminTokens = &n
			g.logger.Info("admin tokens reloaded", "via", via, "tokens", n)
		}
	}
	st, err := g.reloadPolicy()
	if err == nil && len(errs) > 0 {
		// The policy part succeeded: say so next to what did not.
		errs = append(errs, fmt.Errorf("the policy was reloaded (sha256 %s)", st.SHA256))
	}
	if err != nil {
		g.reloads.total.WithLabelValues("failure").Inc()
		g.reloads.successful.Set(0)
		g.logger.Error("reloading the policy; the policy in force stays", "via", via, "config", g.cfg.Path, "error", err)
		errs = append(errs, fmt.Errorf("policy not reloaded, the policy in force (sha256 %s) stays: %w", g.policyInfo().SHA256, err))
		ans.Policy = g.policyInfo()
		return ans, errors.Join(errs...)
	}
	g.reloads.total.WithLabelValues("success").Inc()
	g.reloads.successful.Set(1)
	g.reloads.lastSuccess.Set(float64(st.Loaded.UnixNano()) / 1e9)
	g.logger.Info("policy reloaded", "via", via, "config", g.cfg.Path, "sha256", st.SHA256, "rules", st.Rules, "masks", st.Masks, "tests", st.Tests)
	ans.Policy = st
	return ans, errors.Join(errs...)
}

// reloadPolicy loads, checks and puts in force the file's policy.
func (g *gateway) reloadPolicy() (policyState, error) {
	cfg, err := config.LoadForGateway(g.cfg.Path)
	if err != nil {
		return policyState{}, err
	}
	if changed := changedSections(g.cfg, cfg); len(changed) > 0 {
		return policyState{}, fmt.Errorf("%s: %s changed; a reload applies the policy section only: restart the gateway to apply the rest", cfg.Path, strings.Join(changed, ", "))
	}
	pol, st, err := g.loadPolicy(cfg)
	if err != nil {
		return policyState{}, err
	}
	if failed := failedTests(cfg, pol); len(failed) > 0 {
		return policyState{}, fmt.Errorf("%s: %d of the policy's tests fail (run interlock check): %s", cfg.Path, len(failed), strings.Join(failed, "; "))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if st.SHA256 == g.policyState.SHA256 {
		// The same policy: the one in force stays, so that sessions keep
		// what it decided (approved prepared statements, remembered
		// decisions). A SIGHUP for the admin tokens changes nothing else.
		return g.policyState, nil
	}
	g.policy.Store(pol)
	g.policyState = st
	return st, nil
}

// failedTests runs the policy's tests as interlock check does and
// describes the first few failures.
func failedTests(cfg *config.Config, pol *policy.Policy) []string {
	var out []string
	n := 0
	for _, r := range pol.RunTests(testFacts(cfg, sqlfacts.NewClassifier(256))) {
		if r.Passed {
			continue
		}
		n++
		if n > 3 {
			continue
		}
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("tests[%d]", r.Index)
		}
		if r.Err != nil {
			out = append(out, fmt.Sprintf("%s: %v", name, r.Err))
			continue
		}
		want := r.Want
		if r.WantRule != "" {
			want += fmt.Sprintf(" (rule %q)", r.WantRule)
		}
		out = append(out, fmt.Sprintf("%s: want %s, got %s (rule %q)", name, want, r.Got.Action, r.Got.Rule))
	}
	if n > 3 {
		out = append(out, fmt.Sprintf("and %d more", n-3))
	}
	return out
}

// changedSections names the sections other than policy in which next
// differs from running.
func changedSections(running, next *config.Config) []string {
	var changed []string
	for _, s := range []struct {
		name string
		a, b any
	}{
		{"gateway", running.Gateway, next.Gateway},
		{"targets", running.Targets, next.Targets},
		{"workloads", running.Workloads, next.Workloads},
		{"identity", running.Identity, next.Identity},
	} {
		if !reflect.DeepEqual(s.a, s.b) {
			changed = append(changed, s.name)
		}
	}
	return changed
}

// policyInfo is the policy in force.
func (g *gateway) policyInfo() policyState {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.policyState
}

// reloadAPI serves POST /api/v1/reload: 200 with the policy in force, or
// 422 with why the file's was not put in force.
func (g *gateway) reloadAPI(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/reload", func(w http.ResponseWriter, r *http.Request) {
		ans, err := g.reload("api")
		if err != nil {
			apiError(w, http.StatusUnprocessableEntity, err)
			return
		}
		writeAPI(w, http.StatusOK, ans)
	})
}

func newReloadCommand() *cobra.Command {
	var path, tokenFile string
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Put the configuration file's policy in force in the running gateway",
		Long: `Ask the running gateway to re-read its configuration file (the one it was
started with) and put its policy in force, as SIGHUP does, and wait for the
answer. Open sessions follow from their next command. The gateway refuses a
file that does not load, a policy whose tests fail, and changes outside the
policy section (those need a restart); the policy in force then stays, and
this command exits 1 with the reason. It also re-reads the admin tokens file.
Calls the admin API with the token in INTERLOCK_TOKEN or --token-file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, loadErr := config.Load(path)
			if loadErr != nil {
				// The gateway refuses the file with the reason, and
				// counts the refusal in its metrics: ask it anyway.
				var err error
				if cfg, err = config.LoadGateway(path); err != nil {
					return loadErr
				}
			}
			c, err := newAdminClient(cfg, tokenFile)
			if err != nil {
				return err
			}
			var ans reloadAnswer
			if err := c.do(cmd.Context(), http.MethodPost, "/api/v1/reload", nil, &ans); err != nil {
				return err
			}
			// The gateway read the file it was started with: say so when
			// that is not the one given here.
			if loadErr != nil {
				return fmt.Errorf("the gateway reloaded the file it was started with (policy sha256 %s), not %s, which does not load: %w", short(ans.Policy.SHA256), cfg.Path, loadErr)
			}
			if mine := policyDigest(cfg.Policy); mine != ans.Policy.SHA256 {
				return fmt.Errorf("the gateway reloaded the file it was started with, whose policy (sha256 %s) is not the one in %s (sha256 %s)", short(ans.Policy.SHA256), cfg.Path, short(mine))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy reloaded: sha256 %s, %d rules, %d masks, %d tests passed\n",
				short(ans.Policy.SHA256), ans.Policy.Rules, ans.Policy.Masks, ans.Policy.Tests)
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the admin token (default: $INTERLOCK_TOKEN)")
	return cmd
}
