package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/identity/adminauth"
	"github.com/interlock-dev/interlock/redirect"
)

// statusReport is `interlock status -o json`.
type statusReport struct {
	Config string `json:"config"`
	// ConfigPolicySHA256 is the file's policy section's, to compare with
	// the gateway's policy in force (Gateway.Policy).
	ConfigPolicySHA256 string `json:"config_policy_sha256,omitempty"`
	// ConfigError is why the file does not load (the report then comes
	// from its gateway section).
	ConfigError  string          `json:"config_error,omitempty"`
	Gateway      *gatewayStatus  `json:"gateway,omitempty"` // nil when the admin listener did not answer
	GatewayError string          `json:"gateway_error,omitempty"`
	Datapath     *datapathReport `json:"datapath"`
}

type datapathReport struct {
	Installed bool             `json:"installed"`
	PinPath   string           `json:"bpffs"`
	Programs  []string         `json:"programs,omitempty"`
	Listen4   string           `json:"listen4,omitempty"`
	Listen6   string           `json:"listen6,omitempty"`
	Workloads []kernelWorkload `json:"workloads,omitempty"`
	Guards    []kernelGuard    `json:"guards,omitempty"`
	Targets   []kernelTarget   `json:"targets,omitempty"`
	Counters  []kernelCounter  `json:"counters,omitempty"`
	Error     string           `json:"error,omitempty"`
}

type kernelWorkload struct {
	Name       string `json:"name"`
	CgroupID   uint64 `json:"cgroup_id"`
	EgressDeny bool   `json:"egress_deny"`
}

// kernelGuard is a guarded parent cgroup: its children newer than the
// watermark go to the gateway (see README, "A unit's restart").
type kernelGuard struct {
	CgroupID   uint64 `json:"cgroup_id"`
	Watermark  uint64 `json:"watermark"`
	EgressDeny bool   `json:"egress_deny"`
}

type kernelTarget struct {
	Name        string `json:"name"`
	Destination string `json:"destination"`
}

type kernelCounter struct {
	Workload   string `json:"workload"`
	Target     string `json:"target,omitempty"`
	Redirected uint64 `json:"redirected"`
	Allowed    uint64 `json:"allowed"`
	Denied     uint64 `json:"denied"`
}

