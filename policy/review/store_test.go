package review

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/interlock-dev/interlock/identity"
)

var (
	agent = identity.Identity{Subject: "support-agent", Groups: []string{"agents"}}
	bob   = identity.Identity{Subject: "bob", Groups: []string{"dba"}, Issuer: "https://idp.example/"}
	carol = identity.Identity{Subject: "carol", Groups: []string{"sales"}}
)

// fakeClock is the Now seam for grant windows and expiry while closed.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 29, 7, 15, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testStore is an open store on a file in a temporary folder, with its own
// registry, closed at the end of the test.
type testStore struct {
	*Store
	path string
	reg  *prometheus.Registry
}

func openTest(t *testing.T, path string, opts Options) *testStore {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "approvals.db")
	}
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &testStore{Store: s, path: path, reg: reg}
}

// pendingGauge reads interlock_approvals_pending{target} from the registry,
// as a scrape would.
func (s *testStore) pendingGauge(t *testing.T, target string) float64 {
	t.Helper()
	return metricValue(t, s.reg, "interlock_approvals_pending", map[string]string{"target": target})
}

func heldUpdate() Request {
	return Request{
		SessionID: "20261129T071500Z-0a1b2c3d",
		Target:    "shop",
		Protocol:  "postgres",
		Workload:  "support",
		Requester: agent,
		Command:   "UPDATE orders SET status = 'refunded' WHERE id = 42",
		Kind:      "write",
		Operation: "UPDATE",
		Rule:      "writes-need-approval",
		Approvers: []string{"dba"},
		Timeout:   5 * time.Minute,
	}
}

func submit(t *testing.T, s *testStore, r Request) Request {
	t.Helper()
	got, err := s.Submit(context.Background(), r)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return got
}

// waitAsync starts Wait and returns where its answer arrives.
func waitAsync(s *testStore, ctx context.Context, id string) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		r, err := s.Wait(ctx, id)
		ch <- waitResult{r, err}
	}()
	return ch
}

type waitResult struct {
	r   Request
	err error
}

func receive(t *testing.T, ch <-chan waitResult) waitResult {
	t.Helper()
	select {
	case w := <-ch:
		return w
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return")
		return waitResult{}
	}
}

func TestSubmitFillsAndPersists(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, "", Options{Now: clk.Now})
	r := submit(t, s, heldUpdate())
	if len(r.ID) != idLen {
		t.Errorf("ID %q: want %d characters", r.ID, idLen)
	}
	for _, c := range r.ID {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			t.Errorf("ID %q: %q is not lower-case base32", r.ID, c)
		}
	}
	if !r.Created.Equal(clk.Now()) || !r.Expires.Equal(clk.Now().Add(5*time.Minute)) {
		t.Errorf("Created %v Expires %v, want %v and 5m later", r.Created, r.Expires, clk.Now())
	}
	if r.State != Pending {
		t.Errorf("State = %q, want pending", r.State)
	}
	if got := s.pendingGauge(t, "shop"); got != 1 {
		t.Errorf("interlock_approvals_pending{target=shop} = %v, want 1", got)
	}
	// Get reads memory for a pending request; the file must agree.
	var fromDisk Request
	s.mu.Lock()
	delete(s.pending, r.ID)
	s.mu.Unlock()
	fromDisk, err := s.Get(r.ID)
	if err != nil {
		t.Fatalf("Get from the file: %v", err)
	}
	if fmt.Sprint(fromDisk) != fmt.Sprint(r) {
		t.Errorf("stored request differs:\n got %+v\nwant %+v", fromDisk, r)
	}
}

func TestDecisionWakesWait(t *testing.T) {
	tests := []struct {
		name    string
		approve bool
		reason  string
		want    State
	}{
		{"approve", true, "refund agreed with the customer", Approved},
		{"reject", false, "no refunds on Sundays", Rejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, "", Options{})
			r := submit(t, s, heldUpdate())
			ch := waitAsync(s, context.Background(), r.ID)

			decided, err := s.Decide(r.ID, bob, tt.approve, tt.reason)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			w := receive(t, ch)
			if w.err != nil {
				t.Fatalf("Wait: %v", w.err)
			}
			for _, got := range []Request{decided, w.r} {
				if got.State != tt.want || got.Decider.Subject != "bob" || got.Reason != tt.reason || got.Decided.IsZero() {
					t.Errorf("got state %q decider %q reason %q decided %v; want %q by bob", got.State, got.Decider.Subject, got.Reason, got.Decided, tt.want)
				}
			}
			if g := s.pendingGauge(t, "shop"); g != 0 {
				t.Errorf("interlock_approvals_pending{target=shop} = %v, want 0", g)
			}
			// A later Wait returns the outcome at once.
			again, err := s.Wait(context.Background(), r.ID)
			if err != nil || again.State != tt.want {
				t.Errorf("second Wait = %q, %v", again.State, err)
			}
		})
	}
}

