package loader

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/service"
)

const tracerName = "github.com/marketpipe/marketpipe/services/loader"

// Counter counts loaded rows; a prometheus.Counter is one.
type Counter interface{ Add(float64) }

// metrics are the loader's figures. A batch's rows count once it is recorded in the ledger, so
// after a job they equal the job's figures.
type metrics struct {
	rowsLoaded     prometheus.Counter
	batchesRefused *prometheus.CounterVec // by reason
}

func newMetrics(env *service.Env) (m metrics, err error) {
	if m.rowsLoaded, err = service.Register(env, prometheus.NewCounter(prometheus.CounterOpts{Name: "marketpipe_rows_loaded_total",
		Help: "Observations inserted into ClickHouse (each batch counted once, when recorded in the ledger)."})); err != nil {
		return m, err
	}
	m.batchesRefused, err = service.Register(env, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marketpipe_batches_refused_total",
		Help: "Row batches the loader refused and dead-lettered: not of a known run, with its version, on its job's subject."},
		[]string{"reason"}))
	return m, err
}

// tracedJobs makes every jobs-table write a span of the job's trace.
type tracedJobs struct {
	JobRecorder
	tracer trace.Tracer
}

func (t tracedJobs) RecordJob(ctx context.Context, j events.Job, seq uint64) (err error) {
	ctx, span := t.tracer.Start(ctx, "clickhouse.record_job", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", "clickhouse"), attribute.String("db.operation", "INSERT"),
			attribute.String("db.collection.name", "jobs"), attribute.String("marketpipe.job_id", j.ID),
			attribute.String("marketpipe.job_state", j.State)))
	defer func() { endSpan(span, err) }()
	return t.JobRecorder.RecordJob(ctx, j, seq)
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
