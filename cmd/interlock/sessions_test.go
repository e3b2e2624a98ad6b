package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/record"
)

// sessionsConfig is the demo configuration with its state folder in a
// temporary one; it returns the config file and the recordings folder.
func sessionsConfig(t *testing.T) (cfg, recordings string) {
	t.Helper()
	cfg = demoConfig(t)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	text := strings.ReplaceAll(string(b), "/tmp/interlock-demo/state", state)
	if text == string(b) {
		t.Fatal("the demo config's state_dir moved; update sessionsConfig")
	}
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, filepath.Join(state, "recordings")
}

// recordSession writes a session of n commands to the store in dir,
// closing it when closed is set.
func recordSession(t *testing.T, dir, id string, n int, closed bool) {
	t.Helper()
	st, err := record.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := st.Create(id, record.Start{Protocol: "postgres", Target: "db", Subject: "agent:demo"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		decision := "allow"
		if i%3 == 0 {
			decision = "deny"
		}
		if err := r.Command(record.Command{Text: "SELECT 1", Decision: decision}); err != nil {
			t.Fatal(err)
		}
	}
	if !closed {
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := r.Close(record.End{Reason: "client closed"}); err != nil {
		t.Fatal(err)
	}
}

func exitStatus(err error) int {
	var exit exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return int(exit)
	default:
		return -1
	}
}

func TestSessionsVerifyExitStatus(t *testing.T) {
	cfg, dir := sessionsConfig(t)
	recordSession(t, dir, "complete", 3, true)
	recordSession(t, dir, "open", 3, false)
	recordSession(t, dir, "partial", 3, true)
	recordSession(t, dir, "tampered", 3, true)
	edit := func(id string, f func([]byte) []byte) {
		p := filepath.Join(dir, id+".jsonl")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	edit("partial", func(b []byte) []byte { return b[:len(b)-20] })
	edit("tampered", func(b []byte) []byte { return []byte(strings.Replace(string(b), `"deny"`, `"allow"`, 1)) })

	tests := []struct {
		id, text, status string
		exit             int
	}{
		{"complete", "complete: intact and complete, 5 events", "intact", 0},
		{"open", "open: intact but INCOMPLETE, 4 events: no session_end after line 4", "incomplete", 2},
		{"partial", "partial: intact but INCOMPLETE, 4 events: line 5: partial last line left out", "incomplete", 2},
		{"tampered", "tampered: TAMPERED: line 2: hash mismatch", "tampered", 1},
	}
	for _, tt := range tests {
		out, err := runCLI(t, "sessions", "verify", tt.id, "--config", cfg)
		if got := exitStatus(err); got != tt.exit || !strings.HasPrefix(out, tt.text) {
			t.Errorf("verify %s: exit %d, %q; want exit %d, %q...", tt.id, got, out, tt.exit, tt.text)
		}
		out, err = runCLI(t, "sessions", "verify", tt.id, "--config", cfg, "-o", "json")
		var got struct {
			Status   string
			OK       bool
			Complete bool
			Problem  string
		}
		if jerr := json.Unmarshal([]byte(out), &got); jerr != nil || got.Status != tt.status || exitStatus(err) != tt.exit {
			t.Errorf("verify -o json %s: exit %d, %s (%v); want status %q, exit %d", tt.id, exitStatus(err), out, jerr, tt.status, tt.exit)
		}
	}
}

// TestSessionsReadOnly: the sessions commands create nothing; with no
// recordings folder, list finds no sessions and show/verify say so.
func TestSessionsReadOnly(t *testing.T) {
	cfg, dir := sessionsConfig(t)
	out, err := runCLI(t, "sessions", "list", "--config", cfg)
	if err != nil || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "ID ") {
		t.Errorf("list without recordings: %q, %v; want the header only", out, err)
	}
	if out, err := runCLI(t, "sessions", "list", "--config", cfg, "-o", "json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("list -o json without recordings: %q, %v", out, err)
	}
	for _, sub := range []string{"show", "verify", "replay"} {
		if _, err := runCLI(t, "sessions", sub, "20261129T071500Z-1a2b3c4d", "--config", cfg); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("%s without recordings: %v, want %v", sub, err, record.ErrNotFound)
		}
	}
	if _, err := os.Stat(filepath.Dir(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state folder was created: %v", err)
	}
}

// TestSessionsList: list's table shows ended and open sessions with their
// counts (ended ones from their last line, open ones by reading them).
func TestSessionsList(t *testing.T) {
	cfg, dir := sessionsConfig(t)
	recordSession(t, dir, "20261129T071500Z-aaaaaaaa", 7, true)
	recordSession(t, dir, "20261129T071501Z-bbbbbbbb", 4, false)
	out, err := runCLI(t, "sessions", "list", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]string{
		{"20261129T071500Z-aaaaaaaa", "7", "3", "ended"},
		{"20261129T071501Z-bbbbbbbb", "4", "2", "incomplete"},
	} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && f[0] == want[0] {
				found = true
				if got := f[len(f)-3:]; strings.Join(got, " ") != strings.Join(want[1:], " ") {
					t.Errorf("%s: commands, denied, state %v; want %v", want[0], got, want[1:])
				}
			}
		}
		if !found {
			t.Errorf("list does not show %s:\n%s", want[0], out)
		}
	}
}

