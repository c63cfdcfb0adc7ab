package stage

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the runtime's Prometheus collectors, labelled by stage. One Metrics serves every
// stage of a process (`marketpipe dev` runs them all in one).
type Metrics struct {
	Handled      *prometheus.CounterVec
	Failed       *prometheus.CounterVec
	Redelivered  *prometheus.CounterVec
	DeadLettered *prometheus.CounterVec
	Waiting      *prometheus.CounterVec
	Latency      *prometheus.HistogramVec
	Pending      *prometheus.GaugeVec
}

// NewMetrics creates the collectors and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marketpipe_messages_handled_total",
			Help: "Messages handled successfully (acked)."}, []string{"stage"}),
		Failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marketpipe_messages_failed_total",
			Help: "Handler failures (transient or permanent)."}, []string{"stage", "kind"}),
		Redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marketpipe_messages_redelivered_total",
			Help: "Deliveries that were not the first of their message."}, []string{"stage"}),
		DeadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marketpipe_messages_dead_lettered_total",
			Help: "Messages moved to the dead-letter stream."}, []string{"stage"}),
		Waiting: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marketpipe_messages_waiting_total",
			Help: "Deliveries put back for an expected wait (e.g. vendor output not ready)."}, []string{"stage"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "marketpipe_handler_seconds",
			Help: "Handler latency.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14)}, []string{"stage"}),
		Pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "marketpipe_consumer_pending_messages",
			Help: "Messages of the stage's consumer not yet delivered."}, []string{"stage"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Handled, m.Failed, m.Redelivered, m.DeadLettered, m.Waiting, m.Latency, m.Pending} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register stage metrics: %w", err)
			}
		}
	}
	return m, nil
}
