package review

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/interlock-dev/interlock/identity"
)

// Options are the Store's collaborators and limits; the zero value works.
type Options struct {
	// Now is the clock for every timestamp, expiry check and grant window;
	// nil is time.Now. Expiry timers run on the real clock for the
	// request's Timeout.
	Now    func() time.Time
	Logger *slog.Logger // nil discards
	// Registerer receives interlock_approvals_pending and the webhook
	// metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Notify, when set, is told every event of every request, besides the
	// webhook of the request's NotifyURL.
	Notify Notifier
	// APIBase is the admin API's base URL for the links in webhook
	// messages, e.g. "http://127.0.0.1:9470".
	APIBase string
	// Webhook tunes the per-URL webhooks the store starts for NotifyURL;
	// its APIBase, Logger and Registerer default to the ones above.
	Webhook WebhookOptions
	// Retention is how long a final request is kept (listed, shown) after
	// it was decided; default 30 days. A live grant keeps its request
	// regardless.
	Retention time.Duration
	// MaxPending bounds the requests pending at once (default 1000);
	// Submit refuses more with ErrTooManyPending.
	MaxPending int
	// MaxBytes is the store's byte budget (default DefaultMaxBytes): what
	// its requests and their commands take in the file, keys and values.
	// A Submit that would pass it first deletes final requests before
	// their retention ends, the earliest decided first (never one whose
	// grant window is open); if that is not enough it refuses with
	// ErrStoreFull. Open counts what the file holds, and deletes the same
	// way when a lowered budget is passed.
	MaxBytes int64
	// Targets are the configured targets' names: their
	// interlock_approvals_pending series exist (at 0) from Open, so an
	// alert on them works before the first request.
	Targets []string
}

// Defaults.
const (
	DefaultRetention  = 30 * 24 * time.Hour
	DefaultMaxPending = 1000
	// DefaultMaxBytes holds 64 of the longest commands (MaxCommandLen)
	// pending at once, or about a million requests of a typical length
	// (statements of a few hundred bytes): months of retention at any
	// rate humans review. Without a budget, agents that get commands held
	// and abandon them fill the state folder's disk for Retention.
	DefaultMaxBytes = 1 << 30
	// pruneEvery spaces the retention sweeps Submit makes.
	pruneEvery = time.Hour
	// maxReasonLen bounds a decider's reason.
	maxReasonLen = 1024
)

// Store holds approval requests in one bbolt file and wakes the commands
// waiting on them. It is safe for concurrent use.
type Store struct {
	db        *bolt.DB
	opts      Options
	log       *slog.Logger
	metrics   *storeMetrics
	whMetrics *webhookMetrics

	mu        sync.Mutex
	closed    bool
	done      chan struct{} // closed by Close: wakes every Wait
	pending   map[string]*held
	grants    map[grantKey]Request
	webhooks  map[string]*Webhook
	lastPrune time.Time
	used      int64 // bytes the file's requests and commands take (see Options.MaxBytes)
}

// held is a pending request in memory.
type held struct {
	// req is the request; it is replaced by the final request before done
	// closes and never changes after, so a woken waiter reads it freely.
	req   Request
	timer *time.Timer
	done  chan struct{}
}

type grantKey struct{ workload, target, rule, definition string }

// Open opens (creating if needed) the store in the file at path, loads it,
// expires the pending requests whose time ran out while it was closed and
// arms the timers of the others. A file another process holds open fails
// after a second.
func Open(path string, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	opts.Webhook.APIBase = cmp.Or(opts.Webhook.APIBase, opts.APIBase)
	if opts.Webhook.Logger == nil {
		opts.Webhook.Logger = opts.Logger
	}
	if opts.Webhook.Registerer == nil {
		opts.Webhook.Registerer = opts.Registerer
	}
	sm, err := newStoreMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	for _, t := range opts.Targets {
		sm.pending.WithLabelValues(t)
	}
	wm, err := newWebhookMetrics(opts.Webhook.Registerer)
	if err != nil {
		return nil, err
	}
	// 0600: commands may carry data worth hiding.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening approvals %s: %w", path, err)
	}
	s := &Store{
		db: db, opts: opts, log: opts.Logger, metrics: sm, whMetrics: wm,
		done:     make(chan struct{}),
		pending:  map[string]*held{},
		grants:   map[grantKey]Request{},
		webhooks: map[string]*Webhook{},
	}
	expired, err := s.load()
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	for _, r := range expired {
		s.notify(context.Background(), Event{Kind: EventDecided, Request: r})
	}
	return s, nil
}

