package review

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a webhook attempt or event failed, the values of the reason label
// of interlock_webhook_failures_total.
const (
	failStatus    = "status"     // the receiver answered other than 2xx
	failNetwork   = "network"    // no answer: refused, reset, timed out
	failQueueFull = "queue_full" // the event was dropped: too many waiting
	failGaveUp    = "gave_up"    // every attempt failed: the event is lost
)

var failReasons = []string{failStatus, failNetwork, failQueueFull, failGaveUp}

// Why Submit did not hold a command, the values of the reason label of
// interlock_approvals_refused_total.
const (
	refusedTooManyPending = "too_many_pending" // Options.MaxPending requests wait
	refusedStoreFull      = "store_full"       // Options.MaxBytes taken by pending requests and open grants
)

// storeMetrics are the store's own series.
type storeMetrics struct {
	// pending is interlock_approvals_pending{target}. The target label is
	// bounded by the configuration and tells which target's commands wait;
	// a target's series exists from Open when it is in Options.Targets,
	// else from its first request, and then stays (at 0 when nothing
	// waits).
	pending *prometheus.GaugeVec
	// bytes is interlock_approvals_store_bytes: what the file's requests
	// and commands count against Options.MaxBytes.
	bytes prometheus.Gauge
	// refused is interlock_approvals_refused_total{reason}: commands
	// denied because the store could not hold them.
	refused *prometheus.CounterVec
	// evicted is interlock_approvals_evicted_total: final requests deleted
	// before their retention ended, to keep within Options.MaxBytes.
	evicted prometheus.Counter
}

// webhookMetrics are shared by every Webhook registered on one registry.
type webhookMetrics struct {
	deliveries prometheus.Counter     // interlock_webhook_deliveries_total: events a receiver accepted (2xx)
	failures   *prometheus.CounterVec // interlock_webhook_failures_total{reason}: failed attempts and lost events
}

func newStoreMetrics(reg prometheus.Registerer) (*storeMetrics, error) {
	g, err := register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "interlock_approvals_pending",
		Help: "Approval requests waiting for a decision, by target.",
	}, []string{"target"}))
	if err != nil {
		return nil, err
	}
	// A store reopened on the same registry starts from what it loads.
	g.Reset()
	b, err := register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "interlock_approvals_store_bytes",
		Help: "Bytes the approval store's requests and held commands take, counted against its budget.",
	}))
	if err != nil {
		return nil, err
	}
	r, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "interlock_approvals_refused_total",
		Help: "Commands a review rule matched that were denied, not held, because the approval store was full, by reason (too_many_pending, store_full).",
	}, []string{"reason"}))
	if err != nil {
		return nil, err
	}
	for _, reason := range []string{refusedTooManyPending, refusedStoreFull} {
		r.WithLabelValues(reason)
	}
	e, err := register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "interlock_approvals_evicted_total",
		Help: "Decided approval requests deleted before their retention ended, to keep the store within its byte budget.",
	}))
	if err != nil {
		return nil, err
	}
	return &storeMetrics{pending: g, bytes: b, refused: r, evicted: e}, nil
}

func newWebhookMetrics(reg prometheus.Registerer) (*webhookMetrics, error) {
	d, err := register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "interlock_webhook_deliveries_total",
		Help: "Review notifications a webhook receiver accepted (answered 2xx).",
	}))
	if err != nil {
		return nil, err
	}
	f, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "interlock_webhook_failures_total",
		Help: "Failed review notification attempts (status, network) and lost notifications (queue_full, gave_up), by reason.",
	}, []string{"reason"}))
	if err != nil {
		return nil, err
	}
	// Every reason is exported from the start, so rate() works before the
	// first failure.
	for _, r := range failReasons {
		f.WithLabelValues(r)
	}
	return &webhookMetrics{deliveries: d, failures: f}, nil
}

// register registers c on reg, or returns the collector already registered
// under its name: the store and every per-URL webhook share one set of
// series. A nil reg registers nowhere.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		var zero C
		return zero, fmt.Errorf("registering approval metrics: %w", err)
	}
	return c, nil
}
