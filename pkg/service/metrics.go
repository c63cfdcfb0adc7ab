package service

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// Counters are the pipeline's own figures, beside the runtime's per-stage message metrics.
// Each counts work once it is durable, so after a job they equal the job's figures.
type Counters struct {
	RowsParsed      prometheus.Counter // observations the transformer published
	RowsRejected    prometheus.Counter // reply-file lines the transformer could not parse
	RowsLoaded      prometheus.Counter // observations the loader inserted and recorded in the ledger
	BytesDownloaded prometheus.Counter // reply-file bytes the collector read from the vendor (decoded)
	// BatchesRefused counts row batches the loader dead-lettered as not authentic, by reason.
	BatchesRefused *prometheus.CounterVec
}

// Counters returns the pipeline counters, registered in the Env's registry on first use: the
// processes whose stages count none of them (requester, poller) do not export them.
func (e *Env) Counters() (*Counters, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.counters != nil {
		return e.counters, nil
	}
	c := &Counters{
		RowsParsed: prometheus.NewCounter(prometheus.CounterOpts{Name: "marketpipe_rows_parsed_total",
			Help: "Observations parsed from reply files and published as row batches."}),
		RowsRejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "marketpipe_rows_rejected_total",
			Help: "Reply-file lines that could not be turned into observations."}),
		RowsLoaded: prometheus.NewCounter(prometheus.CounterOpts{Name: "marketpipe_rows_loaded_total",
			Help: "Observations inserted into ClickHouse (each batch counted once, when recorded in the ledger)."}),
		BytesDownloaded: prometheus.NewCounter(prometheus.CounterOpts{Name: "marketpipe_bytes_downloaded_total",
			Help: "Reply-file bytes downloaded from the vendor, after decompression."}),
		BatchesRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marketpipe_batches_refused_total",
			Help: "Row batches the loader refused and dead-lettered: not of a known run, with its version, on its job's subject."},
			[]string{"reason"}),
	}
	for _, col := range []prometheus.Collector{c.RowsParsed, c.RowsRejected, c.RowsLoaded, c.BytesDownloaded, c.BatchesRefused} {
		if err := e.Registry.Register(col); err != nil {
			return nil, fmt.Errorf("register pipeline metrics: %w", err)
		}
	}
	e.counters = c
	return c, nil
}

// Publisher returns a publisher whose every publish is a producer span of the Env's tracer
// provider, so the next stage's span descends from the publishing one.
func (e *Env) Publisher() *stage.Publisher {
	return stage.NewPublisher(e.JS, stage.PublishTracing(e.Tracing.Provider), stage.PublishSpanNames(events.SubjectKind))
}
