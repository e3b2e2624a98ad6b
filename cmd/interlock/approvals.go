package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/identity/adminauth"
	"github.com/interlock-dev/interlock/policy/review"
)

// approvalView is a review request as the API and the CLI show it.
type approvalView struct {
	ID        string    `json:"id"`
	State     string    `json:"state"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	Session   string    `json:"session"`
	Target    string    `json:"target"`
	Protocol  string    `json:"protocol"`
	Workload  string    `json:"workload"`
	Requester string    `json:"requester"`
	Issuer    string    `json:"issuer,omitempty"`
	Groups    []string  `json:"groups,omitempty"`
	// Command is the command as the client sent it: whole from GET
	// /api/v1/approvals/{id}, and in a list its first
	// review.CommandPrefixLen bytes (CommandTruncated says when that is
	// not all), so a list of long commands is not megabytes each.
	Command string `json:"command"`
	// CommandBytes is the whole command's length as sent; it differs from
	// len(Command) when the command is cut or held bytes that are not
	// UTF-8, which JSON carries as U+FFFD.
	CommandBytes int `json:"command_bytes"`
	// CommandSHA256 is the whole command's SHA-256 (hex), the same in a
	// list, in show and in webhook messages.
	CommandSHA256    string   `json:"command_sha256,omitempty"`
	CommandTruncated bool     `json:"command_truncated,omitempty"`
	Kind             string   `json:"kind,omitempty"`
	Operation        string   `json:"operation,omitempty"`
	Rule             string   `json:"rule"`
	Approvers        []string `json:"approvers"`
	Grant            string   `json:"grant,omitempty"`
	Decider          string   `json:"decider,omitempty"`
	// DeciderIssuer is the OIDC issuer of the decider's token, "" for a
	// static admin token: the same subject from two issuers is two people.
	DeciderIssuer string    `json:"decider_issuer,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	Decided       time.Time `json:"decided,omitzero"`
}

func viewOf(r review.Request) approvalView {
	v := approvalView{
		ID: r.ID, State: string(r.State), Created: r.Created, Expires: r.Expires, Session: r.SessionID,
		Target: r.Target, Protocol: r.Protocol, Workload: r.Workload,
		Requester: r.Requester.Subject, Issuer: r.Requester.Issuer, Groups: r.Requester.Groups,
		Command: r.Command, CommandBytes: max(r.CommandBytes, len(r.Command)), CommandSHA256: r.CommandSHA256, CommandTruncated: r.CommandCut(),
		Kind: r.Kind, Operation: r.Operation, Rule: r.Rule, Approvers: r.Approvers,
		Decider: r.Decider.Subject, DeciderIssuer: r.Decider.Issuer, Reason: r.Reason, Decided: r.Decided,
	}
	if r.Grant > 0 {
		v.Grant = r.Grant.String()
	}
	return v
}

// approvalsAPI serves /api/v1/approvals on the admin listener; the caller
// is authenticated by the listener's middleware.
func (g *gateway) approvalsAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/approvals", func(w http.ResponseWriter, r *http.Request) {
		// Each command's start only: a list of pending commands could
		// otherwise be a thousand of 16 MiB; one is read whole by id.
		f := review.Filter{State: review.State(r.URL.Query().Get("state")), CommandPrefix: review.CommandPrefixLen}
		list, err := g.approvals.List(f)
		if err != nil {
			apiError(w, http.StatusInternalServerError, err)
			return
		}
		out := make([]approvalView, 0, len(list))
		for _, a := range list {
			out = append(out, viewOf(a))
		}
		writeAPI(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /api/v1/approvals/{id}", func(w http.ResponseWriter, r *http.Request) {
		a, err := g.approvals.Get(r.PathValue("id"))
		if err != nil {
			apiError(w, statusOf(err), err)
			return
		}
		writeAPI(w, http.StatusOK, viewOf(a))
	})
	decide := func(approve bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			caller, ok := adminauth.FromContext(r.Context())
			if !ok {
				apiError(w, http.StatusUnauthorized, errors.New("no caller identity"))
				return
			}
			var body struct {
				Reason string `json:"reason"`
			}
			if r.ContentLength != 0 {
				if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
					apiError(w, http.StatusBadRequest, fmt.Errorf("reading the body: %w", err))
					return
				}
			}
			a, err := g.approvals.Decide(r.PathValue("id"), caller.Identity, approve, body.Reason)
			if err != nil {
				g.logger.Warn("review decision refused", "request", r.PathValue("id"), "caller", caller.Subject, "error", err)
				apiError(w, statusOf(err), err)
				return
			}
			// The stored reason: the body's may be 64 KiB.
			g.logger.Info("review decided", "request", a.ID, "state", a.State, "decider", caller.Subject,
				"decider_issuer", caller.Issuer, "reason", a.Reason)
			writeAPI(w, http.StatusOK, viewOf(a))
		}
	}
	mux.HandleFunc("POST /api/v1/approvals/{id}/approve", decide(true))
	mux.HandleFunc("POST /api/v1/approvals/{id}/deny", decide(false))
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, review.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, review.ErrNotPending):
		return http.StatusConflict
	case errors.Is(err, review.ErrSelfApproval), errors.Is(err, review.ErrNotApprover):
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

