package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/policy/review"
	"github.com/interlock-dev/interlock/proxy"
)

// TestApprovalShownEscaped: a held command with a carriage return and a
// terminal escape that would redraw its line as "ls -la" is shown with
// both visible, with what policy read it as.
func TestApprovalShownEscaped(t *testing.T) {
	a := approvalView{ID: "ab2cd3ef4g", State: "pending", Command: "touch /x #\r\x1b[2Kls -la", Kind: "exec", Operation: "touch",
		Target: "bastion", Protocol: "ssh", Workload: "agent", Requester: "agent", Rule: "review", Approvers: []string{"ops"}}
	var b bytes.Buffer
	writeApproval(&b, a)
	out := b.String()
	for _, want := range []string{`command   touch /x #\r\x1b[2Kls -la` + "\n", "reads as  exec: touch\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("show prints\n%s\nwithout %q", out, want)
		}
	}
	if strings.ContainsAny(out, "\r\x1b") {
		t.Errorf("show prints control characters: %q", out)
	}
	long := "ls #" + strings.Repeat(" ", 200) + "\nrm -rf /srv"
	if got := oneLine(long, 60); !strings.Contains(got, "[truncated: 216 bytes in all]") || strings.Contains(got, "\n") {
		t.Errorf("list cell %q: want it marked as cut short, on one line", got)
	}
}

// adminTestConfig is the demo configuration with its admin address at
// srv, and a token file holding alice's admin token.
func adminTestConfig(t *testing.T, srv *httptest.Server) (cfg, tokenFile string) {
	t.Helper()
	cfg = demoConfig(t)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "admin: 127.0.0.1:9470", "admin: "+srv.Listener.Addr().String())
	if text == string(b) {
		t.Fatal("the demo config's admin address moved; update adminTestConfig")
	}
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(adminTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, tokenFile
}