// load reads every request: pending ones past Expires become expired (and
// are returned), the others wait again; live grants are restored; final
// requests past retention are deleted.
func (s *Store) load() ([]Request, error) {
	// A timer armed here may fire before the load ends; it waits for mu.
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var expired []Request
	var evicted int
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRequests)
		if err != nil {
			return fmt.Errorf("creating bucket: %w", err)
		}
		if _, err := tx.CreateBucketIfNotExists(bucketCommands); err != nil {
			return fmt.Errorf("creating bucket: %w", err)
		}
		// Only the requests that stay in memory or are announced again are
		// read with their commands. Pending ones in the version 1 form are
		// rewritten in the current one, as their changes will be.
		var kept, legacy []Request
		err = b.ForEach(func(k, v []byte) error {
			r, apart, err := decodeRequest(k, v)
			keep := err == nil && (r.State == Pending || r.State == Approved && now.Before(r.GrantUntil()))
			if keep {
				err = readCommand(tx, &r, apart, 0)
			}
			if err != nil {
				// One damaged value must not keep the gateway from starting;
				// it stays in the file for a person to look at.
				s.log.Error("skipping unreadable approval request", "err", err)
				return nil
			}
			if keep {
				kept = append(kept, r)
			}
			if keep && apart < 0 && r.State == Pending {
				legacy = append(legacy, r)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("reading: %w", err)
		}
		for _, r := range legacy {
			_, err1 := putRequest(b, r)
			_, err2 := putCommand(tx, r)
			if err := errors.Join(err1, err2); err != nil {
				return err
			}
		}
		for _, r := range kept {
			switch {
			case r.State == Pending && !now.Before(r.Expires):
				r = finalRequest(r, Expired, identity.Identity{}, ReasonExpired, r.Expires)
				if _, err := putRequest(b, r); err != nil {
					return err
				}
				expired = append(expired, r)
			case r.State == Pending:
				s.hold(r, r.Expires.Sub(now))
			case r.State == Approved && now.Before(r.GrantUntil()):
				s.addGrant(r)
			}
		}
		if _, err := s.prune(tx, now); err != nil {
			return err
		}
		// What the file holds counts, written by this process or another;
		// a budget lowered since is met now, not at the next Submit.
		used, err := storedBytes(tx)
		if err != nil {
			return err
		}
		if over := used - s.opts.MaxBytes; over > 0 {
			freed, n, err := s.evict(tx, now, over)
			if err != nil {
				return err
			}
			used -= freed
			evicted = n
		}
		s.used = used
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading approvals: %w", err)
	}
	s.lastPrune = now
	s.metrics.bytes.Set(float64(s.used))
	if evicted > 0 {
		s.metrics.evicted.Add(float64(evicted))
		s.log.Warn("approval requests deleted before their retention ended: the store was over its byte budget",
			"requests", evicted, "bytes", s.used, "max_bytes", s.opts.MaxBytes)
	}
	for _, r := range expired {
		s.log.Info("approval request expired while the gateway was down", requestAttrs(r)...)
	}
	return expired, nil
}