// castOutput is a terminal recording's output: colours, and what a
// compromised target could send to drive the replaying terminal, split
// across events.
const castOutput = `{"version":2,"width":80,"height":24}` + "\n" +
	`[0.1, "o", "\u001b[1;32mok\u001b[0m\u001b]52;c;Y3VybCBldmls"]` + "\n" +
	`[0.2, "o", "LmV4YW1wbGUgfCBzaAo=\u0007\u001b]0;title\u0007\u001b[6n\u001bP$qm\u001b\\ done\r\n"]` + "\n"

// recordShell writes session id with one shell whose terminal recording
// holds castOutput; its command event holds the recording's hash when
// covered (as the gateway writes it), or not (as it did before).
func recordShell(t *testing.T, dir, id string, covered bool) (castPath string) {
	t.Helper()
	st, err := record.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	name := id + ".1.cast"
	castPath = filepath.Join(dir, name)
	if err := os.WriteFile(castPath, []byte(castOutput), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := st.Create(id, record.Start{Protocol: "ssh", Target: "bastion", Subject: "agent:demo"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cmd := record.Command{Text: "(shell)", Command: "shell", Decision: "allow", Tag: "exit 0", Recording: name}
	if covered {
		sum := sha256.Sum256([]byte(castOutput))
		cmd.RecordingSHA256, cmd.RecordingBytes = hex.EncodeToString(sum[:]), int64(len(castOutput))
	}
	if err := r.Command(cmd); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(record.End{Reason: "client closed"}); err != nil {
		t.Fatal(err)
	}
	return castPath
}

// sessions verify covers the terminal recordings: one altered, cut or
// deleted is tampering (exit 1); one a log written before recordings were
// hashed names verifies as before, and verify says it is not covered.
func TestSessionsVerifyRecordings(t *testing.T) {
	cfg, dir := sessionsConfig(t)
	recordShell(t, dir, "intact", true)
	rewritten := recordShell(t, dir, "rewritten", true)
	os.WriteFile(rewritten, []byte(strings.Replace(castOutput, "done", "fine", 1)), 0o600)
	cut := recordShell(t, dir, "cut", true)
	os.Truncate(cut, 40)
	os.Remove(recordShell(t, dir, "deleted", true))
	recordShell(t, dir, "old", false)

	tests := []struct {
		id, text, status string
		exit             int
	}{
		{"intact", "intact: intact and complete, 3 events\n", "intact", 0},
		{"rewritten", `rewritten: TAMPERED: line 2: terminal recording "rewritten.1.cast" was altered: its sha256 is `, "tampered", 1},
		{"cut", `cut: TAMPERED: line 2: terminal recording "cut.1.cast" was altered: it has 40 bytes, the log says `, "tampered", 1},
		{"deleted", `deleted: TAMPERED: line 2: terminal recording "deleted.1.cast" is missing`, "tampered", 1},
		{"old", "old: intact and complete, 3 events; terminal recording(s) old.1.cast not covered: the log holds no hash of them", "intact", 0},
	}
	for _, tt := range tests {
		out, err := runCLI(t, "sessions", "verify", tt.id, "--config", cfg)
		if got := exitStatus(err); got != tt.exit || !strings.HasPrefix(out, tt.text) {
			t.Errorf("verify %s: exit %d, %q; want exit %d, %q...", tt.id, got, out, tt.exit, tt.text)
		}
		out, err = runCLI(t, "sessions", "verify", tt.id, "--config", cfg, "-o", "json")
		var got struct {
			Status     string
			Recordings []record.RecordingCheck
		}
		if jerr := json.Unmarshal([]byte(out), &got); jerr != nil || got.Status != tt.status || exitStatus(err) != tt.exit ||
			len(got.Recordings) != 1 || got.Recordings[0].Name != tt.id+".1.cast" {
			t.Errorf("verify -o json %s: exit %d, %s (%v); want status %q, exit %d, the recording", tt.id, exitStatus(err), out, jerr, tt.status, tt.exit)
		}
	}
}

// sessions replay writes what renders the session and drops what would
// drive the operator's terminal, however the recording split it; --raw
// writes it all. An altered recording is not replayed.
func TestSessionsReplayFiltered(t *testing.T) {
	cfg, dir := sessionsConfig(t)
	recordShell(t, dir, "s", true)
	const filtered = "\x1b[1;32mok\x1b[0m done\r\n"
	const raw = "\x1b[1;32mok\x1b[0m\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaAo=\a\x1b]0;title\a\x1b[6n\x1bP$qm\x1b\\ done\r\n"
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--dump"}, filtered},
		{[]string{"--speed", "1000"}, filtered},
		{[]string{"--dump", "--raw"}, raw},
		{[]string{"--speed", "1000", "--raw"}, raw},
	} {
		out, err := runCLI(t, append([]string{"sessions", "replay", "s", "--config", cfg}, tt.args...)...)
		if err != nil || out != tt.want {
			t.Errorf("replay %v: %q, %v; want %q", tt.args, out, err, tt.want)
		}
	}

	forged := recordShell(t, dir, "forged", true)
	os.WriteFile(forged, []byte(strings.Replace(castOutput, "done", "fine", 1)), 0o600)
	out, err := runCLI(t, "sessions", "replay", "forged", "--dump", "--raw", "--config", cfg)
	if err == nil || !strings.Contains(err.Error(), "forged.1.cast was altered") || strings.Contains(out, "fine") {
		t.Errorf("replay of an altered recording: %q, %v", out, err)
	}
}

// replayCLI runs sessions replay --dump with the config, returning its
// output and what it wrote to stderr apart.
func replayCLI(t *testing.T, cfg string, args ...string) (out, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := newRootCommand(&o, &e)
	cmd.SetArgs(append([]string{"sessions", "replay", "--dump", "--config", cfg}, args...))
	err = cmd.Execute()
	return o.String(), e.String(), err
}

// sessions replay plays only a recording that sessions verify accepts: not
// one replaced by a link or a FIFO (which verify reports as tampered), nor
// another session's recording that an edited log names.
func TestSessionsReplayRefusesTampered(t *testing.T) {
	cfg, dir := sessionsConfig(t)
	forged := []byte(strings.Replace(castOutput, "done", "FORGED", 1))
	elsewhere := filepath.Join(t.TempDir(), "forged.cast")
	if err := os.WriteFile(elsewhere, forged, 0o600); err != nil {
		t.Fatal(err)
	}

	link := recordShell(t, dir, "link", true)
	os.Remove(link)
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	out, _, err := replayCLI(t, cfg, "link")
	if err == nil || !strings.Contains(err.Error(), "link.1.cast is not a regular file") || out != "" {
		t.Errorf("replay of a recording replaced by a link: %q, %v; want it refused", out, err)
	}

	fifo := recordShell(t, dir, "fifo", true)
	os.Remove(fifo)
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A writer that feeds the forged recording to whoever opens the FIFO.
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Write(forged)
			w.Close()
		}
	}()
	t.Cleanup(func() {
		// Unblock the writer when nothing opened the FIFO.
		if r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			<-fed
			r.Close()
		}
	})
	out, _, err = replayCLI(t, cfg, "fifo")
	if err == nil || !strings.Contains(err.Error(), "fifo.1.cast is not a regular file") || out != "" {
		t.Errorf("replay of a recording replaced by a FIFO: %q, %v; want it refused", out, err)
	}

	recordShell(t, dir, "other", true)
	recordShell(t, dir, "renamed", true)
	p := filepath.Join(dir, "renamed.jsonl")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte(`"renamed.1.cast"`), []byte(`"other.1.cast"`)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, "sessions", "verify", "renamed", "--config", cfg); exitStatus(err) != 1 {
		t.Fatalf("verify of the renamed recording's log: %q, %v; want it tampered", out, err)
	}
	out, _, err = replayCLI(t, cfg, "renamed")
	if err == nil || !strings.Contains(err.Error(), "session renamed was tampered with (line 2: hash mismatch)") || out != "" {
		t.Errorf("replay of a log edited to name another recording: %q, %v; want it refused", out, err)
	}
	if _, _, err = replayCLI(t, cfg, "renamed", "2"); err == nil || !strings.Contains(err.Error(), "tampered") {
		t.Errorf("replay of recording 2 of an edited log: %v; want it refused", err)
	}
}