func TestTimeoutExpires(t *testing.T) {
	s := openTest(t, "", Options{})
	req := heldUpdate()
	req.Timeout = 100 * time.Millisecond
	r := submit(t, s, req)
	w := receive(t, waitAsync(s, context.Background(), r.ID))
	if w.err != nil {
		t.Fatalf("Wait: %v", w.err)
	}
	if w.r.State != Expired || w.r.Reason != ReasonExpired || !w.r.Decided.Equal(r.Expires) {
		t.Errorf("got %q %q at %v, want expired at %v", w.r.State, w.r.Reason, w.r.Decided, r.Expires)
	}
	if _, err := s.Decide(r.ID, bob, true, ""); !errors.Is(err, ErrNotPending) {
		t.Errorf("Decide after expiry: %v, want ErrNotPending", err)
	}
	if got, _ := s.Get(r.ID); got.State != Expired {
		t.Errorf("stored state %q, want expired", got.State)
	}
}

// Decide checks the clock itself: a request past Expires whose timer has
// not fired yet cannot be approved.
func TestDecideAfterExpiresBeforeTimer(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, "", Options{Now: clk.Now})
	r := submit(t, s, heldUpdate())
	clk.Advance(5 * time.Minute)
	got, err := s.Decide(r.ID, bob, true, "")
	if !errors.Is(err, ErrNotPending) || got.State != Expired {
		t.Fatalf("Decide = %q, %v; want expired, ErrNotPending", got.State, err)
	}
}

func TestDecideRefusals(t *testing.T) {
	tests := []struct {
		name    string
		decider identity.Identity
		want    error
	}{
		{"requester approves itself", agent, ErrSelfApproval},
		{"same subject, other case", identity.Identity{Subject: "Support-Agent", Groups: []string{"dba"}}, ErrSelfApproval},
		{"same subject, other issuer", identity.Identity{Subject: "support-agent", Groups: []string{"dba"}, Issuer: "https://other.example/"}, ErrSelfApproval},
		{"not in an approver group", carol, ErrNotApprover},
		{"no groups", identity.Identity{Subject: "dave"}, ErrNotApprover},
		{"no subject", identity.Identity{Groups: []string{"dba"}}, ErrNotApprover},
		{"group differs in case", identity.Identity{Subject: "erin", Groups: []string{"DBA"}}, ErrNotApprover},
	}
	s := openTest(t, "", Options{})
	r := submit(t, s, heldUpdate())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, approve := range []bool{true, false} {
				got, err := s.Decide(r.ID, tt.decider, approve, "")
				if !errors.Is(err, tt.want) {
					t.Errorf("Decide(approve=%v) = %v, want %v", approve, err, tt.want)
				}
				if got.ID != r.ID || got.State != Pending {
					t.Errorf("refused Decide returned %q in state %q, want %q pending", got.ID, got.State, r.ID)
				}
			}
		})
	}
	if got, _ := s.Get(r.ID); got.State != Pending {
		t.Fatalf("after refusals the request is %q, want pending", got.State)
	}

	t.Run("unknown id", func(t *testing.T) {
		if _, err := s.Decide("aaaaaaaaaa", bob, true, ""); !errors.Is(err, ErrNotFound) {
			t.Errorf("Decide = %v, want ErrNotFound", err)
		}
	})
	t.Run("decide twice", func(t *testing.T) {
		if _, err := s.Decide(r.ID, bob, true, "ok"); err != nil {
			t.Fatalf("first Decide: %v", err)
		}
		other := identity.Identity{Subject: "frank", Groups: []string{"dba"}}
		got, err := s.Decide(r.ID, other, false, "too late")
		if !errors.Is(err, ErrNotPending) {
			t.Errorf("second Decide = %v, want ErrNotPending", err)
		}
		if got.State != Approved || got.Decider.Subject != "bob" {
			t.Errorf("second Decide returned %q by %q, want the approval by bob", got.State, got.Decider.Subject)
		}
	})
	t.Run("id in upper case", func(t *testing.T) {
		r2 := submit(t, s, heldUpdate())
		if _, err := s.Decide(" "+string(toUpper(r2.ID))+" ", bob, false, ""); err != nil {
			t.Errorf("Decide with the id in upper case: %v", err)
		}
	})
}

func toUpper(s string) []byte {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return b
}

func TestSubmitInvalid(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Request)
	}{
		{"no approvers", func(r *Request) { r.Approvers = nil }},
		{"empty approver", func(r *Request) { r.Approvers = []string{"dba", ""} }},
		{"no timeout", func(r *Request) { r.Timeout = 0 }},
		{"negative grant", func(r *Request) { r.Grant = -time.Second }},
		{"webhook not http", func(r *Request) { r.NotifyURL = "file:///etc/passwd" }},
		{"webhook without host", func(r *Request) { r.NotifyURL = "https:///hook" }},
	}
	s := openTest(t, "", Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := heldUpdate()
			tt.change(&r)
			if _, err := s.Submit(context.Background(), r); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("Submit = %v, want ErrInvalidRequest", err)
			}
		})
	}
	if l, _ := s.List(Filter{}); len(l) != 0 {
		t.Errorf("%d requests stored after refusals, want 0", len(l))
	}
}

