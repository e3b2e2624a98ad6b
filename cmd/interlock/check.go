package main

import (
	"cmp"
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

// testFacts builds the requests a policy test stands for, with the same
// classifier and fact mapping the PostgreSQL handler uses.
func testFacts(cfg *config.Config, c *sqlfacts.Classifier) func(policy.TestRequest) ([]policy.Request, error) {
	return func(tr policy.TestRequest) ([]policy.Request, error) {
		base := policy.Request{
			Workload: policy.Workload{Name: tr.Workload},
			Identity: policy.Identity{Subject: tr.Subject, Groups: tr.Groups},
		}
		if t := cfg.Target(tr.Target); t != nil {
			base.Target = policy.Target{Name: t.Name, Protocol: t.Protocol, Address: t.Address}
		} else if tr.Target != "" {
			return nil, fmt.Errorf("no target %q", tr.Target)
		}
		if w := cfg.Workload(tr.Workload); w != nil {
			if base.Identity.Subject == "" {
				base.Identity.Subject = w.Identity.Subject
			}
			if base.Identity.Groups == nil {
				base.Identity.Groups = w.Identity.Groups
			}
		}
		if ts := tr.SSH; ts != nil {
			if tr.SQL != "" {
				return nil, fmt.Errorf("a test request has sql or ssh, not both")
			}
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
			f.ForwardHost, f.ForwardPort = ts.ForwardHost, ts.ForwardPort
			f.EnvName, f.EnvValue = ts.EnvName, ts.EnvValue
			f.FileOp, f.FilePath, f.FileTarget, f.FileWrites = ts.FileOp, ts.FilePath, ts.FileTarget, ts.FileWrites
			r := base
			r.SSH = &f
			return []policy.Request{r}, nil
		}
		if tr.SQL == "" {
			return []policy.Request{base}, nil
		}
		stmts, err := c.Classify(tr.SQL)
		if err != nil {
			return nil, err
		}
		var out []policy.Request
		for _, st := range stmts {
			r := base
			sql := postgres.SQLFacts(st, tr.Database, tr.User)
			r.SQL = &sql
			out = append(out, r)
		}
		return out, nil
	}
}

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
			got += ": " + r.Err.Error()
		}
		fmt.Fprintf(w, "FAIL %s: got %s, want %s\n", name, got, want)
	}
	return failed
}
