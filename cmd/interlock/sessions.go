package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
Only what sessions verify accepts is played: nothing when the session's log
or one of its recordings was tampered with (sessions verify says what
differs), and a recording its log holds no hash of (a log written before
recordings were hashed, or a command still running) with a warning that it
could have been altered. The file played is the one whose hash was checked.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			n := 1
			if len(args) == 2 {
				if n, err = strconv.Atoi(args[1]); err != nil || n < 1 {
					return fmt.Errorf("recording number %q is not a number from 1", args[1])
				}
			}
			data, err := verifiedCast(cmd.ErrOrStderr(), st, args[0], n)
			if err != nil {
				return err
			}
			f := bytes.NewReader(data)
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

// verifiedCast returns the bytes of session id's nth terminal recording
// (from 1) as sessions verify accepts it. It refuses when verify finds the
// session tampered with: a broken chain (whose recording names could be
// forged), or a recording altered, deleted or replaced by something that is
// not a regular file (a link, a FIFO). It takes the recording from the
// events verify accepted, and plays only what it read and hashed itself,
// so a file swapped after verify's look is refused, not played. A
// recording the log holds no hash of is returned with a warning on stderr.
func verifiedCast(stderr io.Writer, st *record.Store, id string, n int) ([]byte, error) {
	res, err := st.Verify(id)
	if err != nil {
		return nil, err
	}
	if n <= len(res.Recordings) {
		if rc := res.Recordings[n-1]; rc.Status == record.RecordingAltered || rc.Status == record.RecordingMissing {
			return nil, fmt.Errorf("terminal recording %s %s, so it is not replayed (see interlock sessions verify %s)",
				rc.Name, rc.Problem, id)
		}
	}
	if !res.OK {
		return nil, fmt.Errorf("session %s was tampered with (%s), so its terminal recordings are not replayed "+
			"(see interlock sessions verify %s)", id, res.Problem, id)
	}
	if n > len(res.Recordings) {
		return nil, fmt.Errorf("session %s has %d terminal recording(s)", id, len(res.Recordings))
	}
	rc := res.Recordings[n-1]
	data, err := st.ReadRecording(rc)
	if err != nil {
		return nil, fmt.Errorf("%w, so it is not replayed", err)
	}
	if rc.Status == record.RecordingUncovered {
		fmt.Fprintf(stderr, "warning: the log of session %s holds no hash of terminal recording %s (written before "+
			"recordings were hashed, still being written, or its writing failed), so it could have been altered\n", id, rc.Name)
	}
	return data, nil
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
