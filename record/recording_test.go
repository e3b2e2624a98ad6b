package record

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// castName is the terminal recording the test sessions name.
const castName = testID + ".1.cast"

// testCast is a terminal recording's content.
const testCast = `{"version":2,"width":80,"height":24}` + "\n" +
	`[0.100000, "o", "$ id\r\n"]` + "\n" +
	`[0.200000, "o", "uid=0(root)\r\n"]` + "\n"

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// writeShellSession records a session with one shell whose terminal
// recording is testCast: its command event holds the cast's hash (covered),
// or does not (a log written before recordings were hashed); with strict
// recording the hash is in the command's result.
func writeShellSession(t *testing.T, s *Store, covered bool) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.Dir(), castName), []byte(testCast), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := s.Create(testID, testStart(), t0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := Command{Text: "(shell)", Command: "shell", Decision: "allow", Tag: "exit 0", Recording: castName}
	if covered {
		cmd.RecordingSHA256, cmd.RecordingBytes = digest([]byte(testCast)), int64(len(testCast))
	}
	if s.Strict {
		begun := cmd
		begun.Tag, begun.RecordingSHA256, begun.RecordingBytes = "", "", 0
		seq, err := r.Begin(begun)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Result(cmd.Outcome(seq)); err != nil {
			t.Fatal(err)
		}
	} else if err := r.Command(cmd); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(End{Reason: "client closed"}); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyRecordings: a terminal recording whose hash the log holds is
// part of what Verify checks: rewriting, cutting or deleting it is
// tampering, with the command event (or its strict result) either way. A
// log without the hash (written before) verifies as before, and says the
// recording is not covered.
func TestVerifyRecordings(t *testing.T) {
	cast := func(s *Store) string { return filepath.Join(s.Dir(), castName) }
	tests := []struct {
		name    string
		covered bool
		tamper  func(t *testing.T, s *Store)
		ok      bool
		status  string
		problem string // the start of VerifyResult.Problem
	}{
		{name: "intact", covered: true, ok: true, status: RecordingIntact},
		{
			name: "output rewritten, same length", covered: true,
			tamper: func(t *testing.T, s *Store) {
				forged := strings.Replace(testCast, "uid=0(root)", "uid=0(user)", 1)
				os.WriteFile(cast(s), []byte(forged), 0o600)
			},
			status: RecordingAltered, problem: `line 2: terminal recording "` + castName + `" was altered: its sha256 is `,
		},
		{
			name: "cut", covered: true,
			tamper: func(t *testing.T, s *Store) { os.Truncate(cast(s), int64(len(testCast)-20)) },
			status: RecordingAltered,
			problem: `line 2: terminal recording "` + castName + `" was altered: it has ` +
				strconv.Itoa(len(testCast)-20) + ` bytes, the log says ` + strconv.Itoa(len(testCast)),
		},
		{
			name: "appended to", covered: true,
			tamper: func(t *testing.T, s *Store) {
				f, _ := os.OpenFile(cast(s), os.O_APPEND|os.O_WRONLY, 0)
				f.WriteString(`[0.300000, "o", "forged\r\n"]` + "\n")
				f.Close()
			},
			status: RecordingAltered, problem: `line 2: terminal recording "` + castName + `" was altered: it has`,
		},
		{
			name: "deleted", covered: true,
			tamper: func(t *testing.T, s *Store) { os.Remove(cast(s)) },
			status: RecordingMissing, problem: `line 2: terminal recording "` + castName + `" is missing`,
		},
		{
			name: "replaced by a FIFO", covered: true,
			tamper: func(t *testing.T, s *Store) {
				os.Remove(cast(s))
				if err := syscall.Mkfifo(cast(s), 0o600); err != nil {
					t.Skip("no FIFOs here:", err)
				}
			},
			status: RecordingMissing, problem: `line 2: terminal recording "` + castName + `" is not a regular file`,
		},
		{
			name: "replaced by a link to the real content", covered: true,
			tamper: func(t *testing.T, s *Store) {
				elsewhere := filepath.Join(t.TempDir(), "c")
				os.WriteFile(elsewhere, []byte(testCast), 0o600)
				os.Remove(cast(s))
				os.Symlink(elsewhere, cast(s))
			},
			status: RecordingMissing, problem: `line 2: terminal recording "` + castName + `" is not a regular file`,
		},
		{name: "old format", ok: true, status: RecordingUncovered},
		{
			name: "old format, rewritten",
			tamper: func(t *testing.T, s *Store) {
				os.WriteFile(cast(s), []byte(strings.Replace(testCast, "root", "user", 1)), 0o600)
			},
			ok: true, status: RecordingUncovered, // nothing to check it against
		},
		{
			name:   "old format, deleted",
			tamper: func(t *testing.T, s *Store) { os.Remove(cast(s)) },
			status: RecordingMissing, problem: `line 2: terminal recording "` + castName + `" is missing`,
		},
	}
	for _, strict := range []bool{false, true} {
		for _, tt := range tests {
			name := tt.name
			if strict {
				name += ", strict"
			}
			t.Run(name, func(t *testing.T) {
				s := newTestStore(t)
				s.Strict = strict
				writeShellSession(t, s, tt.covered)
				if tt.tamper != nil {
					tt.tamper(t, s)
				}
				res, err := s.Verify(testID)
				if err != nil {
					t.Fatal(err)
				}
				if res.OK != tt.ok || res.Complete != tt.ok || !strings.HasPrefix(res.Problem, tt.problem) ||
					(tt.problem == "" && res.Problem != "") {
					t.Errorf("Verify = %+v\nwant OK and Complete %v, problem %q...", res, tt.ok, tt.problem)
				}
				if len(res.Recordings) != 1 {
					t.Fatalf("recordings %+v, want the one named", res.Recordings)
				}
				rc := res.Recordings[0]
				if rc.Name != castName || rc.Line != 2 || rc.Status != tt.status {
					t.Errorf("recording %+v, want %s named on line 2, %s", rc, castName, tt.status)
				}
				if tt.covered && (rc.SHA256 != digest([]byte(testCast)) || rc.Bytes != int64(len(testCast))) {
					t.Errorf("recording %+v: not the hash the log holds", rc)
				}
			})
		}
	}
}

// A strict session still running has named its recording but not yet
// given its hash: intact but incomplete, the recording not covered.
func TestVerifyRecordingStillRunning(t *testing.T) {
	s, r := strictSessionWithCast(t)
	defer r.Close(End{})
	if _, err := r.Begin(Command{Text: "(shell)", Command: "shell", Decision: "allow", Recording: castName}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Verify(testID)
	if err != nil || !res.OK || res.Complete || len(res.Recordings) != 1 || res.Recordings[0].Status != RecordingUncovered {
		t.Errorf("Verify = %+v, %v; want OK, incomplete, the recording uncovered", res, err)
	}
}

// A recording named outside the store's folder is never opened.
func TestVerifyRecordingOutsideStore(t *testing.T) {
	for _, name := range []string{"../" + castName, "/etc/passwd", ".hidden.cast", "a/b.cast", "x..cast"} {
		s := newTestStore(t)
		r, err := s.Create(testID, testStart(), t0)
		if err != nil {
			t.Fatal(err)
		}
		r.Command(Command{Text: "(shell)", Decision: "allow", Recording: name, RecordingSHA256: digest(nil)})
		r.Close(End{})
		res, err := s.Verify(testID)
		if err != nil || res.OK || len(res.Recordings) != 1 || res.Recordings[0].Status != RecordingAltered ||
			!strings.Contains(res.Problem, "is not a file name the gateway writes") {
			t.Errorf("%q: Verify = %+v, %v", name, res, err)
		}
	}
}

// A result's hash goes to the recording its command event named, and only
// the first hash given counts.
func TestVerifyRecordingResultPairing(t *testing.T) {
	s, r := strictSessionWithCast(t)
	good := Result{Tag: "exit 0", RecordingSHA256: digest([]byte(testCast)), RecordingBytes: int64(len(testCast))}
	other, _ := r.Begin(Command{Text: "ls", Command: "exec", Decision: "allow"}) // names no recording
	shell, _ := r.Begin(Command{Text: "(shell)", Command: "shell", Decision: "allow", Recording: castName})
	wrongOf := good
	wrongOf.Of, wrongOf.RecordingSHA256 = other, digest(nil) // a hash for a command without a recording: ignored
	r.Result(wrongOf)
	good.Of = shell
	r.Result(good)
	later := good
	later.RecordingSHA256 = digest(nil)
	r.Result(later)
	r.Close(End{})
	res, err := s.Verify(testID)
	if err != nil || !res.OK || !res.Complete || len(res.Recordings) != 1 || res.Recordings[0].Status != RecordingIntact ||
		res.Recordings[0].Line != 3 {
		t.Errorf("Verify = %+v, %v", res, err)
	}
}

// The transcript shows a recording's hash where the log holds it.
func TestRecordingInTranscript(t *testing.T) {
	for _, strict := range []bool{false, true} {
		s := newTestStore(t)
		s.Strict = strict
		writeShellSession(t, s, true)
		events, err := s.Events(testID)
		if err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		WriteText(&text, events)
		want := fmt.Sprintf(" (%d bytes, sha256 %s)", len(testCast), digest([]byte(testCast)))
		if !strings.Contains(text.String(), want) || !strings.Contains(text.String(), "terminal recording "+castName) {
			t.Errorf("strict=%v transcript:\n%s\nwant %q", strict, text.String(), want)
		}
	}
}

// strictSessionWithCast is a strict store with the test cast in it, and a
// session begun in it.
func strictSessionWithCast(t *testing.T) (*Store, *Recorder) {
	t.Helper()
	s := newTestStore(t)
	s.Strict = true
	os.WriteFile(filepath.Join(s.Dir(), castName), []byte(testCast), 0o600)
	r, err := s.Create(testID, testStart(), t0)
	if err != nil {
		t.Fatal(err)
	}
	return s, r
}
