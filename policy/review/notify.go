package review

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// EventKind says what happened to a request.
type EventKind string

// Event kinds.
const (
	// EventRequested: a command is held and waits for a decision.
	EventRequested EventKind = "requested"
	// EventDecided: the request became final (approved, rejected,
	// expired or abandoned; Request.State says which).
	EventDecided EventKind = "decided"
)

// Event is what a Notifier is told.
type Event struct {
	Kind    EventKind
	Request Request
}

// Notifier announces events to humans. Notify is called with the store's
// lock released but on the caller's path (Submit, Decide, a timer), so it
// must not block: queue and return. An error is logged by the store and
// changes nothing else.
type Notifier interface {
	Notify(ctx context.Context, ev Event) error
}

// WebhookOptions tune a Webhook; the zero value is the default.
type WebhookOptions struct {
	// APIBase is the gateway's admin API base URL, e.g.
	// "http://127.0.0.1:9470"; links in the message are built from it.
	// "" leaves the links out.
	APIBase string
	Logger  *slog.Logger // nil discards
	// Registerer receives interlock_webhook_deliveries_total and
	// interlock_webhook_failures_total{reason}; several webhooks on one
	// registry share them. Nil registers nowhere.
	Registerer prometheus.Registerer
	// Attempts per event (default 5); the waits between them double from
	// Backoff (default 0.5s) up to MaxBackoff (default 8s).
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
	// QueueSize bounds the events waiting for delivery (default 256), and
	// QueueBytes the commands they carry (default 64 MiB; an event carries
	// at most CommandPrefixLen bytes of its command); a full queue drops
	// the new event.
	QueueSize  int
	QueueBytes int
	// Timeout bounds one HTTP attempt, redirects included (default 10s).
	Timeout time.Duration
	// Transport carries the requests; nil is a clone of
	// http.DefaultTransport (which honours the proxy environment).
	Transport http.RoundTripper
}

func (o *WebhookOptions) fill() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 8 * time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 256
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = 64 << 20
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Transport == nil {
		o.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	o.APIBase = strings.TrimRight(o.APIBase, "/")
}

// Webhook is a Notifier that POSTs each event as JSON to one URL, from its
// own goroutine, in order, retrying failures with exponential backoff.
type Webhook struct {
	url     string
	logHost string // scheme://host only: the path of a chat webhook is its secret
	opts    WebhookOptions
	client  *http.Client
	metrics *webhookMetrics

	queue  chan Event
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	closed bool
	queued int // bytes of the commands in queue, at most opts.QueueBytes
}

// NewWebhook starts a webhook to rawURL, which must be an absolute http or
// https URL. Close stops it.
func NewWebhook(rawURL string, opts WebhookOptions) (*Webhook, error) {
	m, err := newWebhookMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return newWebhook(rawURL, opts, m)
}

func newWebhook(rawURL string, opts WebhookOptions, m *webhookMetrics) (*Webhook, error) {
	u, err := newWebhookURL(rawURL)
	if err != nil {
		return nil, err
	}
	opts.fill()
	w := &Webhook{
		url:     rawURL,
		logHost: u.Scheme + "://" + u.Host,
		opts:    opts,
		metrics: m,
		queue:   make(chan Event, opts.QueueSize),
		done:    make(chan struct{}),
	}
	w.client = &http.Client{
		Transport: opts.Transport,
		Timeout:   opts.Timeout,
		// Redirects are not followed: one would carry the POST body (the
		// held command) wherever the receiver points, internal addresses
		// included. post treats a 3xx as a failure that names where to.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	go w.run()
	return w, nil
}

var errNotHTTP = errors.New("not an http or https URL")

func newWebhookURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook URL %s: %w", redactURL(rawURL), errNotHTTP)
	}
	return u, nil
}