// A recording that a log written before recordings were hashed names
// plays, with a warning that nothing shows it was not altered.
func TestSessionsReplayUncovered(t *testing.T) {
	cfg, dir := sessionsConfig(t)
	recordShell(t, dir, "old", false)
	recordShell(t, dir, "new", true)
	const filtered = "\x1b[1;32mok\x1b[0m done\r\n"
	out, stderr, err := replayCLI(t, cfg, "old")
	if err != nil || out != filtered || !strings.Contains(stderr, "warning: the log of session old holds no hash of terminal recording old.1.cast") {
		t.Errorf("replay of an uncovered recording: %q, stderr %q, %v; want it played with a warning", out, stderr, err)
	}
	out, stderr, err = replayCLI(t, cfg, "new")
	if err != nil || out != filtered || stderr != "" {
		t.Errorf("replay of a covered recording: %q, stderr %q, %v; want it played without a warning", out, stderr, err)
	}
	if _, _, err = replayCLI(t, cfg, "new", "2"); err == nil || !strings.Contains(err.Error(), "has 1 terminal recording(s)") {
		t.Errorf("replay of a recording past the last: %v", err)
	}
}

// What replay plays is what it hashed: a recording swapped after sessions
// verify looked at it is refused, and so is a link swapped in.
func TestSessionsReplaySwapped(t *testing.T) {
	_, dir := sessionsConfig(t)
	cast := recordShell(t, dir, "s", true)
	st, err := record.OpenStoreReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Verify("s")
	if err != nil || !res.OK || len(res.Recordings) != 1 || res.Recordings[0].Status != record.RecordingIntact {
		t.Fatalf("verify: %+v, %v", res, err)
	}
	rc := res.Recordings[0]
	if data, err := st.ReadRecording(rc); err != nil || string(data) != castOutput {
		t.Fatalf("ReadRecording of the verified recording: %q, %v", data, err)
	}
	for name, swap := range map[string]func(){
		"rewritten": func() { os.WriteFile(cast, []byte(strings.Replace(castOutput, "done", "FORGE", 1)), 0o600) },
		"longer":    func() { os.WriteFile(cast, []byte(castOutput+castOutput), 0o600) },
		"link": func() {
			other := filepath.Join(t.TempDir(), "c")
			os.WriteFile(other, []byte(castOutput), 0o600)
			os.Remove(cast)
			os.Symlink(other, cast)
		},
	} {
		swap()
		if data, err := st.ReadRecording(rc); err == nil {
			t.Errorf("ReadRecording of a recording %s after verify: %q, no error", name, data)
		}
		os.Remove(cast)
		os.WriteFile(cast, []byte(castOutput), 0o600)
	}
}
