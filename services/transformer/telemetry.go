package transformer

import (
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

const tracerName = "github.com/marketpipe/marketpipe/services/transformer"

// Counter counts rows; a prometheus.Counter is one.
type Counter interface{ Add(float64) }

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