// redactURL keeps a URL's scheme and host for messages: chat webhooks
// carry their secret in the path or query.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// Notify queues ev and returns at once. It fails with ErrQueueFull when the
// queue is full (the event is dropped and counted) and ErrClosed after
// Close.
func (w *Webhook) Notify(_ context.Context, ev Event) error {
	ev.Request = ev.Request.clone()
	if r := &ev.Request; r.CommandBytes < len(r.Command) {
		// A Request not from a Store: its whole is named before it is cut,
		// or the message would pass the cut start off as the command.
		r.CommandBytes, r.CommandSHA256 = len(r.Command), commandHash([]byte(r.Command))
	}
	// The message carries the command's start (see webhookMessage); the
	// copy frees the queue from the whole.
	ev.Request.Command = strings.Clone(commandPrefix(ev.Request.Command, CommandPrefixLen))
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	n := len(ev.Request.Command)
	if w.queued+n > w.opts.QueueBytes && w.queued > 0 {
		w.metrics.failures.WithLabelValues(failQueueFull).Inc()
		return fmt.Errorf("notifying %s of approval %s: %d bytes of commands queued: %w", w.logHost, ev.Request.ID, w.queued, ErrQueueFull)
	}
	select {
	case w.queue <- ev:
		w.queued += n
		return nil
	default:
		w.metrics.failures.WithLabelValues(failQueueFull).Inc()
		return fmt.Errorf("notifying %s of approval %s: %w", w.logHost, ev.Request.ID, ErrQueueFull)
	}
}

// Close stops the webhook: the attempt in flight is cut, and events still
// queued are dropped (logged with their count). It waits for the
// delivering goroutine to end.
func (w *Webhook) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	w.cancel()
	<-w.done
	// Kept-alive connections each hold goroutines of the transport.
	w.client.CloseIdleConnections()
	if n := len(w.queue); n > 0 {
		w.opts.Logger.Warn("approval notifications dropped at shutdown", "webhook", w.logHost, "count", n)
	}
	return nil
}

func (w *Webhook) run() {
	defer close(w.done)
	for {
		select {
		case <-w.ctx.Done():
			return
		case ev := <-w.queue:
			w.deliver(ev)
			w.mu.Lock()
			w.queued -= len(ev.Request.Command)
			w.mu.Unlock()
		}
	}
}

// deliver tries ev until an attempt succeeds, the failure is permanent, the
// attempts run out or the webhook closes.
func (w *Webhook) deliver(ev Event) {
	body, err := json.Marshal(newWebhookMessage(ev, w.opts.APIBase))
	if err != nil {
		// Unreachable for these plain types; logged rather than lost silently.
		w.opts.Logger.Error("encoding approval notification", "id", ev.Request.ID, "err", err)
		return
	}
	wait := w.opts.Backoff
	for attempt := 1; ; attempt++ {
		retry, reason, err := w.post(body)
		if err == nil {
			w.metrics.deliveries.Inc()
			return
		}
		if w.ctx.Err() != nil {
			return // closing: the cut attempt is not the receiver's failure
		}
		w.metrics.failures.WithLabelValues(reason).Inc()
		log := w.opts.Logger.With("webhook", w.logHost, "id", ev.Request.ID, "event", string(ev.Kind), "attempt", attempt, "err", err)
		if !retry || attempt >= w.opts.Attempts {
			w.metrics.failures.WithLabelValues(failGaveUp).Inc()
			log.Error("approval notification lost")
			return
		}
		log.Warn("approval notification failed; retrying", "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-w.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*2, w.opts.MaxBackoff)
	}
}

// post makes one attempt. retry says whether another could succeed: network
// failures, 408, 429 and 5xx may pass; other answers will not change.
// reason is the failure's label.
func (w *Webhook) post(body []byte) (retry bool, reason string, err error) {
	req, err := http.NewRequestWithContext(w.ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return false, failNetwork, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "interlock-approvals")
	resp, err := w.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL, which may hold the webhook's secret.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return true, failNetwork, fmt.Errorf("posting: %w", err)
	}
	// Draining a little lets the connection be reused; the answer is not
	// read otherwise.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, "", nil
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		to := "nowhere"
		if loc, err := resp.Location(); err == nil {
			to = redactURL(loc.String())
		}
		return false, failStatus, fmt.Errorf("receiver answered %s, to %s; redirects are not followed: configure the final URL as the webhook",
			resp.Status, to)
	}
	retry = resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests
	return retry, failStatus, fmt.Errorf("receiver answered %s", resp.Status)
}

