package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/record"
	"github.com/interlock-dev/interlock/record/asciicast"
)

// recordingsDir is where session event logs live under the state folder.
func recordingsDir(cfg *config.Config) string {
	return filepath.Join(cfg.Gateway.StateDir, "recordings")
}

func newSessionsCommand() *cobra.Command {
	var path, output string
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List, show, verify and replay recorded sessions; end running ones",
		Long: `Every session the gateway serves is recorded as an append-only event log under
<state_dir>/recordings, each event carrying the hash of the one before it.`,
	}
	cmd.PersistentFlags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.AddCommand(newSessionsEndCommand(&path, &output))

	openStore := func() (*record.Store, error) {
		cfg, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		if output != "text" && output != "json" {
			return nil, fmt.Errorf("-o: %q is not text or json", output)
		}
		// Read-only: looking at recordings must not create the folder.
		return record.OpenStoreReadOnly(recordingsDir(cfg))
	}

	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List recorded sessions, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			sums, err := st.List()
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd, sums)
			}
			return record.WriteSummaryTable(cmd.OutOrStdout(), sums)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show ID",
		Short: "Show one session's events",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			events, err := st.Events(args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd, events)
			}
			return record.WriteText(cmd.OutOrStdout(), events)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "verify ID",
		Short: "Check a session's hash chain; exits 1 when tampered with, 2 when intact but incomplete",
		Long: `Checks a session's hash chain, and each terminal recording (.cast file) the log
names against the SHA-256 and length the log holds for it. Exit status 0: intact
and complete (the log ends with the session's end). 1: tampered with (a line was
edited, removed, reordered or inserted without the chain being recomputed, or a
terminal recording was altered, cut or deleted). 2: intact but incomplete (the
session is still open, its gateway stopped before it ended, or the end of the
log was cut off). A terminal recording named by a log written before
recordings were hashed is reported as not covered. The chain cannot show a log
rewritten and re-hashed as a whole, or deleted: keep a copy off the host for
that.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			res, err := st.Verify(args[0])
			if err != nil {
				return err
			}
			status, exit := verifyStatus(res)
			if output == "json" {
				if err := writeJSON(cmd, verifyOutput{Status: status, VerifyResult: res}); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), verifyText(args[0], res))
			}
			if exit != 0 {
				return exitError(exit)
			}
			return nil
		},
	})
	var speed float64
	var maxIdle time.Duration
	var dump, raw bool
	replay := &cobra.Command{
		Use:   "replay ID [N]",
		Short: "Play a session's terminal recording with its timing",
		Long: `Plays the terminal stream (asciicast v2) of a session's shell or pty command in
this terminal, with its original timing. N picks the session's Nth terminal
recording (default 1); the .cast files are in <state_dir>/recordings and any
asciicast player (asciinema play) plays them too.

The output came from the agent and the target, so it is filtered: colours,
cursor movement, erasing, scroll regions and the alternate screen pass; OSC
strings (clipboard, title, links), DCS, APC, PM and SOS strings, queries the
terminal would answer into its input (device status and attributes), window
operations and mouse reporting are dropped. --raw writes it as recorded.
A recording that does not match the hash its session's log holds for it
(altered since) is not played; sessions verify says what differs.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			events, err := st.Events(args[0])
			if err != nil {
				return err
			}
			var casts []string
			for _, ev := range events {
				if ev.Command != nil && ev.Command.Recording != "" {
					casts = append(casts, ev.Command.Recording)
				}
			}
			n := 1
			if len(args) == 2 {
				if n, err = strconv.Atoi(args[1]); err != nil || n < 1 {
					return fmt.Errorf("recording number %q is not a number from 1", args[1])
				}
			}
			if n > len(casts) {
				return fmt.Errorf("session %s has %d terminal recording(s)", args[0], len(casts))
			}
			name := casts[n-1]
			if filepath.Base(name) != name {
				return fmt.Errorf("session %s names a recording outside the store: %q", args[0], name)
			}
			if err := checkCast(st, args[0], name); err != nil {
				return err
			}
			f, err := os.Open(filepath.Join(st.Dir(), name))
			if err != nil {
				return err
			}
			defer f.Close()
			if dump {
				return asciicast.Dump(cmd.OutOrStdout(), f, asciicast.DumpOptions{Raw: raw})
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return asciicast.Play(ctx, cmd.OutOrStdout(), f, asciicast.PlayOptions{Speed: speed, MaxIdle: maxIdle, Raw: raw})
		},
	}
	replay.Flags().Float64Var(&speed, "speed", 1, "playback speed factor")
	replay.Flags().DurationVar(&maxIdle, "max-idle", 2*time.Second, "cap pauses at this long; negative: no cap")
	replay.Flags().BoolVar(&dump, "dump", false, "print the whole output at once, without timing")
	replay.Flags().BoolVar(&raw, "raw", false, "write the output as recorded, escape sequences that drive the terminal (clipboard, title, queries) included")
	cmd.AddCommand(replay)
	return cmd
}

// checkCast refuses a terminal recording of session id that verify finds
// altered: replaying forged content as the session's would mislead.
func checkCast(st *record.Store, id, name string) error {
	res, err := st.Verify(id)
	if err != nil {
		return err
	}
	for _, rc := range res.Recordings {
		if rc.Name == name && rc.Status == record.RecordingAltered {
			return fmt.Errorf("terminal recording %s %s, so it is not replayed (see interlock sessions verify %s)",
				name, rc.Problem, id)
		}
	}
	return nil
}

func writeJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// verifyOutput is sessions verify's JSON: the result and its status.
type verifyOutput struct {
	Status string // intact, incomplete or tampered: what the exit status (0, 2, 1) says
	record.VerifyResult
}

// verifyStatus names a verification's outcome and its exit status.
func verifyStatus(res record.VerifyResult) (string, int) {
	switch {
	case !res.OK:
		return "tampered", 1
	case !res.Complete:
		return "incomplete", 2
	default:
		return "intact", 0
	}
}

// verifyText is sessions verify's line for people.
func verifyText(id string, res record.VerifyResult) string {
	switch {
	case !res.OK:
		return fmt.Sprintf("%s: TAMPERED: %s", id, res.Problem)
	case !res.Complete:
		return fmt.Sprintf("%s: intact but INCOMPLETE, %d events: %s (the session is still open, "+
			"its gateway stopped before the session ended, or the end of the log was cut off)", id, res.Events, res.Problem) +
			uncoveredText(res)
	default:
		return fmt.Sprintf("%s: intact and complete, %d events", id, res.Events) + uncoveredText(res)
	}
}

// uncoveredText names the terminal recordings the log holds no hash of,
// which verify could not check.
func uncoveredText(res record.VerifyResult) string {
	var names []string
	for _, rc := range res.Recordings {
		if rc.Status == record.RecordingUncovered {
			names = append(names, rc.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf("; terminal recording(s) %s not covered: the log holds no hash of them "+
		"(written before recordings were hashed, still being written, or their writing failed), "+
		"so they could have been altered", strings.Join(names, ", "))
}
