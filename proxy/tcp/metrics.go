package tcp

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the direction label.
const (
	upstream   = "upstream"   // client to target
	downstream = "downstream" // target to client
)

// metrics are the tcp handler's Prometheus metrics; their names are part of
// the gateway's interface.
type metrics struct {
	bytes *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlock_tcp_bytes_total",
			Help: "Bytes forwarded by the tcp handler; upstream is client to target, downstream target to client.",
		}, []string{"target", "direction"}),
	}
	if reg == nil {
		return m
	}
	if err := reg.Register(m.bytes); err != nil {
		// A second handler on the same registry shares the first's counter.
		are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
		if !ok {
			// Only a conflicting descriptor of the same name gets here: a
			// programming error, as with prometheus.MustRegister.
			panic(fmt.Sprintf("registering tcp metrics: %v", err))
		}
		m.bytes = are.ExistingCollector.(*prometheus.CounterVec)
	}
	return m
}