func TestTooManyPending(t *testing.T) {
	s := openTest(t, "", Options{MaxPending: 2})
	submit(t, s, heldUpdate())
	r := submit(t, s, heldUpdate())
	if _, err := s.Submit(context.Background(), heldUpdate()); !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("third Submit = %v, want ErrTooManyPending", err)
	}
	if _, err := s.Decide(r.ID, bob, false, ""); err != nil {
		t.Fatal(err)
	}
	submit(t, s, heldUpdate()) // room again
}

func TestWaitContextAndCancel(t *testing.T) {
	s := openTest(t, "", Options{})
	r := submit(t, s, heldUpdate())
	cause := errors.New("client went away")
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := waitAsync(s, ctx, r.ID)
	cancel(cause)
	w := receive(t, ch)
	if !errors.Is(w.err, context.Canceled) || !errors.Is(w.err, cause) {
		t.Errorf("Wait = %v, want context.Canceled and the cause", w.err)
	}
	if w.r.State != Pending {
		t.Errorf("after the context ended the request is %q, want pending", w.r.State)
	}

	ch = waitAsync(s, context.Background(), r.ID)
	got, err := s.Cancel(r.ID, "")
	if err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if got.State != Abandoned || got.Reason != ReasonSessionEnded {
		t.Errorf("Cancel = %q %q, want abandoned, %q", got.State, got.Reason, ReasonSessionEnded)
	}
	if w := receive(t, ch); w.err != nil || w.r.State != Abandoned {
		t.Errorf("Wait = %q, %v; want abandoned", w.r.State, w.err)
	}
	if _, err := s.Cancel(r.ID, ""); !errors.Is(err, ErrNotPending) {
		t.Errorf("second Cancel = %v, want ErrNotPending", err)
	}
	if _, err := s.Cancel("bbbbbbbbbb", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("Cancel of an unknown id = %v, want ErrNotFound", err)
	}
}

func TestRestartAbandons(t *testing.T) {
	s := openTest(t, "", Options{})
	r := submit(t, s, heldUpdate())
	other := heldUpdate()
	other.SessionID = "20261129T071501Z-ffffffff"
	r2 := submit(t, s, other)
	ch := waitAsync(s, context.Background(), r.ID)
	// Let the waiter block before closing.
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if w := receive(t, ch); !errors.Is(w.err, ErrClosed) {
		t.Errorf("Wait across Close = %v, want ErrClosed", w.err)
	}
	if _, err := s.Submit(context.Background(), heldUpdate()); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Close = %v, want ErrClosed", err)
	}

	s = openTest(t, s.path, Options{})
	got, err := s.Get(r.ID)
	if err != nil || got.State != Pending {
		t.Fatalf("after reopening: %q, %v; want pending", got.State, err)
	}
	if g := s.pendingGauge(t, "shop"); g != 2 {
		t.Errorf("interlock_approvals_pending{target=shop} = %v after reopening, want 2", g)
	}
	// Generic: a session the gateway still has keeps its request.
	abandoned := s.Abandon(func(sid string) bool { return sid == other.SessionID })
	if len(abandoned) != 1 || abandoned[0].ID != r.ID || abandoned[0].State != Abandoned || abandoned[0].Reason != ReasonSessionEnded {
		t.Fatalf("Abandon = %+v, want only %s abandoned", abandoned, r.ID)
	}
	if got, _ := s.Get(r2.ID); got.State != Pending {
		t.Errorf("the live session's request is %q, want pending", got.State)
	}
	if w, err := s.Wait(context.Background(), r.ID); err != nil || w.State != Abandoned {
		t.Errorf("Wait on the abandoned request = %q, %v", w.State, err)
	}
	if g := s.pendingGauge(t, "shop"); g != 1 {
		t.Errorf("interlock_approvals_pending{target=shop} = %v, want 1", g)
	}
	// And the abandonment itself persists.
	s.Close()
	s = openTest(t, s.path, Options{})
	if got, _ := s.Get(r.ID); got.State != Abandoned {
		t.Errorf("after a second restart the request is %q, want abandoned", got.State)
	}
}

func TestExpiredWhileDown(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, "", Options{Now: clk.Now})
	req := heldUpdate()
	req.Timeout = time.Hour
	r := submit(t, s, req)
	s.Close()

	clk.Advance(2 * time.Hour)
	s = openTest(t, s.path, Options{Now: clk.Now, Targets: []string{"shop", "billing"}})
	got, err := s.Get(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != Expired || got.Reason != ReasonExpired || !got.Decided.Equal(r.Expires) {
		t.Errorf("got %q %q decided %v, want expired at %v", got.State, got.Reason, got.Decided, r.Expires)
	}
	for _, target := range []string{"shop", "billing"} {
		if g := s.pendingGauge(t, target); g != 0 {
			t.Errorf("interlock_approvals_pending{target=%s} = %v, want 0", target, g)
		}
	}
	if a := s.Abandon(func(string) bool { return false }); len(a) != 0 {
		t.Errorf("Abandon found %d pending, want 0", len(a))
	}
}

