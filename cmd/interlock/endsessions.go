package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/identity/adminauth"
	"github.com/interlock-dev/interlock/proxy"
)

// endRequest selects the sessions POST /api/v1/sessions/end ends: those
// matching every field given; All is needed to end every session.
type endRequest struct {
	IDs      []string `json:"ids,omitempty"`
	Target   string   `json:"target,omitempty"`
	Workload string   `json:"workload,omitempty"`
	All      bool     `json:"all,omitempty"`
}

// endAnswer is the sessions ended.
type endAnswer struct {
	Ended []proxy.SessionInfo `json:"ended"`
}

// errNoSelection: an end request that selects nothing by itself.
var errNoSelection = errors.New("name the sessions to end: ids, a target, a workload, or all")

// selects reports whether the request selects info.
func (q endRequest) selects(info proxy.SessionInfo) bool {
	return (len(q.IDs) == 0 || slices.Contains(q.IDs, info.ID)) &&
		(q.Target == "" || q.Target == info.Target) &&
		(q.Workload == "" || q.Workload == info.Workload)
}

// endSessionsAPI serves POST /api/v1/sessions/end: the selected sessions
// end now, their clients told why (PostgreSQL: FATAL 57P01; SSH: a
// message on stderr) and their recordings closed with the reason. After a
// policy reload this cuts what an open session kept from before it (a
// statement prepared in SQL, a shell).
func (g *gateway) endSessionsAPI(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/sessions/end", func(w http.ResponseWriter, r *http.Request) {
		var q endRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&q); err != nil {
			apiError(w, http.StatusBadRequest, fmt.Errorf("reading the request: %w", err))
			return
		}
		if len(q.IDs) == 0 && q.Target == "" && q.Workload == "" && !q.All {
			apiError(w, http.StatusBadRequest, errNoSelection)
			return
		}
		who := "?"
		if id, ok := adminauth.FromContext(r.Context()); ok {
			who = id.Subject
		}
		ended := g.server.End(q.selects, fmt.Errorf("%w (%s)", proxy.ErrEndedByAdministrator, who))
		for _, s := range ended {
			g.logger.Info("session ended by an administrator", "session", s.ID, "target", s.Target, "workload", s.Workload, "administrator", who)
		}
		if ended == nil {
			ended = []proxy.SessionInfo{}
		}
		writeAPI(w, http.StatusOK, endAnswer{Ended: ended})
	})
}

// newSessionsEndCommand is `interlock sessions end`.
func newSessionsEndCommand(path, output *string) *cobra.Command {
	var q endRequest
	var tokenFile string
	cmd := &cobra.Command{
		Use:   "end [ID...] [--target NAME] [--workload NAME] [--all]",
		Short: "End running sessions now (needs an admin token)",
		Long: `End the gateway's running sessions that match every selection given: session
ids, a target, a workload; --all ends every session. Their clients are told
why (PostgreSQL: FATAL 57P01; SSH: on stderr), and their recordings end with
the reason. Use it after a policy reload to cut what open sessions kept from
before it. Calls the admin API with the token in INTERLOCK_TOKEN or
--token-file.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			q.IDs = args
			if len(q.IDs) == 0 && q.Target == "" && q.Workload == "" && !q.All {
				return errNoSelection
			}
			if *output != "text" && *output != "json" {
				return fmt.Errorf("-o: %q is not text or json", *output)
			}
			cfg, err := config.LoadGateway(*path)
			if err != nil {
				return err
			}
			c, err := newAdminClient(cfg, tokenFile)
			if err != nil {
				return err
			}
			var ans endAnswer
			if err := c.do(cmd.Context(), http.MethodPost, "/api/v1/sessions/end", q, &ans); err != nil {
				return err
			}
			if *output == "json" {
				return writeJSON(cmd, ans)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ENDED\tTARGET\tWORKLOAD\tSUBJECT\tSTARTED")
			for _, s := range ans.Ended {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.Target, s.Workload, s.Subject, s.Started.Format(time.RFC3339))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(ans.Ended) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no running session matched")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&q.Target, "target", "", "only sessions to this target")
	cmd.Flags().StringVar(&q.Workload, "workload", "", "only sessions of this workload")
	cmd.Flags().BoolVar(&q.All, "all", false, "every running session")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the admin token (default: $INTERLOCK_TOKEN)")
	return cmd
}