// Close wakes every Wait with ErrClosed, stops the expiry timers and the
// webhooks (dropping undelivered notifications) and closes the file.
// Pending requests stay pending on disk: the next Open finds them.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, h := range s.pending {
		h.timer.Stop()
	}
	close(s.done)
	whs := s.webhooks
	s.webhooks = nil
	s.mu.Unlock()

	// Options.Notify is the caller's to stop.
	var errs []error
	for _, w := range whs {
		errs = append(errs, w.Close())
	}
	// bbolt waits for transactions in flight; none can start now.
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing approvals: %w", err))
	}
	return errors.Join(errs...)
}

// Submit holds a new request: it fills ID, Created and Expires, persists
// it, arms its expiry, notifies, and returns it. The request must name
// Approvers and a positive Timeout (ErrInvalidRequest). A full store
// refuses with ErrTooManyPending (Options.MaxPending) or ErrStoreFull
// (Options.MaxBytes): the command is then not held, and its caller denies
// it as when review is unavailable.
func (s *Store) Submit(ctx context.Context, r Request) (Request, error) {
	_, r, err := s.submit(ctx, r)
	return r, err
}

// SubmitWait holds r as Submit does, calls onHeld with the request once it
// is held (the handler tells its client what it waits for), then waits
// for the outcome as Wait does. It waits on the request it held, not on
// its id: one decided before the waiting began (onHeld may block on a slow
// client) and then deleted to make room (Options.MaxBytes) still returns
// its outcome, where Wait by id would find nothing. When Submit refuses,
// the Request returned has no ID; a Wait error returns it with its ID.
func (s *Store) SubmitWait(ctx context.Context, r Request, onHeld func(Request)) (Request, error) {
	h, r, err := s.submit(ctx, r)
	if err != nil {
		return Request{}, err
	}
	onHeld(r.clone())
	return s.waitHeld(ctx, r.ID, h)
}

// submit is Submit, returning the request's held too.
func (s *Store) submit(ctx context.Context, r Request) (*held, Request, error) {
	if err := validate(r); err != nil {
		return nil, Request{}, err
	}
	r = r.clone()
	r.State, r.Decider, r.Reason, r.Decided = Pending, identity.Identity{}, "", time.Time{}
	// Hashed before the lock: a command may be 16 MiB.
	r.CommandBytes, r.CommandSHA256 = len(r.Command), commandHash([]byte(r.Command))

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, Request{}, ErrClosed
	}
	if len(s.pending) >= s.opts.MaxPending {
		n := len(s.pending)
		s.mu.Unlock()
		s.metrics.refused.WithLabelValues(refusedTooManyPending).Inc()
		s.log.Warn("command not held for review: too many requests pending", append(requestAttrs(r), "pending", n)...)
		return nil, Request{}, fmt.Errorf("holding a command of %s on %s: %d pending: %w", r.Workload, r.Target, n, ErrTooManyPending)
	}
	now := s.now()
	r.Created = now
	r.Expires = now.Add(r.Timeout)
	prune := now.Sub(s.lastPrune) >= pruneEvery
	var delta int64 // the change in s.used, once committed
	var evicted int
	err := s.db.Update(func(tx *bolt.Tx) error {
		delta, evicted = 0, 0
		b := tx.Bucket(bucketRequests)
		for {
			r.ID = newID()
			if b.Get([]byte(r.ID)) == nil && s.pending[r.ID] == nil {
				break
			}
		}
		if prune {
			freed, err := s.prune(tx, now)
			if err != nil {
				return err
			}
			delta -= freed
		}
		d, err := putRequest(b, r)
		if err != nil {
			return err
		}
		delta += d
		// The command is written once, apart from the request, so the
		// request's later changes and the scans of List, Open and prune
		// never copy or decode a long command.
		if d, err = putCommand(tx, r); err != nil {
			return err
		}
		delta += d
		if int64(len(r.Command)) > s.opts.MaxBytes {
			return fmt.Errorf("the command is longer than the store's budget of %d bytes: %w", s.opts.MaxBytes, ErrStoreFull)
		}
		if over := s.used + delta - s.opts.MaxBytes; over > 0 {
			// Freeing a sixteenth more than needed spares the next
			// Submits a scan each.
			freed, n, err := s.evict(tx, now, over+s.opts.MaxBytes/16)
			if err != nil {
				return err
			}
			delta, evicted = delta-freed, n
			if s.used+delta > s.opts.MaxBytes {
				// Rolled back: what pending requests and open grants keep
				// is not deleted for a command that is not held.
				return fmt.Errorf("the store's budget of %d bytes is taken by pending requests and open grants: %w",
					s.opts.MaxBytes, ErrStoreFull)
			}
		}
		return nil
	})
	if err != nil {
		used := s.used
		s.mu.Unlock()
		r.ID = "" // rolled back
		if errors.Is(err, ErrStoreFull) {
			s.metrics.refused.WithLabelValues(refusedStoreFull).Inc()
			s.log.Warn("command not held for review: the approval store is at its byte budget",
				append(requestAttrs(r), "command_bytes", len(r.Command), "bytes", used, "max_bytes", s.opts.MaxBytes)...)
		}
		return nil, Request{}, fmt.Errorf("holding a command of %s on %s (%d bytes): %w", r.Workload, r.Target, len(r.Command), err)
	}
	if prune {
		s.lastPrune = now
	}
	s.addUsed(delta)
	h := s.hold(r, r.Timeout)
	s.mu.Unlock()
	if evicted > 0 {
		s.metrics.evicted.Add(float64(evicted))
		s.log.Warn("approval requests deleted before their retention ended: the store is at its byte budget",
			"requests", evicted, "max_bytes", s.opts.MaxBytes)
	}

	s.log.Info("command held for approval", requestAttrs(r)...)
	s.notify(context.WithoutCancel(ctx), Event{Kind: EventRequested, Request: r})
	return h, r.clone(), nil
}

