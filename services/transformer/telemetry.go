package transformer

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/service"
)

const tracerName = "github.com/marketpipe/marketpipe/services/transformer"

// Counter counts rows; a prometheus.Counter is one.
type Counter interface{ Add(float64) }

// metrics are the transformer's figures; each counts a job's rows once its "transformed" event
// is durable, so after a job they equal the job's figures.
type metrics struct {
	rowsParsed, rowsRejected prometheus.Counter
}

func newMetrics(env *service.Env) (m metrics, err error) {
	if m.rowsParsed, err = service.Register(env, prometheus.NewCounter(prometheus.CounterOpts{Name: "marketpipe_rows_parsed_total",
		Help: "Observations parsed from reply files and published as row batches."})); err != nil {
		return m, err
	}
	m.rowsRejected, err = service.Register(env, prometheus.NewCounter(prometheus.CounterOpts{Name: "marketpipe_rows_rejected_total",
		Help: "Reply-file lines that could not be turned into observations."}))
	return m, err
}

func add(c Counter, n int64) {
	if c != nil {
		c.Add(float64(n))
	}
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
