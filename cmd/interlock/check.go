package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy/postgres"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
	sshproxy "github.com/interlock-dev/interlock/proxy/ssh"
)

func newCheckCommand() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate a configuration file and run its policy tests",
		Long: `Validate a configuration file: every field, every policy rule's CEL condition,
and the policy's tests (request → expected decision). Exits 1 when a test
fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if _, err := config.LoadForGateway(path); err != nil {
				// Who may change the file is the gateway's business
				// (a copy being edited is someone's own), but say so.
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: interlock gateway would refuse this file: %v\n", err)
			}
			pol, err := compilePolicy(cfg)
			if err != nil {
				return err
			}
			results := pol.RunTests(testFacts(cfg, sqlfacts.NewClassifier(256)))
			failed := printTestResults(cmd.OutOrStdout(), results)
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d targets, %d workloads, %d rules, %d masks); policy tests: %d passed, %d failed\n",
				cfg.Path, len(cfg.Targets), len(cfg.Workloads), len(cfg.Policy.Rules), len(cfg.Policy.Masks), len(results)-failed, failed)
			if failed > 0 {
				return exitError(1)
			}
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	return cmd
}

// compilePolicy compiles the configuration's policy against its targets
// and workloads.
func compilePolicy(cfg *config.Config) (*policy.Policy, error) {
	pol, err := policy.Compile(cfg.Policy, cfg.PolicyEnv())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	return pol, nil
}

// testFacts builds the steps a policy test stands for with the handlers'
// own mappings: the PostgreSQL handler's classifier, start-up default and
// lexing guard, the SSH handler's command facts, forward host and SFTP
// paths, and its denial of review on requests it cannot hold.
func testFacts(cfg *config.Config, c *sqlfacts.Classifier) func(policy.TestRequest) ([]policy.TestStep, error) {
	return func(tr policy.TestRequest) ([]policy.TestStep, error) {
		base := policy.Request{
			Workload: policy.Workload{Name: tr.Workload},
			Identity: policy.Identity{Subject: tr.Subject, Groups: tr.Groups, Issuer: tr.Issuer},
		}
		if t := cfg.Target(tr.Target); t != nil {
			base.Target = policy.Target{Name: t.Name, Protocol: t.Protocol, Address: t.Address}
		} else if tr.Target != "" {
			return nil, fmt.Errorf("no target %q", tr.Target)
		}
		if w := cfg.Workload(tr.Workload); w != nil {
			if err := testIdentity(cfg, w, &base.Identity); err != nil {
				return nil, err
			}
		}
		if tr.SSH != nil {
			if tr.SQL != "" {
				return nil, errors.New("a test request has sql or ssh, not both")
			}
			return sshTestSteps(base, tr.SSH)
		}
		if tr.SQL == "" {
			return []policy.TestStep{{Request: base}}, nil
		}
		stmts, err := c.Classify(tr.SQL)
		if err != nil {
			return nil, err
		}
		database := postgres.StartupDatabase(tr.Database, tr.User)
		var out []policy.TestStep
		for _, st := range stmts {
			s := policy.TestStep{Request: base}
			sql := postgres.SQLFacts(st, database, tr.User)
			s.Request.SQL = &sql
			if d, denied := postgres.GuardDecision(st); denied {
				s.Gateway = &d
			}
			out = append(out, s)
		}
		return out, nil
	}
}

// testIdentity fills a test's identity from its workload's where the test
// names none. An OIDC workload's issuer is its identity.oidc issuer's URL,
// as in the tokens the gateway accepts; a static identity has no issuer.
func testIdentity(cfg *config.Config, w *config.Workload, id *policy.Identity) error {
	if id.Subject == "" {
		id.Subject = w.Identity.Subject
	}
	if id.Groups == nil {
		id.Groups = w.Identity.Groups
	}
	if w.Identity.OIDC == "" {
		if id.Issuer != "" {
			return fmt.Errorf("issuer %q: workload %q has a static identity, which has no issuer", id.Issuer, w.Name)
		}
		return nil
	}
	if o := cfg.OIDCIssuer(w.Identity.OIDC); o != nil && id.Issuer == "" {
		id.Issuer = o.Issuer
	}
	return nil
}

// sshTestSteps is the one step of an SSH test request.
func sshTestSteps(base policy.Request, ts *policy.TestSSH) ([]policy.TestStep, error) {
	f := policy.SSH{Request: ts.Request}
	if ts.Command != "" {
		// Every fact of the command, as the handler has them.
		ef, err := sshproxy.ExecFacts(ts.Command)
		if err != nil {
			return nil, err
		}
		ef.Request = cmp.Or(f.Request, "exec")
		f = ef
	}
	f.User, f.Subsystem = ts.User, ts.Subsystem
	f.ForwardHost, f.ForwardPort = sshproxy.ForwardHost(ts.ForwardHost), ts.ForwardPort
	f.EnvName, f.EnvValue = ts.EnvName, ts.EnvValue
	f.FileOp, f.FileWrites = ts.FileOp, ts.FileWrites
	var err error
	f.FilePath, f.FileTarget, err = sshproxy.SFTPPaths(ts.FileOp, ts.FilePath, ts.FileTarget)
	if err != nil {
		// The login directory is known only in a session.
		return nil, fmt.Errorf("file_path and file_target must be absolute in a test: %w", err)
	}
	r := base
	r.SSH = &f
	return []policy.TestStep{{Request: r, NoReview: !sshproxy.HoldsForReview(f.Request)}}, nil
}

// printTestResults prints a line per test and returns how many failed. A
// test whose request could not be built fails with the reason.
func printTestResults(w io.Writer, results []policy.TestResult) (failed int) {
	for _, r := range results {
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("tests[%d]", r.Index)
		}
		got := string(r.Got.Action)
		if r.Got.Rule != "" {
			got += " (rule " + r.Got.Rule + ")"
		}
		if r.Passed {
			fmt.Fprintf(w, "PASS %s: %s\n", name, got)
			continue
		}
		failed++
		want := r.Want
		if r.WantRule != "" {
			want += " (rule " + r.WantRule + ")"
		}
		if r.Err != nil {
			fmt.Fprintf(w, "FAIL %s: %s (want %s)\n", name, r.Err, want)
			continue
		}
		fmt.Fprintf(w, "FAIL %s: got %s, want %s\n", name, got, want)
	}
	return failed
}