func validate(r Request) error {
	var problems []string
	if r.Timeout <= 0 {
		problems = append(problems, "timeout must be positive")
	}
	if len(r.Approvers) == 0 {
		problems = append(problems, "no approver groups")
	}
	if slices.Contains(r.Approvers, "") {
		problems = append(problems, "empty approver group")
	}
	if r.Grant < 0 {
		problems = append(problems, "negative grant")
	}
	if len(r.Command) > MaxCommandLen {
		problems = append(problems, fmt.Sprintf("a command of %d bytes is longer than review's limit of %d MiB", len(r.Command), MaxCommandLen>>20))
	}
	if r.NotifyURL != "" {
		if _, err := newWebhookURL(r.NotifyURL); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, strings.Join(problems, "; "))
	}
	return nil
}

// hold puts r in memory as pending and arms its expiry after d. The
// caller holds s.mu (or is Open).
func (s *Store) hold(r Request, d time.Duration) *held {
	h := &held{req: r, done: make(chan struct{})}
	id := r.ID
	h.timer = time.AfterFunc(max(d, 0), func() { s.expire(id) })
	s.pending[id] = h
	s.metrics.pending.WithLabelValues(r.Target).Inc()
	return h
}

// expire is the timer of a pending request.
func (s *Store) expire(id string) {
	s.mu.Lock()
	h, ok := s.pending[id]
	if s.closed || !ok {
		s.mu.Unlock()
		return
	}
	r := s.finishForced(h, Expired, identity.Identity{}, ReasonExpired, h.req.Expires)
	s.mu.Unlock()
	s.log.Info("approval request expired", requestAttrs(r)...)
	s.notify(context.Background(), Event{Kind: EventDecided, Request: r})
}

// Wait blocks until the request is final (approved, rejected, expired or
// abandoned) and returns it; a final request returns at once. When ctx
// ends first it returns the request as it stands (still pending) and an
// error wrapping ctx.Err() and its cause; the request stays pending until
// the caller Cancels it or it expires. Close makes it return ErrClosed.
func (s *Store) Wait(ctx context.Context, id string) (Request, error) {
	id = normalizeID(id)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Request{}, ErrClosed
	}
	h, ok := s.pending[id]
	s.mu.Unlock()
	if !ok {
		return s.Get(id)
	}
	return s.waitHeld(ctx, id, h)
}