// A request reloaded with time left expires on a timer for what remains.
func TestReloadedRequestExpires(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, "", Options{Now: clk.Now})
	req := heldUpdate()
	req.Timeout = time.Hour
	r := submit(t, s, req)
	s.Close()

	clk.Advance(time.Hour - 100*time.Millisecond)
	s = openTest(t, s.path, Options{Now: clk.Now})
	w := receive(t, waitAsync(s, context.Background(), r.ID))
	if w.err != nil || w.r.State != Expired {
		t.Fatalf("Wait = %q, %v; want expired", w.r.State, w.err)
	}
}

func TestGrantWindow(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, "", Options{Now: clk.Now})
	req := heldUpdate()
	req.Grant = 15 * time.Minute
	req.RuleDefinition = "def-1"
	r := submit(t, s, req)

	if _, ok := s.Granted("support", "shop", req.Rule, "def-1"); ok {
		t.Fatal("Granted before any approval")
	}
	clk.Advance(time.Minute)
	if _, err := s.Decide(r.ID, bob, true, "go ahead for a while"); err != nil {
		t.Fatal(err)
	}
	decidedAt := clk.Now()

	tests := []struct {
		name                   string
		after                  time.Duration // since the approval
		workload, target, rule string
		definition             string
		want                   bool
	}{
		{"second command right after", time.Minute, "support", "shop", req.Rule, "def-1", true},
		{"other target", time.Minute, "support", "billing", req.Rule, "def-1", false},
		{"other workload", time.Minute, "batch", "shop", req.Rule, "def-1", false},
		{"other rule", time.Minute, "support", "shop", "ddl-needs-approval", "def-1", false},
		{"the rule changed by a reload", time.Minute, "support", "shop", req.Rule, "def-2", false},
		{"last moment", 15*time.Minute - time.Nanosecond, "support", "shop", req.Rule, "def-1", true},
		{"window over", 15 * time.Minute, "support", "shop", req.Rule, "def-1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.mu.Lock()
			clk.t = decidedAt.Add(tt.after)
			clk.mu.Unlock()
			g, ok := s.Granted(tt.workload, tt.target, tt.rule, tt.definition)
			if ok != tt.want {
				t.Fatalf("Granted = %v, want %v", ok, tt.want)
			}
			if ok && (g.ID != r.ID || g.State != Approved || !g.GrantUntil().Equal(decidedAt.Add(15*time.Minute))) {
				t.Errorf("Granted returned %s %q until %v", g.ID, g.State, g.GrantUntil())
			}
		})
	}

	t.Run("survives a restart", func(t *testing.T) {
		clk.mu.Lock()
		clk.t = decidedAt.Add(5 * time.Minute)
		clk.mu.Unlock()
		s.Close()
		s2 := openTest(t, s.path, Options{Now: clk.Now})
		if g, ok := s2.Granted("support", "shop", req.Rule, "def-1"); !ok || g.ID != r.ID {
			t.Fatalf("after a restart Granted = %v, %v; want %s", g.ID, ok, r.ID)
		}
		if _, ok := s2.Granted("support", "shop", req.Rule, "def-2"); ok {
			t.Error("after a restart the window covers another definition of the rule")
		}
		clk.Advance(10 * time.Minute)
		if _, ok := s2.Granted("support", "shop", req.Rule, "def-1"); ok {
			t.Error("the window outlived its grant after a restart")
		}
	})
}

func TestRejectionAndNoGrantOpenNoWindow(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, "", Options{Now: clk.Now})
	withGrant := heldUpdate()
	withGrant.Grant = time.Hour
	r := submit(t, s, withGrant)
	s.Decide(r.ID, bob, false, "no")
	noGrant := heldUpdate()
	r2 := submit(t, s, noGrant)
	s.Decide(r2.ID, bob, true, "once")
	if g, ok := s.Granted("support", "shop", withGrant.Rule, ""); ok {
		t.Errorf("Granted = %s: neither a rejection nor an approval without grant opens a window", g.ID)
	}
}

func TestListAndRetention(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, "", Options{Now: clk.Now, Retention: 48 * time.Hour})
	var ids []string
	for i := range 5 {
		r := heldUpdate()
		r.Command = fmt.Sprintf("UPDATE t SET n = %d", i)
		r.Timeout = 100 * time.Hour
		ids = append(ids, submit(t, s, r).ID)
		clk.Advance(time.Second)
	}
	s.Decide(ids[1], bob, true, "")
	s.Decide(ids[3], bob, false, "")

	all, err := s.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := idsOf(all), []string{ids[4], ids[3], ids[2], ids[1], ids[0]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("List() = %v, want newest first %v", got, want)
	}
	pending, _ := s.List(Filter{State: Pending})
	if got, want := idsOf(pending), []string{ids[4], ids[2], ids[0]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("List(pending) = %v, want %v", got, want)
	}
	rejected, _ := s.List(Filter{State: Rejected})
	if got := idsOf(rejected); fmt.Sprint(got) != fmt.Sprint([]string{ids[3]}) {
		t.Errorf("List(rejected) = %v", got)
	}
	two, _ := s.List(Filter{Limit: 2})
	if len(two) != 2 || two[0].ID != ids[4] {
		t.Errorf("List(limit 2) = %v", idsOf(two))
	}

	// Past retention the decided requests go at the next sweep; pending
	// ones stay whatever their age.
	clk.Advance(49 * time.Hour)
	s.Close()
	s = openTest(t, s.path, Options{Now: clk.Now, Retention: 48 * time.Hour})
	if _, err := s.Get(ids[1]); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a request past retention = %v, want ErrNotFound", err)
	}
	if got, _ := s.List(Filter{}); len(got) != 3 {
		t.Errorf("after pruning %d requests remain, want the 3 pending", len(got))
	}
}

