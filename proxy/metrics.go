package proxy

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a connection is refused, the values of the reason label of
// interlock_connections_refused_total.
const (
	refusedNoOrigin        = "no_origin"
	refusedUnknownTarget   = "unknown_target"
	refusedUnknownWorkload = "unknown_workload"
	refusedEgressDenied    = "egress_denied"
	refusedError           = "error"
	refusedNoHandler       = "no_handler"
	refusedShuttingDown    = "shutting_down"
)

var refusedReasons = []string{
	refusedNoOrigin, refusedUnknownTarget, refusedUnknownWorkload,
	refusedEgressDenied, refusedError, refusedNoHandler, refusedShuttingDown,
}

// metrics are the proxy package's Prometheus metrics; their names are part of
// the gateway's interface.
type metrics struct {
	sessionsActive  *prometheus.GaugeVec
	sessionsTotal   *prometheus.CounterVec
	refused         *prometheus.CounterVec
	sessionDuration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	sessionLabels := []string{"protocol", "target", "workload", "subject", "issuer", "groups"}
	m := &metrics{
		sessionsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "interlock_sessions_active",
			Help: "Sessions being served now.",
		}, sessionLabels),
		sessionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlock_sessions_total",
			Help: "Sessions started.",
		}, sessionLabels),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlock_connections_refused_total",
			Help: "Accepted connections closed before reaching a protocol handler, by reason.",
		}, []string{"reason"}),
		sessionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "interlock_session_duration_seconds",
			Help:    "How long sessions lasted, from attribution to the handler's return.",
			Buckets: []float64{0.01, 0.1, 1, 10, 60, 300, 1800, 3600, 4 * 3600, 24 * 3600},
		}, []string{"protocol"}),
	}
	// Every reason is exported from the start, so a rate() over it works
	// before the first refusal.
	for _, r := range refusedReasons {
		m.refused.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.sessionsActive, m.sessionsTotal, m.refused, m.sessionDuration} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering proxy metrics: %w", err)
	}
	return m, nil
}

// refusedReason maps an Attributor's error to the reason label.
func refusedReason(err error) string {
	switch {
	case errors.Is(err, ErrNoOrigin):
		return refusedNoOrigin
	case errors.Is(err, ErrUnknownTarget):
		return refusedUnknownTarget
	case errors.Is(err, ErrUnknownWorkload):
		return refusedUnknownWorkload
	case errors.Is(err, ErrEgressDenied):
		return refusedEgressDenied
	default:
		return refusedError
	}
}