// waitHeld is Wait on h, the held request id.
func (s *Store) waitHeld(ctx context.Context, id string, h *held) (Request, error) {
	select {
	case <-h.done:
		return h.req.clone(), nil
	case <-ctx.Done():
		r := s.snapshot(h)
		err := ctx.Err()
		if cause := context.Cause(ctx); cause != nil && cause != err {
			return r, fmt.Errorf("waiting for approval %s: %w: %w", id, err, cause)
		}
		return r, fmt.Errorf("waiting for approval %s: %w", id, err)
	case <-s.done:
		return s.snapshot(h), fmt.Errorf("waiting for approval %s: %w", id, ErrClosed)
	}
}

func (s *Store) snapshot(h *held) Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return h.req.clone()
}

// Decide approves or rejects a pending request in decider's name. It
// refuses, returning the request as it stands where there is one:
// ErrNotFound (no such id), ErrNotPending (already final, or expiring now),
// ErrSelfApproval (the decider is the requester; see the package
// documentation) and ErrNotApprover (the decider has no subject, or is in
// none of the Approvers groups). A decision that cannot be persisted is
// not made. An approval with a Grant opens the grant window.
func (s *Store) Decide(id string, decider identity.Identity, approve bool, reason string) (Request, error) {
	id = normalizeID(id)
	h, r, err := s.lockPending(id, "deciding")
	if err != nil {
		return r, err
	}
	now := s.now()
	if !now.Before(h.req.Expires) {
		// The timer has not fired yet; the clock has the last word.
		r = s.finishForced(h, Expired, identity.Identity{}, ReasonExpired, h.req.Expires)
		s.mu.Unlock()
		s.log.Info("approval request expired", requestAttrs(r)...)
		s.notify(context.Background(), Event{Kind: EventDecided, Request: r})
		return r.clone(), fmt.Errorf("deciding approval %s: it is %s: %w", id, r.State, ErrNotPending)
	}
	req := h.req.clone()
	switch {
	case isSamePrincipal(req.Requester, decider):
		s.mu.Unlock()
		return req, fmt.Errorf("deciding approval %s as %q: %w", id, decider.Subject, ErrSelfApproval)
	case decider.Subject == "":
		s.mu.Unlock()
		return req, fmt.Errorf("deciding approval %s: the decider has no subject: %w", id, ErrNotApprover)
	case !isApprover(req.Approvers, decider):
		s.mu.Unlock()
		return req, fmt.Errorf("deciding approval %s as %q (groups %s; approvers %s): %w",
			id, decider.Subject, strings.Join(decider.Groups, ","), strings.Join(req.Approvers, ","), ErrNotApprover)
	}
	state := Rejected
	if approve {
		state = Approved
	}
	decider.Groups = slices.Clone(decider.Groups)
	r = finalRequest(h.req, state, decider, truncate(reason, maxReasonLen), now)
	if err := s.persist(r); err != nil {
		s.mu.Unlock()
		return req, fmt.Errorf("deciding approval %s: %w", id, err)
	}
	s.finish(h, r)
	s.mu.Unlock()

	s.log.Info("approval request decided", requestAttrs(r)...)
	s.notify(context.Background(), Event{Kind: EventDecided, Request: r})
	return r.clone(), nil
}

// lockPending locks the store and returns the pending request id, still
// locked. When there is none it unlocks and returns the request as it
// stands (if it exists) with ErrClosed, ErrNotFound or ErrNotPending;
// doing names the caller's action in the error.
func (s *Store) lockPending(id, doing string) (*held, Request, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, Request{}, ErrClosed
	}
	if h, ok := s.pending[id]; ok {
		return h, Request{}, nil
	}
	s.mu.Unlock()
	r, err := s.Get(id)
	if err != nil {
		return nil, Request{}, err
	}
	return nil, r, fmt.Errorf("%s approval %s: it is %s: %w", doing, id, r.State, ErrNotPending)
}