func idsOf(rs []Request) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func TestOpenRefusesABusyFile(t *testing.T) {
	s := openTest(t, "", Options{})
	if _, err := Open(s.path, Options{}); err == nil {
		t.Fatal("a second Open of the same file succeeded")
	}
}

// longUpdate is a statement whose dangerous part comes after 4 KiB of
// filler: what a store or a display that cut at 4 KiB would hide.
func longUpdate() string {
	return "UPDATE accounts SET note = '" + strings.Repeat("x", 4100) + "', is_admin = true WHERE id = 7"
}

// TestLongCommandIsKeptWhole: a command past 4 KiB is kept byte for byte,
// by Submit, Get, List (pending and all), across a restart, and after a
// decision; one longer than MaxCommandLen is refused, not cut.
func TestLongCommandIsKeptWhole(t *testing.T) {
	s := openTest(t, "", Options{})
	r := heldUpdate()
	r.Command = longUpdate() + " -- é\xff"
	a := submit(t, s, r)
	b := submit(t, s, heldUpdate())
	check := func(when string, got Request) {
		t.Helper()
		if got.Command != r.Command {
			t.Errorf("%s: command is %d bytes ending %q, want the %d sent", when, len(got.Command),
				got.Command[max(0, len(got.Command)-40):], len(r.Command))
		}
	}
	check("Submit", a)
	g, err := s.Get(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	check("Get", g)
	for _, f := range []Filter{{State: Pending}, {}} {
		list, err := s.List(f)
		if err != nil || len(list) != 2 {
			t.Fatalf("List(%+v): %d requests, %v", f, len(list), err)
		}
		check(fmt.Sprintf("List(%+v)", f), list[1])
		if list[0].ID != b.ID || list[0].Command != heldUpdate().Command {
			t.Errorf("List(%+v): newest is %s %q", f, list[0].ID, list[0].Command)
		}
	}
	s.Close()

	s = openTest(t, s.path, Options{})
	g, err = s.Get(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	check("Get after a restart", g)
	d, err := s.Decide(a.ID, bob, false, "no")
	if err != nil {
		t.Fatal(err)
	}
	check("Decide", d)
	g, err = s.Get(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	check("Get after the decision", g)
	list, err := s.List(Filter{State: Rejected})
	if err != nil || len(list) != 1 {
		t.Fatalf("List(rejected): %d requests, %v", len(list), err)
	}
	check("List(rejected)", list[0])

	huge := heldUpdate()
	huge.Command = strings.Repeat("x", MaxCommandLen+1)
	if _, err := s.Submit(context.Background(), huge); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("Submit of a command over MaxCommandLen: %v, want ErrInvalidRequest", err)
	}
}

// TestEmptyCommandKept: a request without a command (an SSH shell) reads
// back after a restart.
func TestEmptyCommandKept(t *testing.T) {
	s := openTest(t, "", Options{})
	r := heldUpdate()
	r.Command = ""
	a := submit(t, s, r)
	s.Close()
	s = openTest(t, s.path, Options{})
	if g, err := s.Get(a.ID); err != nil || g.Command != "" || g.State != Pending {
		t.Errorf("Get after a restart: %+v, %v", g, err)
	}
}

// TestPruneRemovesCommands: pruning a request removes its command too.
func TestPruneRemovesCommands(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, "", Options{Now: clk.Now, Retention: time.Hour})
	r := heldUpdate()
	r.Command = longUpdate()
	a := submit(t, s, r)
	if _, err := s.Decide(a.ID, bob, false, "no"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	clk.Advance(2 * time.Hour)
	s = openTest(t, s.path, Options{Now: clk.Now, Retention: time.Hour})
	if _, err := s.Get(a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a pruned request: %v", err)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketCommands).Stats().KeyN; n != 0 {
			return fmt.Errorf("%d commands left after pruning", n)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestReadsVersion1Records: a store written before commands were kept
// apart still opens; its pending request waits again and, rewritten,
// keeps its command through a decision.
func TestReadsVersion1Records(t *testing.T) {
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "approvals.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	created := clk.Now()
	v1 := func(id string, state State) string {
		decided := ""
		if state != Pending {
			decided = `,"decided":"` + created.Format(time.RFC3339Nano) + `"`
		}
		return fmt.Sprintf(`{"v":1,"id":%q,"created":%q,"expires":%q,"session_id":"s","target":"shop","protocol":"postgres",`+
			`"workload":"support","requester":{"subject":"support-agent"},"command":"UPDATE t SET a = 1 %s","rule":"writes",`+
			`"approvers":["dba"],"timeout_ns":600000000000,"state":%q%s}`,
			id, created.Format(time.RFC3339Nano), created.Add(10*time.Minute).Format(time.RFC3339Nano), id, state, decided)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketRequests)
		if err != nil {
			return err
		}
		return errors.Join(b.Put([]byte("aaaaaaaaaa"), []byte(v1("aaaaaaaaaa", Pending))),
			b.Put([]byte("bbbbbbbbbb"), []byte(v1("bbbbbbbbbb", Rejected))))
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, path, Options{Now: clk.Now})
	list, err := s.List(Filter{})
	if err != nil || len(list) != 2 {
		t.Fatalf("List: %d requests, %v", len(list), err)
	}
	for _, r := range list {
		if r.Command != "UPDATE t SET a = 1 "+r.ID {
			t.Errorf("%s: command %q", r.ID, r.Command)
		}
	}
	if _, err := s.Decide("aaaaaaaaaa", bob, true, ""); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, path, Options{Now: clk.Now})
	if r, err := s.Get("aaaaaaaaaa"); err != nil || r.Command != "UPDATE t SET a = 1 aaaaaaaaaa" || r.State != Approved {
		t.Errorf("after the decision and a restart: %+v, %v", r, err)
	}
}

// Many callers at once: run with -race.
func TestConcurrentUse(t *testing.T) {
	s := openTest(t, "", Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Go(func() {
			r, err := s.Submit(context.Background(), heldUpdate())
			if err != nil {
				errs <- err
				return
			}
			done := make(chan Request, 1)
			go func() {
				w, _ := s.Wait(context.Background(), r.ID)
				done <- w
			}()
			s.List(Filter{})
			s.Granted("support", "shop", r.Rule, "")
			if _, err := s.Decide(r.ID, bob, i%2 == 0, ""); err != nil {
				errs <- err
				return
			}
			if w := <-done; !w.State.Final() {
				errs <- fmt.Errorf("waiter woke with %q", w.State)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if g := s.pendingGauge(t, "shop"); g != 0 {
		t.Errorf("interlock_approvals_pending{target=shop} = %v, want 0", g)
	}
}

// Close wakes every waiter and stops every goroutine the store started:
// timers, webhooks and their connections.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	rc := newReceiver(t)
	s := openTest(t, "", Options{})
	req := heldUpdate()
	req.NotifyURL = rc.url()
	var chans []<-chan waitResult
	for range 3 {
		r := submit(t, s, req)
		rc.next(t)
		chans = append(chans, waitAsync(s, context.Background(), r.ID))
	}
	time.Sleep(20 * time.Millisecond) // let the waiters block
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ch := range chans {
		if w := receive(t, ch); !errors.Is(w.err, ErrClosed) {
			t.Errorf("Wait = %v, want ErrClosed", w.err)
		}
	}
	rc.srv.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestByteBudget: the store keeps its requests and commands within
// Options.MaxBytes. A command that does not fit is refused with
// ErrStoreFull (its caller denies it), counted and not held; a final
// request makes room, the earliest decided first, but an open grant
// never does; what the file holds counts after a restart, and a lowered
// budget is met at Open.
func TestByteBudget(t *testing.T) {
	clock := newFakeClock()
	const budget = 64 << 10
	s := openTest(t, "", Options{MaxBytes: budget, Now: clock.Now})
	long := func(tag string) Request {
		r := heldUpdate()
		r.Command = "UPDATE notes SET body = '" + strings.Repeat(tag, 20<<10) + "'"
		return r
	}
	refused := func(s *testStore, when string) {
		t.Helper()
		before := metricValue(t, s.reg, "interlock_approvals_refused_total", map[string]string{"reason": "store_full"})
		pending, _ := s.List(Filter{State: Pending})
		if _, err := s.Submit(context.Background(), long("z")); !errors.Is(err, ErrStoreFull) {
			t.Fatalf("%s: Submit = %v, want ErrStoreFull", when, err)
		}
		if after := metricValue(t, s.reg, "interlock_approvals_refused_total", map[string]string{"reason": "store_full"}); after != before+1 {
			t.Errorf("%s: refused{store_full} went from %v to %v, want one more", when, before, after)
		}
		if now, _ := s.List(Filter{State: Pending}); len(now) != len(pending) {
			t.Errorf("%s: %d pending after a refusal, want %d", when, len(now), len(pending))
		}
	}
	a := submit(t, s, long("a"))
	b := submit(t, s, long("b"))
	c := submit(t, s, long("c"))
	refused(s, "three pending")
	if used := metricValue(t, s.reg, "interlock_approvals_store_bytes", nil); used < 3*20<<10 || used > budget {
		t.Errorf("store_bytes = %v, want the three commands' and at most %d", used, budget)
	}

	// Nothing is lost to a restart: the pending three still fill it.
	s.Close()
	s = openTest(t, s.path, Options{MaxBytes: budget, Now: clock.Now})
	refused(s, "after a restart")

	// An approval with an open grant keeps its request; the request
	// decided first makes room.
	if _, err := s.Decide(b.ID, bob, true, ""); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	if _, err := s.Cancel(a.ID, ""); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	if _, err := s.Decide(c.ID, bob, false, "no"); err != nil {
		t.Fatal(err)
	}
	grant := long("g")
	grant.Grant = time.Hour
	g := submit(t, s, grant) // evicts b (earliest decided)
	if _, err := s.Decide(g.ID, bob, true, ""); err != nil {
		t.Fatal(err)
	}
	// (a may go too: room is made with some to spare.)
	for id, want := range map[string]bool{b.ID: false, c.ID: true, g.ID: true} {
		if _, err := s.Get(id); (err == nil) != want {
			t.Errorf("Get(%s) after making room once: %v, want kept %v", id, err, want)
		}
	}
	d := submit(t, s, long("d")) // evicts a, if still there, and c
	if _, err := s.Get(a.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the earliest final request was kept: %v", err)
	}
	if _, err := s.Submit(context.Background(), long("e")); err != nil && !errors.Is(err, ErrStoreFull) {
		t.Fatal(err)
	}
	if _, err := s.Get(g.ID); err != nil {
		t.Errorf("the request whose grant window is open was deleted: %v", err)
	}
	if _, ok := s.Granted(grant.Workload, grant.Target, grant.Rule, grant.RuleDefinition); !ok {
		t.Error("the grant window closed")
	}
	if v := metricValue(t, s.reg, "interlock_approvals_evicted_total", nil); v < 2 {
		t.Errorf("evicted = %v, want at least 2", v)
	}
	if used := metricValue(t, s.reg, "interlock_approvals_store_bytes", nil); used > budget {
		t.Errorf("store_bytes = %v, over the budget of %d", used, budget)
	}
	// The pending one and the grant's cannot make room: a command that
	// would pass the budget is refused.
	for range 3 {
		if _, err := s.Submit(context.Background(), long("f")); errors.Is(err, ErrStoreFull) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	refused(s, "pending and a grant")
	if _, err := s.Get(d.ID); err != nil {
		t.Errorf("a pending request was deleted: %v", err)
	}

	// A lowered budget deletes final requests at Open, pending ones never.
	s.Abandon(func(string) bool { return false })
	s.Close()
	clock.Advance(2 * time.Hour) // the grant window closes
	s = openTest(t, s.path, Options{MaxBytes: 30 << 10, Now: clock.Now})
	if used := metricValue(t, s.reg, "interlock_approvals_store_bytes", nil); used > 30<<10 {
		t.Errorf("store_bytes = %v after opening with a budget of %d", used, 30<<10)
	}
	list, err := s.List(Filter{})
	if err != nil || len(list) != 1 {
		t.Errorf("after opening with a lowered budget: %d requests, %v; want the latest", len(list), err)
	}
}

// TestTooManyPendingCounted: MaxPending refuses, and the refusal counts.
func TestTooManyPendingCounted(t *testing.T) {
	s := openTest(t, "", Options{MaxPending: 1})
	submit(t, s, heldUpdate())
	if _, err := s.Submit(context.Background(), heldUpdate()); !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("Submit = %v, want ErrTooManyPending", err)
	}
	if v := metricValue(t, s.reg, "interlock_approvals_refused_total", map[string]string{"reason": "too_many_pending"}); v != 1 {
		t.Errorf("refused{too_many_pending} = %v, want 1", v)
	}
}

// TestListCommandPrefix: List with CommandPrefix returns each command's
// start, cut on a character boundary, with the whole command's length and
// hash, for pending requests (memory) and final ones (the file), before
// and after a restart; Get returns it whole with the same hash.
func TestListCommandPrefix(t *testing.T) {
	s := openTest(t, "", Options{})
	r := heldUpdate()
	r.Command = "UPDATE notes SET body = '" + strings.Repeat("é", 3000) + "'"
	sum := sha256.Sum256([]byte(r.Command))
	hash := hex.EncodeToString(sum[:])
	a := submit(t, s, r)
	short := submit(t, s, heldUpdate())
	check := func(when string, f Filter) {
		t.Helper()
		list, err := s.List(f)
		if err != nil || len(list) != 2 {
			t.Fatalf("%s: List: %d, %v", when, len(list), err)
		}
		got := list[1]
		if got.ID != a.ID || !strings.HasPrefix(r.Command, got.Command) || len(got.Command) > 100 || len(got.Command) < 98 ||
			!utf8.ValidString(got.Command) || !got.CommandCut() {
			t.Errorf("%s: command %q, want the first 100 bytes, whole characters", when, got.Command)
		}
		if got.CommandBytes != len(r.Command) || got.CommandSHA256 != hash {
			t.Errorf("%s: %d bytes, sha256 %s; want %d, %s", when, got.CommandBytes, got.CommandSHA256, len(r.Command), hash)
		}
		if list[0].ID != short.ID || list[0].Command != heldUpdate().Command || list[0].CommandCut() {
			t.Errorf("%s: a short command came back %q", when, list[0].Command)
		}
		g, err := s.Get(a.ID)
		if err != nil || g.Command != r.Command || g.CommandSHA256 != hash || g.CommandCut() {
			t.Errorf("%s: Get: %d bytes, sha256 %s, %v", when, len(g.Command), g.CommandSHA256, err)
		}
	}
	check("pending", Filter{State: Pending, CommandPrefix: 100})
	s.Close()
	s = openTest(t, s.path, Options{})
	check("after a restart", Filter{CommandPrefix: 100})
	s.Abandon(func(string) bool { return false })
	check("abandoned", Filter{State: Abandoned, CommandPrefix: 100})
}

func TestCommandPrefix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abc", 2, "ab"},
		{"aé", 2, "a"},  // é is 2 bytes: not split
		{"a€b", 3, "a"}, // € is 3 bytes
		{"a😀b", 4, "a"}, // 😀 is 4 bytes
		{"a😀b", 5, "a😀"},
		{"\x80\x80\x80\x80\x80", 2, "\x80\x80"}, // no character to keep whole
		{"", 3, ""},
	} {
		if got := commandPrefix(tc.in, tc.n); got != tc.want {
			t.Errorf("commandPrefix(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// TestSubmitWaitOutcomeSurvivesEviction: SubmitWait returns the outcome
// of the request it held even when it was decided, and deleted to make
// room, before the waiting began (Wait by id then finds nothing); a
// refused Submit returns no ID.
func TestSubmitWaitOutcomeSurvivesEviction(t *testing.T) {
	s := openTest(t, "", Options{MaxBytes: 64 << 10})
	long := heldUpdate()
	long.Command = strings.Repeat("y", 40<<10)
	got, err := s.SubmitWait(context.Background(), long, func(r Request) {
		if _, err := s.Decide(r.ID, bob, true, "ok"); err != nil {
			t.Errorf("Decide: %v", err)
		}
		submit(t, s, long) // makes room by deleting r
		if _, err := s.Wait(context.Background(), r.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("Wait by id after the deletion: %v; the test proves nothing", err)
		}
	})
	if err != nil || got.State != Approved || got.Decider.Subject != "bob" || got.ID == "" {
		t.Errorf("SubmitWait = %s by %q (id %q), %v; want approved by bob", got.State, got.Decider.Subject, got.ID, err)
	}
	got, err = s.SubmitWait(context.Background(), long, func(Request) { t.Error("a refused request was announced as held") })
	if !errors.Is(err, ErrStoreFull) || got.ID != "" {
		t.Errorf("SubmitWait on a full store = %q, %v; want no request and ErrStoreFull", got.ID, err)
	}
}

// TestBudgetCountsWhatTheFileHolds: after every kind of change (holds
// that make room or are refused, decisions with long reasons, cancels,
// expiry, pruning, restarts) the bytes counted are the bytes the file's
// requests and commands take.
func TestBudgetCountsWhatTheFileHolds(t *testing.T) {
	clock := newFakeClock()
	opts := Options{MaxBytes: 40 << 10, Now: clock.Now, Retention: time.Hour, MaxPending: 5}
	s := openTest(t, "", opts)
	rng := rand.New(rand.NewPCG(1, 2))
	var ids []string
	for step := range 500 {
		switch rng.IntN(6) {
		case 0, 1:
			r := heldUpdate()
			r.Command = strings.Repeat("x", rng.IntN(12<<10))
			r.Grant = time.Duration(rng.IntN(3)) * time.Minute
			got, err := s.Submit(context.Background(), r)
			if err == nil {
				ids = append(ids, got.ID)
			} else if !errors.Is(err, ErrStoreFull) && !errors.Is(err, ErrTooManyPending) {
				t.Fatal(err)
			}
		case 2:
			if len(ids) > 0 {
				// Control characters: the record grows by their escapes.
				s.Decide(ids[rng.IntN(len(ids))], bob, rng.IntN(2) == 0, strings.Repeat("\x01", rng.IntN(2000)))
			}
		case 3:
			if len(ids) > 0 {
				s.Cancel(ids[rng.IntN(len(ids))], "")
			}
		case 4:
			clock.Advance(time.Duration(rng.IntN(40)) * time.Minute) // expires at the next Decide, prunes
		case 5:
			s.Close()
			s = openTest(t, s.path, opts)
			s.Abandon(func(string) bool { return false })
		}
		var stored int64
		if err := s.db.View(func(tx *bolt.Tx) error {
			var err error
			stored, err = storedBytes(tx)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if used := metricValue(t, s.reg, "interlock_approvals_store_bytes", nil); int64(used) != stored {
			t.Fatalf("step %d: store_bytes %v, the file holds %d", step, used, stored)
		}
	}
}