// webhookMessage is the JSON a webhook receives. Text is what chat
// incoming-webhooks render; the rest is for programs.
type webhookMessage struct {
	Text      string      `json:"text"`
	Event     EventKind   `json:"event"`
	ID        string      `json:"id"`
	State     State       `json:"state"`
	Target    string      `json:"target"`
	Protocol  string      `json:"protocol,omitempty"`
	Workload  string      `json:"workload"`
	SessionID string      `json:"session_id,omitempty"`
	Requester recordIdent `json:"requester"`
	// Command is the command's start as the client sent it: the whole
	// when it is at most CommandPrefixLen bytes, else cut there
	// (CommandTruncated). Chat receivers refuse bodies of megabytes,
	// and not for a moment (4xx, not retried); approvers read it whole
	// with `interlock approvals show` (Show) or the Self link.
	Command string `json:"command"`
	// CommandBytes and CommandSHA256 are the whole command's length and
	// hash, to check what show printed against.
	CommandBytes     int    `json:"command_bytes"`
	CommandSHA256    string `json:"command_sha256,omitempty"`
	CommandTruncated bool   `json:"command_truncated,omitempty"`
	// Show is the CLI command that prints the whole command, when
	// Command is cut.
	Show      string        `json:"show,omitempty"`
	Kind      string        `json:"kind,omitempty"`
	Operation string        `json:"operation,omitempty"`
	Rule      string        `json:"rule"`
	Approvers []string      `json:"approvers"`
	Created   time.Time     `json:"created"`
	Expires   time.Time     `json:"expires"`
	Grant     string        `json:"grant,omitempty"`
	Decider   *recordIdent  `json:"decider,omitempty"`
	Reason    string        `json:"reason,omitempty"`
	Decided   *time.Time    `json:"decided,omitempty"`
	Links     *webhookLinks `json:"links,omitempty"`
}

// webhookLinks point at the admin API's view of the request.
type webhookLinks struct {
	Self    string `json:"self"`    // GET
	Approve string `json:"approve"` // POST
	Deny    string `json:"deny"`    // POST
}

func newWebhookMessage(ev Event, apiBase string) webhookMessage {
	r := ev.Request
	m := webhookMessage{
		Text: messageText(ev), Event: ev.Kind, ID: r.ID, State: r.State,
		Target: r.Target, Protocol: r.Protocol, Workload: r.Workload, SessionID: r.SessionID,
		Requester: toRecordIdent(r.Requester), Command: r.Command, CommandBytes: max(r.CommandBytes, len(r.Command)),
		CommandSHA256: r.CommandSHA256, CommandTruncated: r.CommandCut(), Kind: r.Kind, Operation: r.Operation,
		Rule: r.Rule, Approvers: r.Approvers, Created: r.Created, Expires: r.Expires, Reason: r.Reason,
	}
	if m.CommandTruncated {
		m.Show = "interlock approvals show " + r.ID
	}
	if r.Grant > 0 {
		m.Grant = r.Grant.String()
	}
	if r.State.Final() {
		if r.Decider.Subject != "" {
			d := toRecordIdent(r.Decider)
			m.Decider = &d
		}
		d := r.Decided
		m.Decided = &d
	}
	if apiBase != "" {
		self := apiBase + "/api/v1/approvals/" + url.PathEscape(r.ID)
		m.Links = &webhookLinks{Self: self, Approve: self + "/approve", Deny: self + "/deny"}
	}
	return m
}