// Cancel abandons a pending request: its session ended while it waited.
// reason "" is ReasonSessionEnded. ErrNotFound and ErrNotPending as for
// Decide.
func (s *Store) Cancel(id, reason string) (Request, error) {
	id = normalizeID(id)
	h, r, err := s.lockPending(id, "abandoning")
	if err != nil {
		return r, err
	}
	r = s.finishForced(h, Abandoned, identity.Identity{}, cmp.Or(truncate(reason, maxReasonLen), ReasonSessionEnded), s.now())
	s.mu.Unlock()
	s.log.Info("approval request abandoned", requestAttrs(r)...)
	s.notify(context.Background(), Event{Kind: EventDecided, Request: r})
	return r.clone(), nil
}

// Abandon marks abandoned, with ReasonSessionEnded, every pending request
// whose session alive says has ended, and returns them. The gateway calls
// it once its sessions are known; after a restart none are, so every
// request held by the old process is abandoned. alive is called without
// the store's lock.
func (s *Store) Abandon(alive func(sessionID string) bool) []Request {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	sessions := make(map[string]string, len(s.pending))
	for id, h := range s.pending {
		sessions[id] = h.req.SessionID
	}
	s.mu.Unlock()

	var ended []string
	for id, sid := range sessions {
		if !alive(sid) {
			ended = append(ended, id)
		}
	}
	var out []Request
	s.mu.Lock()
	for _, id := range ended {
		if h, ok := s.pending[id]; ok && !s.closed {
			out = append(out, s.finishForced(h, Abandoned, identity.Identity{}, ReasonSessionEnded, s.now()))
		}
	}
	s.mu.Unlock()
	sortNewestFirst(out)
	for _, r := range out {
		s.log.Info("approval request abandoned", requestAttrs(r)...)
		s.notify(context.Background(), Event{Kind: EventDecided, Request: r})
	}
	return cloneAll(out)
}

// Granted returns the approved request whose grant window covers a
// command of workload on target under rule, as defined now (definition:
// policy.ReviewSettings.Definition), if one is open now. The latest-ending
// window wins when several are. A window the same rule opened under
// another definition (before a reload changed it) covers nothing.
func (s *Store) Granted(workload, target, rule, definition string) (Request, bool) {
	k := grantKey{workload, target, rule, definition}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[k]
	if !ok || s.closed {
		return Request{}, false
	}
	if !s.now().Before(g.GrantUntil()) {
		delete(s.grants, k)
		return Request{}, false
	}
	return g.clone(), true
}

// Get returns one request; ErrNotFound when the store has none by that id
// (never had, or pruned after retention).
func (s *Store) Get(id string) (Request, error) {
	id = normalizeID(id)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Request{}, ErrClosed
	}
	if h, ok := s.pending[id]; ok {
		r := h.req.clone()
		s.mu.Unlock()
		return r, nil
	}
	s.mu.Unlock()
	var r Request
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRequests).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("approval %q: %w", id, ErrNotFound)
		}
		var err error
		r, err = readRequest(tx, []byte(id), v)
		return err
	})
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return Request{}, ErrClosed
	}
	if err != nil {
		return Request{}, err
	}
	return r, nil
}

