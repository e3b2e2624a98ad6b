package review

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/interlock-dev/interlock/identity"
)

// receiver is a real HTTP server on loopback standing in for a chat
// incoming-webhook. It answers with the scripted statuses in turn (200
// once they run out) and hands each body to the test.
type receiver struct {
	srv    *httptest.Server
	bodies chan []byte

	mu       sync.Mutex
	statuses []int
	redirect string // when set, the first answer is a 307 to it
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	t.Helper()
	rc := &receiver{bodies: make(chan []byte, 64), statuses: statuses}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	status := http.StatusOK
	if rc.redirect != "" && r.URL.Path == "/hook/T0123/secret" {
		to := rc.redirect
		rc.mu.Unlock()
		http.Redirect(w, r, to, http.StatusTemporaryRedirect)
		return
	}
	if len(rc.statuses) > 0 {
		status, rc.statuses = rc.statuses[0], rc.statuses[1:]
	}
	rc.mu.Unlock()
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "want a JSON POST", http.StatusBadRequest)
		return
	}
	b, _ := io.ReadAll(r.Body)
	rc.bodies <- b
	w.WriteHeader(status)
}

// url is the receiver's hook; its path plays the secret a chat webhook
// carries.
func (rc *receiver) url() string { return rc.srv.URL + "/hook/T0123/secret" }

func (rc *receiver) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case b := <-rc.bodies:
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("webhook body is not JSON: %v: %s", err, b)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook received")
		return nil
	}
}

func (rc *receiver) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case b := <-rc.bodies:
		t.Fatalf("unexpected webhook: %s", b)
	case <-time.After(within):
	}
}

// metricValue reads one series from the registry, as a scrape would.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue series
				}
			}
			return value(m)
		}
	}
	t.Fatalf("%s%v is not exported", name, labels)
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}

