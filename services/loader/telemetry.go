package loader

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/events"
)

const tracerName = "github.com/marketpipe/marketpipe/services/loader"

// Counter counts loaded rows; a prometheus.Counter is one.
type Counter interface{ Add(float64) }

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