// TestLongCommandShownWhole: a statement whose dangerous part comes after
// 4 KiB reaches the approver whole through the API's JSON for one
// request, `approvals show`, and its `-o json`; a list carries its start
// with the true length and hash, and its cells say the true length; and
// approve refuses until the approver says they read it whole.
func TestLongCommandShownWhole(t *testing.T) {
	g := adminTestGateway(t, "")
	store, err := review.Open(filepath.Join(t.TempDir(), "approvals.db"), review.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	g.approvals = store
	mux := http.NewServeMux()
	g.approvalsAPI(mux)
	srv := httptest.NewServer(g.adminAuth.Require(mux))
	defer srv.Close()
	cfg, tokenFile := adminTestConfig(t, srv)

	command := "UPDATE accounts SET note = '" + strings.Repeat("x", 4100) + "', is_admin = true WHERE id = 7"
	const tail = "is_admin = true WHERE id = 7"
	held, err := store.Submit(t.Context(), review.Request{
		SessionID: "s1", Target: "shop", Protocol: "postgres", Workload: "support",
		Requester: identity.Identity{Subject: "agent"}, Command: command, Kind: "write", Operation: "UPDATE",
		Rule: "writes", Approvers: []string{"dba"}, Timeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (string, error) {
		return runCLI(t, append([]string{"approvals"}, append(args, "--config", cfg, "--token-file", tokenFile)...)...)
	}

	// The API.
	code, body := adminGet(t, srv, "/api/v1/approvals/"+held.ID, adminTestToken)
	var v approvalView
	if err := json.Unmarshal([]byte(body), &v); code != http.StatusOK || err != nil {
		t.Fatalf("GET: %d %v\n%.300s", code, err, body)
	}
	sum := sha256.Sum256([]byte(command))
	if v.Command != command || v.CommandBytes != len(command) || v.CommandSHA256 != hex.EncodeToString(sum[:]) || v.CommandTruncated {
		t.Errorf("the API's command is %d bytes (command_bytes %d, sha256 %s, truncated %v), want the %d sent",
			len(v.Command), v.CommandBytes, v.CommandSHA256, v.CommandTruncated, len(command))
	}

	// show, as text and as JSON.
	out, err := cli("show", held.ID)
	if err != nil {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if !strings.Contains(out, "command   "+command+"\n") || !strings.Contains(out, fmt.Sprintf("bytes     %d, all shown above", len(command))) ||
		!strings.Contains(out, "sha256    "+hex.EncodeToString(sum[:])+"\n") {
		t.Errorf("show does not print the whole command and its length:\n%.200s…%s", out, out[max(0, len(out)-600):])
	}
	out, err = cli("show", held.ID, "-o", "json")
	if err := errors.Join(err, json.Unmarshal([]byte(out), &v)); err != nil || v.Command != command {
		t.Errorf("show -o json: %v, command of %d bytes", err, len(v.Command))
	}

	// list: the cell is cut, says so with the true length.
	out, err = cli("list")
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("… [truncated: %d bytes in all]", len(command)); !strings.Contains(out, want) {
		t.Errorf("list lacks %q:\n%s", want, out)
	}
	out, err = cli("list", "-o", "json")
	var list []approvalView
	if err := errors.Join(err, json.Unmarshal([]byte(out), &list)); err != nil || len(list) != 1 {
		t.Fatalf("list -o json: %v, %d requests", err, len(list))
	}
	if l := list[0]; l.Command != command[:review.CommandPrefixLen] || !l.CommandTruncated || l.CommandBytes != len(command) || l.CommandSHA256 != v.CommandSHA256 {
		t.Errorf("list -o json: command of %d bytes, truncated %v, command_bytes %d, sha256 %q; want its first %d, %d, %q",
			len(l.Command), l.CommandTruncated, l.CommandBytes, l.CommandSHA256, review.CommandPrefixLen, len(command), v.CommandSHA256)
	}

	// approve: refused until --read-whole.
	if _, err = cli("approve", held.ID); err == nil || !strings.Contains(err.Error(), "--read-whole") ||
		!strings.Contains(err.Error(), fmt.Sprintf("a command of %d bytes", len(command))) {
		t.Errorf("approve of a long command without --read-whole: %v", err)
	}
	if r, _ := store.Get(held.ID); r.State != review.Pending {
		t.Fatalf("the refused approve decided the request: %s", r.State)
	}
	out, err = cli("approve", held.ID, "--read-whole")
	if err != nil || !strings.Contains(out, "approved by alice") {
		t.Fatalf("approve --read-whole: %v\n%s", err, out)
	}
	if r, _ := store.Get(held.ID); r.Command != command || !strings.HasSuffix(r.Command, tail) {
		t.Errorf("the approved request's command is %d bytes, want %d", len(r.Command), len(command))
	}

	// A short command needs no flag.
	short, err := store.Submit(t.Context(), review.Request{
		SessionID: "s1", Target: "shop", Protocol: "postgres", Workload: "support",
		Requester: identity.Identity{Subject: "agent"}, Command: "UPDATE t SET a = 1", Kind: "write", Operation: "UPDATE",
		Rule: "writes", Approvers: []string{"dba"}, Timeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cli("approve", short.ID); err != nil || !strings.Contains(out, "approved by alice") {
		t.Errorf("approve of a short command: %v\n%s", err, out)
	}
}

// TestShowNamesBytesJSONReplaced: bytes that are not UTF-8 reach the CLI
// as U+FFFD (JSON cannot carry them); show says how long the command was
// as sent.
func TestShowNamesBytesJSONReplaced(t *testing.T) {
	v := viewOf(review.Request{ID: "ab2cd3ef4g", State: review.Pending, Command: "rm /srv/\xff"})
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var got approvalView
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	writeApproval(&out, got)
	if !strings.Contains(out.String(), "bytes     9 as sent; those that are not UTF-8 show as � above") {
		t.Errorf("show prints\n%s", out.String())
	}
}

func TestApproveHint(t *testing.T) {
	short := review.Request{ID: "r1", Approvers: []string{"dba"}, Command: "UPDATE t SET x = 1 WHERE id = 7"}
	if got, want := approveHint(short), "an approver in [dba] runs: interlock approvals approve r1"; got != want {
		t.Errorf("short command: %q, want %q", got, want)
	}
	long := short
	long.Command = "UPDATE t SET note = '" + strings.Repeat("x", 300) + "', is_admin = true WHERE id = 7"
	if got, want := approveHint(long), "an approver in [dba] runs: interlock approvals show r1, then interlock approvals approve r1 --read-whole"; got != want {
		t.Errorf("long command: %q, want %q", got, want)
	}
}

// TestListCarriesCommandStart: the list API answers with each command's
// start, not the whole of a multi-MiB one, while GET of the one request
// (show) and the read-whole check before approve still see it whole.
func TestListCarriesCommandStart(t *testing.T) {
	g := adminTestGateway(t, "")
	store, err := review.Open(filepath.Join(t.TempDir(), "approvals.db"), review.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	g.approvals = store
	mux := http.NewServeMux()
	g.approvalsAPI(mux)
	srv := httptest.NewServer(g.adminAuth.Require(mux))
	defer srv.Close()
	cfg, tokenFile := adminTestConfig(t, srv)
	cli := func(args ...string) (string, error) {
		return runCLI(t, append([]string{"approvals"}, append(args, "--config", cfg, "--token-file", tokenFile)...)...)
	}

	command := "UPDATE notes SET body = '" + strings.Repeat("é", 4<<20) + "' WHERE id = 7" // 8 MiB
	held, err := store.Submit(t.Context(), review.Request{
		SessionID: "s1", Target: "shop", Protocol: "postgres", Workload: "support",
		Requester: identity.Identity{Subject: "agent"}, Command: command, Kind: "write", Operation: "UPDATE",
		Rule: "writes", Approvers: []string{"dba"}, Timeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(command))
	hash := hex.EncodeToString(sum[:])
	for _, q := range []string{"", "?state=pending"} {
		code, body := adminGet(t, srv, "/api/v1/approvals"+q, adminTestToken)
		if code != http.StatusOK || len(body) > 16<<10 {
			t.Fatalf("GET /api/v1/approvals%s: %d, %d bytes", q, code, len(body))
		}
		var list []approvalView
		if err := json.Unmarshal([]byte(body), &list); err != nil || len(list) != 1 {
			t.Fatalf("GET /api/v1/approvals%s: %v, %d requests", q, err, len(list))
		}
		if l := list[0]; !strings.HasPrefix(command, l.Command) || len(l.Command) < review.CommandPrefixLen-1 || !l.CommandTruncated ||
			l.CommandBytes != len(command) || l.CommandSHA256 != hash {
			t.Errorf("GET /api/v1/approvals%s: command of %d bytes, truncated %v, command_bytes %d, sha256 %s", q,
				len(l.Command), l.CommandTruncated, l.CommandBytes, l.CommandSHA256)
		}
	}
	out, err := cli("list")
	if want := fmt.Sprintf("… [truncated: %d bytes in all]", len(command)); err != nil || !strings.Contains(out, want) {
		t.Errorf("list: %v, lacks %q:\n%s", err, want, out)
	}
	out, err = cli("show", held.ID, "-o", "json")
	var v approvalView
	if err := errors.Join(err, json.Unmarshal([]byte(out), &v)); err != nil || v.Command != command || v.CommandSHA256 != hash {
		t.Errorf("show -o json: %v, command of %d bytes", err, len(v.Command))
	}
	if _, err = cli("approve", held.ID); err == nil || !strings.Contains(err.Error(), "--read-whole") {
		t.Errorf("approve of a long command without --read-whole: %v", err)
	}
	if r, _ := store.Get(held.ID); r.State != review.Pending {
		t.Fatalf("the refused approve decided the request: %s", r.State)
	}
}

// TestApprovalReadWholeCountsBytesNotUTF8: a command padded with bytes
// that are not UTF-8 is escaped longer on the gateway (\xff, 4 bytes) than
// the CLI reads it after JSON (U+FFFD, 3): the chat text cuts off its end
// ("; rm -rf /srv"), so approve still wants --read-whole. The CLI's check
// agrees with the gateway's on every length around the limit.
func TestApprovalReadWholeCountsBytesNotUTF8(t *testing.T) {
	g := adminTestGateway(t, "")
	store, err := review.Open(filepath.Join(t.TempDir(), "approvals.db"), review.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	g.approvals = store
	mux := http.NewServeMux()
	g.approvalsAPI(mux)
	srv := httptest.NewServer(g.adminAuth.Require(mux))
	defer srv.Close()
	cfg, tokenFile := adminTestConfig(t, srv)
	cli := func(args ...string) (string, error) {
		return runCLI(t, append([]string{"approvals"}, append(args, "--config", cfg, "--token-file", tokenFile)...)...)
	}

	command := "echo " + strings.Repeat("\xff", 60) + "; rm -rf /srv"
	if !review.Shortened(command, review.TextCommandLen) {
		t.Fatal("the chat text shows this command whole; lengthen the padding")
	}
	held, err := store.Submit(t.Context(), review.Request{
		SessionID: "s1", Target: "bastion", Protocol: "ssh", Workload: "support",
		Requester: identity.Identity{Subject: "agent"}, Command: command, Kind: "exec", Operation: "echo rm",
		Rule: "ops", Approvers: []string{"dba"}, Timeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli("approve", held.ID); err == nil || !strings.Contains(err.Error(), "--read-whole") {
		t.Errorf("approve without --read-whole of a command the chat text cut: %v", err)
	}
	if r, _ := store.Get(held.ID); r.State != review.Pending {
		t.Fatalf("the refused approve decided the request: %s", r.State)
	}
	if out, err := cli("approve", held.ID, "--read-whole"); err != nil || !strings.Contains(out, "approved by alice") {
		t.Errorf("approve --read-whole: %v\n%s", err, out)
	}

	for n := 150; n <= 210; n++ {
		for _, pad := range []string{"\xff", "\xe2\x82", "é"} {
			cmd := strings.Repeat(pad, n/len(pad)) + strings.Repeat("x", n%len(pad)) + "; rm -rf /srv"
			b, err := json.Marshal(viewOf(review.Request{Command: cmd}))
			var v approvalView
			if err := errors.Join(err, json.Unmarshal(b, &v)); err != nil {
				t.Fatal(err)
			}
			if got, want := shortenedInChat(v), review.Shortened(cmd, review.TextCommandLen); got != want {
				t.Errorf("%q: the CLI says shortened %v, the gateway %v", cmd, got, want)
			}
		}
	}
}

// TestReviewHoldOutcomeSurvivesEviction: a held command approved while the
// handler is still telling its client (a client that does not read
// blocks that), and deleted to make room before the handler waits,
// still runs: the reviewer waits on the request it held, not on its id.
func TestReviewHoldOutcomeSurvivesEviction(t *testing.T) {
	store, err := review.Open(filepath.Join(t.TempDir(), "approvals.db"), review.Options{MaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	rv := gatewayReviewer{g: &gateway{approvals: store}}
	session := &proxy.Session{ID: "s1", Target: proxy.Target{Name: "shop", Protocol: "postgres"},
		Caller: identity.Caller{Workload: "support", Identity: identity.Identity{Subject: "agent"}}}
	d := policy.Decision{Action: "review", Rule: "writes", Review: &policy.ReviewSettings{Approvers: []string{"dba"}, Timeout: time.Minute}}
	long := "UPDATE notes SET body = '" + strings.Repeat("x", 40<<10) + "'"
	dba := identity.Identity{Subject: "bob", Groups: []string{"dba"}}

	v, err := rv.Hold(t.Context(), proxy.Held{Session: session, Decision: d, Command: long, Kind: "write", Operation: "UPDATE"},
		func(id, _ string) {
			if _, err := store.Decide(id, dba, true, ""); err != nil {
				t.Errorf("Decide: %v", err)
			}
			// Another workload's long command: the store has room for it
			// only without the approved request.
			other := review.Request{SessionID: "s2", Target: "shop", Workload: "other", Requester: identity.Identity{Subject: "other"},
				Command: long, Rule: "writes", Approvers: []string{"dba"}, Timeout: time.Minute}
			if _, err := store.Submit(t.Context(), other); err != nil {
				t.Errorf("Submit: %v", err)
			}
			if _, err := store.Get(id); !errors.Is(err, review.ErrNotFound) {
				t.Errorf("the approved request was not deleted to make room (%v): the test proves nothing", err)
			}
		})
	if err != nil || !v.Allowed || v.State != "approved" || v.Decider != "bob" {
		t.Errorf("Hold = %+v, %v; want approved by bob", v, err)
	}
}