// TextCommandLen bounds the command quoted in the webhook's one-line text
// (escaped, in bytes); a longer one is cut there with a marker naming its
// length, and the message's command field holds up to CommandPrefixLen
// bytes of it.
const TextCommandLen = 200

// Shortened reports whether a text of at most n bytes (DisplayCommand)
// shows less than the whole command.
func Shortened(command string, n int) bool { return len(Printable(command)) > n }

// messageText is the one line a human reads in chat. The command is shown
// with its control characters escaped, cut short with a marker saying so,
// and followed by what policy read it as (its programs or SQL command), so
// that a command cannot pass itself off as another (ls #<spaces>\nrm -rf /,
// or a terminal escape that redraws the line). Every other value is
// escaped the same way (a requester's subject or a deny reason comes from
// elsewhere too), and the whole line is escaped for chat markup (see
// chatEscape).
func messageText(ev Event) string {
	r := ev.Request
	p := Printable
	who := p(r.Requester.Subject)
	if who == "" {
		who = "an unidentified caller"
	}
	cmd := DisplayCommand(r.Command, TextCommandLen)
	if r.CommandCut() {
		cmd = DisplayPrefix(r.Command, r.CommandBytes, TextCommandLen)
	}
	if r.Operation != "" {
		cmd += " [" + p(r.Kind) + ": " + p(r.Operation) + "]"
	}
	if ev.Kind == EventRequested {
		how := "approve with: interlock approvals approve " + p(r.ID)
		if Shortened(r.Command, TextCommandLen) || r.CommandCut() {
			// What is cut may be the part that matters.
			how = fmt.Sprintf("read it whole with: interlock approvals show %s, then approve with: interlock approvals approve %[1]s --read-whole", p(r.ID))
		}
		return chatEscape(fmt.Sprintf("interlock: %s on %s wants to run %s on %s (rule %s); %s",
			who, p(r.Workload), cmd, p(r.Target), p(r.Rule), how))
	}
	outcome := string(r.State)
	if r.Decider.Subject != "" {
		outcome += " by " + p(r.Decider.Subject)
	}
	if r.Reason != "" {
		outcome += ": " + p(r.Reason)
	}
	return chatEscape(fmt.Sprintf("interlock: request %s (%s on %s by %s on %s) %s", p(r.ID), cmd, p(r.Target), who, p(r.Workload), outcome))
}

// chatEscape escapes &, < and > as HTML entities, as Slack's message
// format (which other chat webhooks accept too) requires of literal text:
// otherwise a command holding "<!channel>" notifies everyone and
// "<https://x|approve here>" shows a link labelled as the command wants.
var chatEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

// Printable is s for a human to read: control characters, invalid UTF-8
// and characters that print nothing or reorder text (\r, \x1b, U+202E,
// U+200B) are escaped as Go escapes them (\r, \x1b, \u202e), so the text
// shows every byte that matters and a terminal or chat client runs none of
// them. Newlines and tabs are escaped too: a command is one line.
func Printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r != ' ' && !unicode.IsPrint(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// DisplayCommand is Printable(command), cut to about max bytes with a
// marker that says how long the whole command is, in bytes as sent
// ("… [truncated: 4213 bytes in all]").
func DisplayCommand(command string, max int) string {
	p := Printable(command)
	if len(p) <= max {
		return p
	}
	return truncate(p, max) + fmt.Sprintf(" [truncated: %d bytes in all]", len(command))
}

// DisplayPrefix is DisplayCommand for prefix, the cut start of a command
// of whole bytes (Request.CommandCut): it is always marked cut.
func DisplayPrefix(prefix string, whole, max int) string {
	p := Printable(prefix)
	if len(p) > max {
		p = truncate(p, max)
	} else {
		p += "…"
	}
	return p + fmt.Sprintf(" [truncated: %d bytes in all]", whole)
}