// List returns the requests f selects, newest first, at most f.Limit, each
// with its whole command or, with f.CommandPrefix, its start. Unreadable
// stored values are skipped (and logged at Open).
func (s *Store) List(f Filter) ([]Request, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if f.State == Pending {
		// Memory is the truth for pending requests, and reading it spares
		// the file.
		out := make([]Request, 0, len(s.pending))
		for _, h := range s.pending {
			r := h.req.clone()
			if f.CommandPrefix > 0 {
				r.Command = commandPrefix(r.Command, f.CommandPrefix)
			}
			out = append(out, r)
		}
		s.mu.Unlock()
		sortNewestFirst(out)
		return out[:min(limit, len(out))], nil
	}
	s.mu.Unlock()
	var out []Request
	err := s.db.View(func(tx *bolt.Tx) error {
		// The records first, then the commands of only those returned.
		type listed struct {
			r     Request
			apart int
		}
		var all []listed
		err := tx.Bucket(bucketRequests).ForEach(func(k, v []byte) error {
			r, apart, err := decodeRequest(k, v)
			if err == nil && (f.State == "" || r.State == f.State) {
				all = append(all, listed{r, apart})
			}
			return nil
		})
		if err != nil {
			return err
		}
		slices.SortFunc(all, func(a, b listed) int { return newestFirst(a.r, b.r) })
		for _, l := range all[:min(limit, len(all))] {
			if readCommand(tx, &l.r, l.apart, f.CommandPrefix) == nil {
				out = append(out, l.r)
			}
		}
		return nil
	})
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return nil, ErrClosed
	}
	if err != nil {
		return nil, fmt.Errorf("listing approvals: %w", err)
	}
	return out, nil
}

// finalRequest is r made final.
func finalRequest(r Request, state State, decider identity.Identity, reason string, at time.Time) Request {
	r.State, r.Decider, r.Reason, r.Decided = state, decider, reason, at
	return r
}

// finish makes the already persisted final request r the outcome of h and
// wakes its waiters. The caller holds s.mu.
func (s *Store) finish(h *held, r Request) {
	h.timer.Stop()
	delete(s.pending, r.ID)
	h.req = r
	close(h.done)
	s.metrics.pending.WithLabelValues(r.Target).Dec()
	if r.State == Approved && r.Grant > 0 {
		s.addGrant(r)
	}
}

// finishForced ends h even when the file cannot record it: an expired or
// abandoned request must stop holding its caller, and a copy left pending
// on disk is expired or abandoned again by the next Open. The caller holds
// s.mu.
func (s *Store) finishForced(h *held, state State, decider identity.Identity, reason string, at time.Time) Request {
	r := finalRequest(h.req, state, decider, reason, at)
	if err := s.persist(r); err != nil {
		s.log.Error("recording an approval request's end failed; it ends anyway", append(requestAttrs(r), "err", err)...)
	}
	s.finish(h, r)
	return r
}

func (s *Store) addGrant(r Request) {
	k := grantKey{r.Workload, r.Target, r.Rule, r.RuleDefinition}
	if g, ok := s.grants[k]; ok && g.GrantUntil().After(r.GrantUntil()) {
		return
	}
	s.grants[k] = r.clone()
}

// persist writes r's record; its command is already stored. The caller
// holds s.mu. A decision's record is written whatever the budget: a
// decider's reason is bounded, and refusing to record an outcome would
// keep a command waiting.
func (s *Store) persist(r Request) error {
	var delta int64
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		delta, err = putRequest(tx.Bucket(bucketRequests), r)
		return err
	})
	if err == nil {
		s.addUsed(delta)
	}
	return err
}

// addUsed counts delta more bytes in the file. The caller holds s.mu.
func (s *Store) addUsed(delta int64) {
	s.used += delta
	s.metrics.bytes.Set(float64(s.used))
}

