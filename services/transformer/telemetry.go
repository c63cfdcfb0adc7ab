package transformer

import (
	"context"
	"io"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
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

// tracedRaw makes each raw-store read a span of the job's trace. The span lasts while the file
// is read, so it ends when the object is closed, with the bytes read.
type tracedRaw struct {
	RawStore
	tracer trace.Tracer
}

func (s tracedRaw) Get(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) (jetstream.ObjectResult, error) {
	ctx, span := s.tracer.Start(ctx, "objectstore.get", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("objectstore.name", name)))
	obj, err := s.RawStore.Get(ctx, name, opts...)
	if err != nil {
		endSpan(span, err)
		return nil, err
	}
	return &tracedObject{ObjectResult: obj, span: span}, nil
}

type tracedObject struct {
	jetstream.ObjectResult
	span trace.Span
	n    int64
	err  error // the first read error other than EOF
}

func (o *tracedObject) Read(p []byte) (int, error) {
	n, err := o.ObjectResult.Read(p)
	o.n += int64(n)
	if err != nil && err != io.EOF && o.err == nil {
		o.err = err
	}
	return n, err
}

func (o *tracedObject) Close() error {
	err := o.ObjectResult.Close()
	o.span.SetAttributes(attribute.Int64("objectstore.bytes_read", o.n))
	endSpan(o.span, o.err)
	return err
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