func writeAPI(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func apiError(w http.ResponseWriter, status int, err error) {
	writeAPI(w, status, map[string]string{"error": err.Error()})
}

// adminClient calls the gateway's admin API with the CLI's credential.
type adminClient struct {
	base   string
	token  string
	client *http.Client
}

func newAdminClient(cfg *config.Config, tokenFile string) (*adminClient, error) {
	tok, err := adminauth.ClientToken(tokenFile)
	if err != nil {
		return nil, err
	}
	client, err := adminHTTPClient(cfg)
	if err != nil {
		return nil, err
	}
	return &adminClient{base: cfg.Gateway.AdminURL(), token: tok, client: client}, nil
}

// do sends a request and decodes a JSON answer into out; an error answer
// becomes an error with the gateway's message.
func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("gateway not reachable at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return fmt.Errorf("gateway: %s: %s", resp.Status, strings.TrimSpace(e.Error))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func newApprovalsCommand() *cobra.Command {
	var path, tokenFile, output, state, reason string
	var readWhole bool
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List and decide commands held for review",
		Long: `Commands a review rule holds wait until an approver decides. These commands call
the gateway's admin API (gateway.admin in the configuration) with the token in
INTERLOCK_TOKEN or --token-file; only members of the rule's approver groups may
decide, and never the requester itself.`,
	}
	cmd.PersistentFlags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	cmd.PersistentFlags().StringVar(&tokenFile, "token-file", "", "file holding the admin token (default: $INTERLOCK_TOKEN)")
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "text", "text or json")
	client := func() (*adminClient, error) {
		if output != "text" && output != "json" {
			return nil, fmt.Errorf("-o: %q is not text or json", output)
		}
		cfg, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		return newAdminClient(cfg, tokenFile)
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List review requests, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var out []approvalView
			q := ""
			if state != "" {
				q = "?state=" + state
			}
			if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/approvals"+q, nil, &out); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd, out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tCREATED\tTARGET\tWORKLOAD\tREQUESTER\tRULE\tCOMMAND")
			for _, a := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.State, a.Created.Format(time.RFC3339), review.Printable(a.Target), review.Printable(a.Workload), review.Printable(a.Requester), review.Printable(a.Rule), commandCell(a, 60))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&state, "state", "", "only requests in this state (pending, approved, rejected, expired, abandoned)")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one review request",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var a approvalView
			if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/approvals/"+args[0], nil, &a); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd, a)
			}
			writeApproval(cmd.OutOrStdout(), a)
			return nil
		},
	}
	decide := func(use, short string, approve bool) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := client()
				if err != nil {
					return err
				}
				verb := "approve"
				if !approve {
					verb = "deny"
				} else if !readWhole {
					if err := checkShownWhole(cmd.Context(), c, args[0]); err != nil {
						return err
					}
				}
				var a approvalView
				if err := c.do(cmd.Context(), http.MethodPost, "/api/v1/approvals/"+args[0]+"/"+verb, map[string]string{"reason": reason}, &a); err != nil {
					return err
				}
				if output == "json" {
					return writeJSON(cmd, a)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s by %s\n", a.ID, a.State, withIssuer(a.Decider, a.DeciderIssuer))
				return nil
			},
		}
	}
	approve := decide("approve ID", "Let a held command run", true)
	deny := decide("deny ID --reason TEXT", "Refuse a held command", false)
	for _, c := range []*cobra.Command{approve, deny} {
		c.Flags().StringVar(&reason, "reason", "", "why (recorded, and told to the agent on deny)")
	}
	approve.Flags().BoolVar(&readWhole, "read-whole", false,
		fmt.Sprintf("approve a command longer than chat messages and lists show (%d bytes) after reading it whole with show", review.TextCommandLen))
	cmd.AddCommand(list, show, approve, deny)
	return cmd
}