// prune deletes final requests decided more than Retention ago whose grant
// window (if any) has closed, with their commands, and returns the bytes
// it freed.
func (s *Store) prune(tx *bolt.Tx, now time.Time) (int64, error) {
	var old [][]byte
	err := tx.Bucket(bucketRequests).ForEach(func(k, v []byte) error {
		r, _, err := decodeRequest(k, v)
		if err != nil || !r.State.Final() {
			return nil
		}
		if now.Sub(r.Decided) > s.opts.Retention && !now.Before(r.GrantUntil()) {
			old = append(old, slices.Clone(k))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("pruning approvals: %w", err)
	}
	var freed int64
	for _, k := range old {
		n, err := deleteRequest(tx, k)
		if err != nil {
			return freed, fmt.Errorf("pruning approval %s: %w", k, err)
		}
		freed += n
	}
	return freed, nil
}

// evict deletes final requests whose grant window (if any) has closed,
// the earliest decided first, until it has freed want bytes or none is
// left; it returns the bytes freed and the requests deleted. Pending
// requests and open grants are never deleted: the one waits for its
// decision, the other lets commands run.
func (s *Store) evict(tx *bolt.Tx, now time.Time, want int64) (int64, int, error) {
	type candidate struct {
		key     []byte
		decided time.Time
	}
	var cs []candidate
	err := tx.Bucket(bucketRequests).ForEach(func(k, v []byte) error {
		r, _, err := decodeRequest(k, v)
		if err == nil && r.State.Final() && !now.Before(r.GrantUntil()) {
			cs = append(cs, candidate{slices.Clone(k), r.Decided})
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("making room in approvals: %w", err)
	}
	slices.SortFunc(cs, func(a, b candidate) int {
		return cmp.Or(a.decided.Compare(b.decided), slices.Compare(a.key, b.key))
	})
	var freed int64
	n := 0
	for _, c := range cs {
		if freed >= want {
			break
		}
		f, err := deleteRequest(tx, c.key)
		if err != nil {
			return freed, n, fmt.Errorf("making room in approvals: %w", err)
		}
		freed += f
		n++
	}
	return freed, n, nil
}

// notify tells Options.Notify and the request's webhook. Failures are
// logged: a notification never changes a request.
func (s *Store) notify(ctx context.Context, ev Event) {
	if s.opts.Notify != nil {
		if err := s.opts.Notify.Notify(ctx, ev); err != nil {
			s.log.Warn("approval notification failed", "id", ev.Request.ID, "event", string(ev.Kind), "err", err)
		}
	}
	if ev.Request.NotifyURL == "" {
		return
	}
	w, err := s.webhookFor(ev.Request.NotifyURL)
	if errors.Is(err, ErrClosed) {
		return // shutting down: undelivered events are dropped by design
	}
	if err != nil {
		s.log.Warn("approval notification failed", "id", ev.Request.ID, "event", string(ev.Kind), "err", err)
		return
	}
	if err := w.Notify(ctx, ev); err != nil && !errors.Is(err, ErrClosed) {
		s.log.Warn("approval notification failed", "id", ev.Request.ID, "event", string(ev.Kind), "err", err)
	}
}

// webhookFor returns the store's webhook for rawURL, starting it the first
// time. Each URL has one, so one receiver's events arrive in order.
func (s *Store) webhookFor(rawURL string) (*Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if w, ok := s.webhooks[rawURL]; ok {
		return w, nil
	}
	w, err := newWebhook(rawURL, s.opts.Webhook, s.whMetrics)
	if err != nil {
		return nil, err
	}
	s.webhooks[rawURL] = w
	return w, nil
}

func (s *Store) now() time.Time { return s.opts.Now().Round(0).UTC() }

func sortNewestFirst(rs []Request) { slices.SortFunc(rs, newestFirst) }

func newestFirst(a, b Request) int {
	return cmp.Or(b.Created.Compare(a.Created), strings.Compare(b.ID, a.ID))
}

func cloneAll(rs []Request) []Request {
	for i := range rs {
		rs[i] = rs[i].clone()
	}
	return rs
}

func requestAttrs(r Request) []any {
	attrs := []any{
		"id", r.ID, "state", string(r.State), "target", r.Target, "workload", r.Workload,
		"subject", r.Requester.Subject, "rule", r.Rule, "session", r.SessionID,
	}
	if r.Decider.Subject != "" {
		attrs = append(attrs, "decider", r.Decider.Subject)
	}
	if r.Reason != "" {
		attrs = append(attrs, "reason", r.Reason)
	}
	return attrs
}