func newStatusCommand() *cobra.Command {
	var path, output, tokenFile string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the data path, workloads, targets and counters",
		Long: `Show what is enforced: the pinned eBPF programs and maps (read directly from
bpffs, so this works while the gateway is down), the gateway's view of
workloads and targets from its admin listener (with the admin token in
INTERLOCK_TOKEN or --token-file; without one, the kernel's view only), and
the kernel's counters.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o: %q is not text or json", output)
			}
			// A token file that was asked for and does not read is an
			// error, as for the other admin commands; no token at all is
			// the kernel's view only.
			token, err := adminauth.ClientToken(tokenFile)
			if err != nil && (tokenFile != "" || !errors.Is(err, adminauth.ErrNoCredentials)) {
				return err
			}
			cfg, loadErr := config.Load(path)
			if loadErr != nil {
				// A file being edited must not hide the running gateway:
				// its gateway section is enough to ask it.
				var err error
				if cfg, err = config.LoadGateway(path); err != nil {
					return loadErr
				}
			}
			r := collectStatus(cmd.Context(), cfg, token)
			if loadErr != nil {
				r.ConfigError, r.ConfigPolicySHA256 = loadErr.Error(), ""
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			printStatus(cmd.OutOrStdout(), r)
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the admin token (default: $INTERLOCK_TOKEN)")
	return cmd
}

// collectStatus asks the gateway with the admin token (none: "") and reads
// the kernel's state.
func collectStatus(ctx context.Context, cfg *config.Config, token string) statusReport {
	r := statusReport{Config: cfg.Path, ConfigPolicySHA256: policyDigest(cfg.Policy), Datapath: &datapathReport{PinPath: cfg.Gateway.BPFFS}}
	gs, err := fetchGatewayStatus(ctx, cfg, token)
	if err != nil {
		r.GatewayError = err.Error()
	} else {
		r.Gateway = gs
	}

	st, err := redirect.Inspect(cfg.Gateway.BPFFS)
	switch {
	case errors.Is(err, redirect.ErrNotInstalled):
		return r
	case err != nil:
		r.Datapath.Error = err.Error()
		if st == nil {
			return r
		}
	}
	d := r.Datapath
	d.Installed = len(st.Links) > 0
	for _, l := range st.Links {
		d.Programs = append(d.Programs, fmt.Sprintf("%s (link %d, program %d, cgroup %d)", l.Name, l.LinkID, l.ProgramID, l.CgroupID))
	}
	if st.Listen4.IsValid() {
		d.Listen4 = st.Listen4.String()
	}
	if st.Listen6.IsValid() {
		d.Listen6 = st.Listen6.String()
	}
	for _, w := range st.Workloads {
		d.Workloads = append(d.Workloads, kernelWorkload{Name: workloadName(cfg, w.ID), CgroupID: w.CgroupID, EgressDeny: w.EgressDeny})
	}
	for _, g := range st.Guards {
		d.Guards = append(d.Guards, kernelGuard{CgroupID: g.CgroupID, Watermark: g.Watermark, EgressDeny: g.EgressDeny})
	}
	for _, t := range st.Targets {
		d.Targets = append(d.Targets, kernelTarget{Name: targetName(cfg, t.ID), Destination: fmt.Sprintf("%s port %d", t.Prefix, t.Port)})
	}
	for _, c := range st.Counters {
		kc := kernelCounter{Workload: workloadName(cfg, c.WorkloadID), Redirected: c.Redirected, Allowed: c.Allowed, Denied: c.Denied}
		if c.TargetID != 0 {
			kc.Target = targetName(cfg, c.TargetID)
		}
		d.Counters = append(d.Counters, kc)
	}
	sort.Slice(d.Counters, func(i, j int) bool {
		a, b := d.Counters[i], d.Counters[j]
		return a.Workload < b.Workload || a.Workload == b.Workload && a.Target < b.Target
	})
	return r
}

// gatewayUp reports whether a gateway answers on the admin address
// (/healthz needs no credential).
func gatewayUp(ctx context.Context, cfg *config.Config) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	client, err := adminHTTPClient(cfg)
	if err != nil {
		return false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Gateway.AdminURL()+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func fetchGatewayStatus(ctx context.Context, cfg *config.Config, token string) (*gatewayStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	client, err := adminHTTPClient(cfg)
	if err != nil {
		return nil, err
	}
	admin := cfg.Gateway.AdminURL()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/api/v1/status", nil)
	if err != nil {
		return nil, err
	}
	// The status API needs an administrator's token; without one the
	// answer is 401 and the report shows the kernel state only.
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gateway not reachable at %s: %w", admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("gateway at %s answered %s", admin, resp.Status)
	}
	var gs gatewayStatus
	if err := json.NewDecoder(resp.Body).Decode(&gs); err != nil {
		return nil, fmt.Errorf("reading gateway status: %w", err)
	}
	return &gs, nil
}

// unresolvedName stands for redirect.UnresolvedWorkload in status and
// metrics: connects from cgroups made since the gateway's last pass.
const unresolvedName = "(unresolved)"

func workloadName(cfg *config.Config, id uint32) string {
	if id == redirect.UnresolvedWorkload {
		return unresolvedName
	}
	if w := cfg.WorkloadByID(id); w != nil {
		return w.Name
	}
	return fmt.Sprintf("(id %d, not in %s)", id, cfg.Path)
}

func targetName(cfg *config.Config, id uint32) string {
	if t := cfg.TargetByID(id); t != nil {
		return t.Name
	}
	return fmt.Sprintf("(id %d, not in %s)", id, cfg.Path)
}

func printStatus(out io.Writer, r statusReport) {
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	defer w.Flush()
	d := r.Datapath
	switch {
	case r.Gateway != nil:
		fmt.Fprintf(w, "gateway:\trunning (pid %d, %s mode, ready=%t, up %s)\n", r.Gateway.PID, r.Gateway.Mode, r.Gateway.Ready, time.Since(r.Gateway.Started).Round(time.Second))
		for _, l := range r.Gateway.Listeners {
			if l.Target != "" {
				fmt.Fprintf(w, "  listener:\t%s (target %s)\n", l.Address, l.Target)
			} else {
				fmt.Fprintf(w, "  listener:\t%s\n", l.Address)
			}
		}
		fmt.Fprintf(w, "  sessions:\t%d active\n", len(r.Gateway.Sessions))
		if p := r.Gateway.Policy; p != nil {
			fmt.Fprintf(w, "  policy:\tsha256 %s (%d rules, %d masks), loaded %s\n", short(p.SHA256), p.Rules, p.Masks, p.Loaded.Local().Format(time.RFC3339))
			if r.ConfigError == "" && p.SHA256 != r.ConfigPolicySHA256 {
				fmt.Fprintf(w, "  \tthe policy in %s differs (sha256 %s): interlock reload puts it in force\n", r.Config, short(r.ConfigPolicySHA256))
			}
		}
		for _, l := range r.Gateway.Logins {
			fmt.Fprintf(w, "  login:\t%s is %s (%s, via %s) until %s\n", l.Workload, l.Subject, l.Issuer, l.Via, l.Expires.Local().Format(time.RFC3339))
		}
	default:
		fmt.Fprintf(w, "gateway:\tnot running (%s)\n", r.GatewayError)
	}
	if r.ConfigError != "" {
		fmt.Fprintf(w, "config:\t%s does not load; a reload would be refused: %s\n", r.Config, oneLine(r.ConfigError, 200))
	}
	switch {
	case d.Installed && r.Gateway == nil:
		fmt.Fprintf(w, "data path:\tattached, gateway down: workloads' connects to targets are refused (fail closed)\n")
	case d.Installed:
		fmt.Fprintf(w, "data path:\tattached\n")
	default:
		fmt.Fprintf(w, "data path:\tnot installed\n")
	}
	fmt.Fprintf(w, "  bpffs:\t%s\n", d.PinPath)
	if d.Error != "" {
		fmt.Fprintf(w, "  error:\t%s\n", d.Error)
	}
	for _, p := range d.Programs {
		fmt.Fprintf(w, "  program:\t%s\n", p)
	}
	if d.Listen4 != "" {
		fmt.Fprintf(w, "  redirects to:\t%s %s\n", d.Listen4, d.Listen6)
	}
	w.Flush()

	fmt.Fprintln(out)
	w = tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "WORKLOAD\tMATCH\tCGROUP\tCGROUP ID\tSTATE\tEGRESS")
	if r.Gateway != nil {
		for _, ws := range r.Gateway.Workloads {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", ws.Name, ws.Match, dash(ws.Cgroup), ws.CgroupID, ws.State, ws.Egress)
		}
	} else {
		for _, kw := range d.Workloads {
			egress := "allow"
			if kw.EgressDeny {
				egress = "deny"
			}
			fmt.Fprintf(w, "%s\t-\t-\t%d\tpinned\t%s\n", kw.Name, kw.CgroupID, egress)
		}
	}
	w.Flush()

	if len(d.Guards) > 0 {
		fmt.Fprintln(out)
		w = tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(w, "GUARDED CGROUP\tCGROUP ID\tNEWER CHILDREN THAN\tEGRESS WHILE DOWN")
		paths := map[uint64]string{}
		if r.Gateway != nil {
			for _, g := range r.Gateway.Guards {
				paths[g.CgroupID] = g.Path
			}
		}
		for _, g := range d.Guards {
			egress := "allow"
			if g.EgressDeny {
				egress = "deny"
			}
			fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", dash(paths[g.CgroupID]), g.CgroupID, g.Watermark, egress)
		}
		w.Flush()
	}

	fmt.Fprintln(out)
	w = tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TARGET\tPROTOCOL\tADDRESS\tIN KERNEL")
	if r.Gateway != nil {
		for _, t := range r.Gateway.Targets {
			res := fmt.Sprint(t.Resolved)
			if t.Error != "" {
				res += " (lookup failing: " + t.Error + ")"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t.Name, t.Protocol, t.Address, res)
		}
	} else {
		for _, t := range d.Targets {
			fmt.Fprintf(w, "%s\t-\t-\t%s\n", t.Name, t.Destination)
		}
	}
	w.Flush()

	fmt.Fprintln(out)
	w = tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "WORKLOAD\tTARGET\tREDIRECTED\tALLOWED\tDENIED")
	for _, c := range d.Counters {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\n", c.Workload, dash(c.Target), c.Redirected, c.Allowed, c.Denied)
	}
	w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newUninstallCommand() *cobra.Command {
	var path string
	var force bool
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Detach the eBPF programs and remove everything pinned",
		Long: `Detach interlock's eBPF programs and remove its pinned links and maps. Stop the
gateway first: while it runs it holds the programs attached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if gatewayUp(cmd.Context(), cfg) && !force {
				return fmt.Errorf("the gateway is running (its admin listener %s answers); stop it first, or pass --force", cfg.Gateway.Admin)
			}
			err = redirect.Uninstall(cfg.Gateway.BPFFS)
			if errors.Is(err, redirect.ErrNotInstalled) {
				fmt.Fprintf(cmd.OutOrStdout(), "nothing installed at %s\n", cfg.Gateway.BPFFS)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed the interlock data path from %s\n", cfg.Gateway.BPFFS)
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	cmd.Flags().BoolVar(&force, "force", false, "remove even while a gateway answers on the admin address")
	return cmd
}
