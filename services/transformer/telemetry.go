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
	return &tracedObject{ObjectResult: obj, r: &tracedReader{ReadCloser: obj, span: span}}, nil
}

type tracedObject struct {
	jetstream.ObjectResult
	r *tracedReader
}

func (o *tracedObject) Read(p []byte) (int, error) { return o.r.Read(p) }
func (o *tracedObject) Close() error               { return o.r.Close() }

// tracedReader ends its span when closed, with the bytes read and the first read error.
type tracedReader struct {
	io.ReadCloser
	span trace.Span
	n    int64
	err  error // the first read error other than EOF
}

func (o *tracedReader) Read(p []byte) (int, error) {
	n, err := o.ReadCloser.Read(p)
	o.n += int64(n)
	if err != nil && err != io.EOF && o.err == nil {
		o.err = err
	}
	return n, err
}

func (o *tracedReader) Close() error {
	err := o.ReadCloser.Close()
	o.span.SetAttributes(attribute.Int64("objectstore.bytes_read", o.n))
	endSpan(o.span, o.err)
	return err
}

// TracedOpenAt makes each read of a stored file from an offset (a chunk's) a span of the job's
// trace, "objectstore.get" with the offset, lasting while the range is read.
func TracedOpenAt(tracer trace.Tracer, open OpenAtFunc) OpenAtFunc {
	return func(ctx context.Context, info *jetstream.ObjectInfo, offset int64) (io.ReadCloser, bool, error) {
		ctx, span := tracer.Start(ctx, "objectstore.get", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("objectstore.name", info.Name), attribute.Int64("objectstore.offset", offset)))
		r, ok, err := open(ctx, info, offset)
		if err != nil || !ok {
			span.SetAttributes(attribute.Bool("objectstore.offset_read", false))
			endSpan(span, err)
			return r, ok, err
		}
		return &tracedReader{ReadCloser: r, span: span}, true, nil
	}
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