// eventually polls a metric: a delivery is counted after the receiver
// answered, a moment after the test saw the body.
func eventually(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := metricValue(t, reg, name, labels)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWebhookMessages(t *testing.T) {
	rc := newReceiver(t)
	s := openTest(t, "", Options{APIBase: "http://127.0.0.1:9470/"})
	req := heldUpdate()
	req.NotifyURL = rc.url()
	req.Grant = 15 * time.Minute
	r := submit(t, s, req)

	m := rc.next(t)
	wantText := "interlock: support-agent on support wants to run UPDATE orders SET status = 'refunded' WHERE id = 42 [write: UPDATE] on shop (rule writes-need-approval); approve with: interlock approvals approve " + r.ID
	if m["text"] != wantText {
		t.Errorf("text =\n%q\nwant\n%q", m["text"], wantText)
	}
	self := "http://127.0.0.1:9470/api/v1/approvals/" + r.ID
	want := map[string]any{
		"event": "requested", "id": r.ID, "state": "pending", "target": "shop", "protocol": "postgres",
		"workload": "support", "command": req.Command, "kind": "write", "operation": "UPDATE",
		"rule": "writes-need-approval", "expires": r.Expires.Format(time.RFC3339Nano), "grant": "15m0s",
		"session_id": req.SessionID,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if got := jsonString(m["approvers"]); got != `["dba"]` {
		t.Errorf("approvers = %s", got)
	}
	if got := jsonString(m["requester"]); got != `{"groups":["agents"],"subject":"support-agent"}` {
		t.Errorf("requester = %s", got)
	}
	if got := jsonString(m["links"]); got != `{"approve":"`+self+`/approve","deny":"`+self+`/deny","self":"`+self+`"}` {
		t.Errorf("links = %s", got)
	}
	if _, ok := m["decider"]; ok {
		t.Error("a pending request's message names a decider")
	}

	if _, err := s.Decide(r.ID, bob, true, "fine"); err != nil {
		t.Fatal(err)
	}
	m = rc.next(t)
	if m["event"] != "decided" || m["state"] != "approved" {
		t.Errorf("event %v state %v, want decided approved", m["event"], m["state"])
	}
	if got := jsonString(m["decider"]); got != `{"groups":["dba"],"issuer":"https://idp.example/","subject":"bob"}` {
		t.Errorf("decider = %s", got)
	}
	wantText = "interlock: request " + r.ID + " (UPDATE orders SET status = 'refunded' WHERE id = 42 [write: UPDATE] on shop by support-agent on support) approved by bob: fine"
	if m["text"] != wantText {
		t.Errorf("text =\n%q\nwant\n%q", m["text"], wantText)
	}
	eventually(t, s.reg, "interlock_webhook_deliveries_total", nil, 2)
	for _, reason := range failReasons {
		if v := metricValue(t, s.reg, "interlock_webhook_failures_total", map[string]string{"reason": reason}); v != 0 {
			t.Errorf("interlock_webhook_failures_total{reason=%q} = %v, want 0", reason, v)
		}
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Every way a request ends is announced, the store's own endings too.
func TestWebhookAnnouncesExpiryAndAbandonment(t *testing.T) {
	rc := newReceiver(t)
	s := openTest(t, "", Options{})
	req := heldUpdate()
	req.NotifyURL = rc.url()
	req.Timeout = 100 * time.Millisecond
	r := submit(t, s, req)
	rc.next(t)
	if m := rc.next(t); m["state"] != "expired" || m["reason"] != ReasonExpired || m["id"] != r.ID {
		t.Errorf("expiry message: state %v reason %v", m["state"], m["reason"])
	}

	req.Timeout = time.Minute
	r = submit(t, s, req)
	rc.next(t)
	if _, err := s.Cancel(r.ID, "client disconnected"); err != nil {
		t.Fatal(err)
	}
	if m := rc.next(t); m["state"] != "abandoned" || m["reason"] != "client disconnected" || m["id"] != r.ID {
		t.Errorf("abandonment message: state %v reason %v", m["state"], m["reason"])
	}
}

func TestWebhookRetries(t *testing.T) {
	tests := []struct {
		name         string
		statuses     []int
		attempts     int
		wantPosts    int
		wantStatus   float64
		wantGaveUp   float64
		wantDelivery float64
	}{
		{"500 then 200", []int{500, 200}, 5, 2, 1, 0, 1},
		{"429 and 503 then 204", []int{429, 503, 204}, 5, 3, 2, 0, 1},
		{"permanent 404 is not retried", []int{404}, 5, 1, 1, 1, 0},
		{"attempts run out", []int{502, 502, 502, 502}, 3, 3, 3, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, tt.statuses...)
			reg := prometheus.NewRegistry()
			w, err := NewWebhook(rc.url(), WebhookOptions{Registerer: reg, Attempts: tt.attempts, Backoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if err := w.Notify(context.Background(), Event{Kind: EventRequested, Request: heldUpdate()}); err != nil {
				t.Fatal(err)
			}
			first := rc.next(t)
			for i := 1; i < tt.wantPosts; i++ {
				if again := rc.next(t); jsonString(again) != jsonString(first) {
					t.Errorf("retry %d sent a different body", i)
				}
			}
			eventually(t, reg, "interlock_webhook_failures_total", map[string]string{"reason": failStatus}, tt.wantStatus)
			eventually(t, reg, "interlock_webhook_failures_total", map[string]string{"reason": failGaveUp}, tt.wantGaveUp)
			eventually(t, reg, "interlock_webhook_deliveries_total", nil, tt.wantDelivery)
			rc.none(t, 100*time.Millisecond)
		})
	}
}

// TestWebhookRedirects: a redirect is a failure, never followed: following
// one would POST the held command wherever the receiver points, internal
// addresses included.
func TestWebhookRedirects(t *testing.T) {
	internal := newReceiver(t) // an address only the gateway can reach
	tests := []struct {
		name string
		to   func(rc *receiver) string
	}{
		{"to the same host", func(rc *receiver) string { return rc.srv.URL + "/moved" }},
		{"to an internal address", func(*receiver) string { return internal.srv.URL + "/admin/internal-only" }},
		{"to another scheme", func(*receiver) string { return "ftp://127.0.0.1/hook" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t)
			rc.redirect = tt.to(rc)
			reg := prometheus.NewRegistry()
			var logs bytes.Buffer
			w, err := NewWebhook(rc.url(), WebhookOptions{Registerer: reg, Attempts: 3, Backoff: 10 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			w.Notify(context.Background(), Event{Kind: EventRequested, Request: heldUpdate()})
			// Not retried: the answer will not change.
			eventually(t, reg, "interlock_webhook_failures_total", map[string]string{"reason": failStatus}, 1)
			eventually(t, reg, "interlock_webhook_failures_total", map[string]string{"reason": failGaveUp}, 1)
			eventually(t, reg, "interlock_webhook_deliveries_total", nil, 0)
			rc.none(t, 50*time.Millisecond)
			internal.none(t, 50*time.Millisecond)
			w.Close() // the delivering goroutine has ended: logs is ours
			if log := logs.String(); !strings.Contains(log, "redirects are not followed") {
				t.Errorf("the log does not say the redirect was refused:\n%s", log)
			}
		})
	}
}

func TestWebhookQueueFullAndClose(t *testing.T) {
	unblock := make(chan struct{})
	arrived := make(chan struct{}, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-unblock:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(unblock) }) // runs first: lets srv.Close finish

	reg := prometheus.NewRegistry()
	w, err := NewWebhook(srv.URL, WebhookOptions{Registerer: reg, QueueSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	ev := Event{Kind: EventRequested, Request: heldUpdate()}
	if err := w.Notify(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	<-arrived // the first is in flight, the queue is empty
	if err := w.Notify(context.Background(), ev); err != nil {
		t.Fatalf("queueing the second: %v", err)
	}
	err = w.Notify(context.Background(), ev)
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third Notify = %v, want ErrQueueFull", err)
	}
	if strings.Contains(err.Error(), srv.URL+"/") {
		t.Errorf("error %q shows more of the URL than scheme and host", err)
	}
	if v := metricValue(t, reg, "interlock_webhook_failures_total", map[string]string{"reason": failQueueFull}); v != 1 {
		t.Errorf("interlock_webhook_failures_total{reason=queue_full} = %v, want 1", v)
	}

	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a hanging receiver")
	}
	if err := w.Notify(context.Background(), ev); !errors.Is(err, ErrClosed) {
		t.Errorf("Notify after Close = %v, want ErrClosed", err)
	}
	// A cut attempt is not the receiver's failure.
	if v := metricValue(t, reg, "interlock_webhook_failures_total", map[string]string{"reason": failNetwork}); v != 0 {
		t.Errorf("interlock_webhook_failures_total{reason=network} = %v, want 0", v)
	}
}

func TestNewWebhookRefusesNonHTTP(t *testing.T) {
	for _, u := range []string{"", "ftp://chat.example/hook", "unix:///run/hook.sock", "chat.example/hook", "https://"} {
		if w, err := NewWebhook(u, WebhookOptions{}); err == nil {
			w.Close()
			t.Errorf("NewWebhook(%q) succeeded", u)
		}
	}
}

// recorder is a Notifier that keeps what it is told.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Notify(_ context.Context, ev Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		out = append(out, string(ev.Kind)+":"+string(ev.Request.State))
	}
	return out
}

func TestNotifierSeesEveryEvent(t *testing.T) {
	rec := &recorder{}
	clk := newFakeClock()
	s := openTest(t, "", Options{Notify: rec, Now: clk.Now})
	a := submit(t, s, heldUpdate())
	b := submit(t, s, heldUpdate())
	c := submit(t, s, heldUpdate())
	s.Decide(a.ID, bob, false, "no")
	s.Cancel(b.ID, "client disconnected")
	s.Close()
	clk.Advance(time.Hour)
	openTest(t, s.path, Options{Notify: rec, Now: clk.Now})
	want := "[requested:pending requested:pending requested:pending decided:rejected decided:abandoned decided:expired]"
	if got := jsonString(rec.kinds()); got != jsonString(strings.Fields(strings.Trim(want, "[]"))) {
		t.Errorf("events = %s, want %s", got, want)
	}
	if last := rec.events[len(rec.events)-1]; last.Request.ID != c.ID {
		t.Errorf("the expiry at Open announced %s, want %s", last.Request.ID, c.ID)
	}
}

// TestMessageTextShowsDisguisedCommands: a held command cannot read as a
// harmless one in chat, by whitespace, line breaks, terminal escapes or
// length.
func TestMessageTextShowsDisguisedCommands(t *testing.T) {
	long := "ls #" + strings.Repeat(" ", 300) + "\nrm -rf /srv"
	for _, tc := range []struct {
		command, operation string
		want               []string
	}{
		{long, "ls rm", []string{"[truncated: 316 bytes in all]", "[exec: ls rm]"}},
		{"ls\nrm -rf /srv", "ls rm", []string{`ls\nrm -rf /srv`}},
		{"touch /x #\r\x1b[2Kls -la", "touch", []string{`touch /x #\r\x1b[2Kls -la`, "[exec: touch]"}},
		{"ls \u202erm", "ls", []string{`ls \u202erm`}},
		{"ls \xff", "ls", []string{`ls \xff`}},
	} {
		text := messageText(Event{Kind: EventRequested, Request: Request{ID: "x", Command: tc.command, Kind: "exec", Operation: tc.operation}})
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("%q: text %q lacks %q", tc.command, text, w)
			}
		}
		if strings.ContainsFunc(text, func(r rune) bool { return r < ' ' || r == 0x7f || r == 0x202e }) {
			t.Errorf("%q: text %q holds control characters", tc.command, text)
		}
	}
}

// TestMessageTextEscapesEverything: no value in the chat text, the
// requester's subject and the deny reason included, can break the line,
// redraw it, or use the chat's markup to notify everyone or show a link.
func TestMessageTextEscapesEverything(t *testing.T) {
	r := Request{ID: "abcdefghij", Workload: "support", Target: "shop", Rule: "writes",
		Requester: identity.Identity{Subject: "svc\ninterlock: request zzz approved by bob", Issuer: "https://idp/"},
		Command:   "UPDATE t SET a = '<!channel> <https://evil.example/approve|click to approve> & more' WHERE true",
		Kind:      "write", Operation: "UPDATE", State: Pending}
	requested := messageText(Event{Kind: EventRequested, Request: r})
	r.State, r.Decider, r.Reason = Rejected, identity.Identity{Subject: "bob<@U123>"}, "no\x1b[2K\rapproved <!here>"
	decided := messageText(Event{Kind: EventDecided, Request: r})
	for _, text := range []string{requested, decided} {
		if strings.ContainsAny(text, "<>\n\r\x1b") {
			t.Errorf("text %q holds chat markup or control characters", text)
		}
		for _, want := range []string{`svc\ninterlock: request zzz`, "&lt;!channel&gt; &lt;https://evil.example/approve|click to approve&gt; &amp; more"} {
			if !strings.Contains(text, want) {
				t.Errorf("text %q lacks %q", text, want)
			}
		}
	}
	for _, want := range []string{`rejected by bob&lt;@U123&gt;: no\x1b[2K\rapproved &lt;!here&gt;`} {
		if !strings.Contains(decided, want) {
			t.Errorf("decided text %q lacks %q", decided, want)
		}
	}
}

// TestWebhookLongCommand: the webhook's body carries a long command's
// start, with its length, its hash and where to read it whole, however
// long it is (chat receivers refuse bodies of megabytes); the text shows
// its start with the true length and says where to read it all before
// approving.
func TestWebhookLongCommand(t *testing.T) {
	rc := newReceiver(t)
	s := openTest(t, "", Options{})
	req := heldUpdate()
	req.NotifyURL = rc.url()
	req.Command = longUpdate() + strings.Repeat("é", 4<<20) // 8 MiB more
	r := submit(t, s, req)
	var body []byte
	select {
	case body = <-rc.bodies:
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook delivery")
	}
	if len(body) > 8<<10 {
		t.Errorf("the webhook body is %d bytes, want a few KiB", len(body))
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if c := fmt.Sprint(m["command"]); !strings.HasPrefix(req.Command, c) || len(c) > CommandPrefixLen || len(c) < CommandPrefixLen-3 {
		t.Errorf("command field is %d bytes, want the first %d of the %d sent", len(c), CommandPrefixLen, len(req.Command))
	}
	sum := sha256.Sum256([]byte(req.Command))
	for k, want := range map[string]any{
		"command_bytes":     float64(len(req.Command)),
		"command_sha256":    hex.EncodeToString(sum[:]),
		"command_truncated": true,
		"show":              "interlock approvals show " + r.ID,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	text := fmt.Sprint(m["text"])
	for _, want := range []string{
		fmt.Sprintf("… [truncated: %d bytes in all] [write: UPDATE]", len(req.Command)),
		"read it whole with: interlock approvals show " + r.ID + ", then approve with: interlock approvals approve " + r.ID + " --read-whole",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text %q lacks %q", text, want)
		}
	}
	if len(text) > 2*TextCommandLen+400 {
		t.Errorf("text is %d bytes", len(text))
	}
}

// TestWebhookQueueBytes: the queue also bounds the bytes of the commands
// it keeps, so a receiver that is down does not make long commands pile
// up in memory; the event in flight counts until delivered.
func TestWebhookQueueBytes(t *testing.T) {
	unblock := make(chan struct{})
	arrived := make(chan struct{}, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-unblock:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(unblock) })

	reg := prometheus.NewRegistry()
	// A queued event keeps CommandPrefixLen bytes of a long command.
	w, err := NewWebhook(srv.URL, WebhookOptions{Registerer: reg, QueueBytes: 2*CommandPrefixLen + 500})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	long := heldUpdate()
	long.Command = longUpdate() // 4159 bytes
	if err := w.Notify(context.Background(), Event{Kind: EventRequested, Request: long}); err != nil {
		t.Fatal(err)
	}
	<-arrived
	if err := w.Notify(context.Background(), Event{Kind: EventRequested, Request: long}); err != nil {
		t.Fatalf("queueing the second: %v", err)
	}
	if err := w.Notify(context.Background(), Event{Kind: EventRequested, Request: long}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("a third long command = %v, want ErrQueueFull", err)
	}
	if err := w.Notify(context.Background(), Event{Kind: EventRequested, Request: heldUpdate()}); err != nil {
		t.Errorf("a short command fits: %v", err)
	}
	if v := metricValue(t, reg, "interlock_webhook_failures_total", map[string]string{"reason": failQueueFull}); v != 1 {
		t.Errorf("queue_full failures = %v, want 1", v)
	}
}

// TestWebhookNamesAHandMadeRequestsWhole: a Webhook told of a Request
// that no Store filled (no CommandBytes, no hash) still says its long
// command is cut, with the whole's length and hash, rather than passing
// the start off as the command.
func TestWebhookNamesAHandMadeRequestsWhole(t *testing.T) {
	rc := newReceiver(t)
	w, err := NewWebhook(rc.url(), WebhookOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r := heldUpdate()
	r.ID, r.State = "ab2cd3ef4g", Pending
	r.Command = "UPDATE t SET note = '" + strings.Repeat("x", 5000) + "', is_admin = true"
	if err := w.Notify(context.Background(), Event{Kind: EventRequested, Request: r}); err != nil {
		t.Fatal(err)
	}
	m := rc.next(t)
	sum := sha256.Sum256([]byte(r.Command))
	for k, want := range map[string]any{
		"command_bytes":     float64(len(r.Command)),
		"command_sha256":    hex.EncodeToString(sum[:]),
		"command_truncated": true,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if text := fmt.Sprint(m["text"]); !strings.Contains(text, fmt.Sprintf("[truncated: %d bytes in all]", len(r.Command))) {
		t.Errorf("text %q does not name the whole command's length", text)
	}
}