// checkShownWhole refuses to approve request id when its command is
// longer than the webhook's text and the list show: the part they cut may
// be the part that matters (UPDATE accounts SET note = '<4 KiB>',
// is_admin = true). --read-whole, after show, approves it.
func checkShownWhole(ctx context.Context, c *adminClient, id string) error {
	var a approvalView
	if err := c.do(ctx, http.MethodGet, "/api/v1/approvals/"+id, nil, &a); err != nil {
		return err
	}
	if !shortenedInChat(a) {
		return nil
	}
	return fmt.Errorf("request %s holds a command of %d bytes, and chat messages and lists show only its start: "+
		"read it whole with `interlock approvals show %[1]s`, then approve it with --read-whole", review.Printable(a.ID), commandBytes(a))
}

// shortenedInChat reports whether the webhook's text showed less than the
// whole command of a, as review.Shortened does on the gateway. The gateway
// escapes a byte that is not UTF-8 as \xNN (4 bytes) where the CLI, after
// JSON, reads U+FFFD (3): counting each U+FFFD as one byte more, a
// command padded with such bytes cannot read as shown whole here while
// the chat text cut off its end. A U+FFFD that was sent as such is
// counted long too: the safe mistake is to ask for --read-whole.
func shortenedInChat(a approvalView) bool {
	return len(review.Printable(a.Command))+strings.Count(a.Command, "\uFFFD") > review.TextCommandLen
}

// commandBytes is the command's length as sent, from a gateway that says
// it, else as received.
func commandBytes(a approvalView) int {
	if a.CommandBytes > 0 {
		return a.CommandBytes
	}
	return len(a.Command)
}

// writeApproval prints one request for a human. Every text is shown
// escaped: a held command must not redraw the terminal (\r, escape
// sequences) to read as another, and the operation says what policy read
// it as. The command is printed whole, however long: this is where an
// approver reads what the list and chat messages cut.
func writeApproval(w io.Writer, a approvalView) {
	p := review.Printable
	fmt.Fprintf(w, "request   %s (%s)\ncommand   %s\n", p(a.ID), p(a.State), p(a.Command))
	if n := commandBytes(a); n != len(a.Command) {
		fmt.Fprintf(w, "bytes     %d as sent; those that are not UTF-8 show as � above\n", n)
	} else if review.Shortened(a.Command, review.TextCommandLen) {
		fmt.Fprintf(w, "bytes     %d, all shown above\n", n)
	}
	if a.CommandSHA256 != "" {
		fmt.Fprintf(w, "sha256    %s\n", p(a.CommandSHA256))
	}
	if a.Operation != "" {
		fmt.Fprintf(w, "reads as  %s: %s\n", p(a.Kind), p(a.Operation))
	}
	fmt.Fprintf(w, "target    %s (%s)\nworkload  %s, requested by %s\nrule      %s, approvers %s\ncreated   %s, expires %s\n",
		p(a.Target), p(a.Protocol), p(a.Workload), withIssuer(a.Requester, a.Issuer), p(a.Rule), p(strings.Join(a.Approvers, ",")),
		a.Created.Format(time.RFC3339), a.Expires.Format(time.RFC3339))
	if a.Decider != "" || a.Reason != "" {
		fmt.Fprintf(w, "decided   %s by %s: %s\n", a.Decided.Format(time.RFC3339), withIssuer(a.Decider, a.DeciderIssuer), p(a.Reason))
	}
}

// withIssuer names a subject with the OIDC issuer that vouched for it, so
// "alice" of one issuer cannot pass for "alice" of another; a static
// identity (no issuer) is the subject alone. Both are escaped.
func withIssuer(subject, issuer string) string {
	if issuer == "" {
		return review.Printable(subject)
	}
	return review.Printable(subject) + " (issuer " + review.Printable(issuer) + ")"
}

// oneLine is a command for one table cell: escaped, and cut short with a
// marker saying so and naming its length.
func oneLine(s string, n int) string {
	return review.DisplayCommand(s, n)
}

// commandCell is oneLine for a request's command, which a list carries
// cut: the marker names the whole command's length.
func commandCell(a approvalView, n int) string {
	if a.CommandTruncated {
		return review.DisplayPrefix(a.Command, commandBytes(a), n)
	}
	return oneLine(a.Command, n)
}
