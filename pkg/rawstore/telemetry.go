package rawstore

import (
	"context"
	"io"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracedObjects makes each object-store call a span of the caller's trace. A read's span
// lasts while the file is read, so it ends when the object is closed, with the bytes read.
type tracedObjects struct {
	Objects
	tracer trace.Tracer
}

func (s tracedObjects) start(ctx context.Context, name, key string) (context.Context, trace.Span) {
	return s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("objectstore.name", key)))
}

func (s tracedObjects) Put(ctx context.Context, meta jetstream.ObjectMeta, r io.Reader) (info *jetstream.ObjectInfo, err error) {
	ctx, span := s.start(ctx, "objectstore.put", meta.Name)
	defer func() {
		if info != nil {
			span.SetAttributes(attribute.Int64("objectstore.size", int64(info.Size)))
		}
		endSpan(span, err)
	}()
	return s.Objects.Put(ctx, meta, r)
}

func (s tracedObjects) GetInfo(ctx context.Context, name string, opts ...jetstream.GetObjectInfoOpt) (info *jetstream.ObjectInfo, err error) {
	ctx, span := s.start(ctx, "objectstore.get_info", name)
	defer func() { endSpan(span, err) }()
	return s.Objects.GetInfo(ctx, name, opts...)
}

func (s tracedObjects) Get(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) (jetstream.ObjectResult, error) {
	ctx, span := s.start(ctx, "objectstore.get", name)
	obj, err := s.Objects.Get(ctx, name, opts...)
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

// openObjectAt is OpenObjectAt, traced as "objectstore.get" with the offset, the span
// lasting while the range is read.
func (s *Store) openObjectAt(ctx context.Context, oi *jetstream.ObjectInfo, offset int64) (io.ReadCloser, bool, error) {
	if s.Tracer == nil {
		return OpenObjectAt(ctx, s.JS, oi, offset)
	}
	ctx, span := s.Tracer.Start(ctx, "objectstore.get", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("objectstore.name", oi.Name), attribute.Int64("objectstore.offset", offset)))
	r, ok, err := OpenObjectAt(ctx, s.JS, oi, offset)
	if err != nil || !ok {
		span.SetAttributes(attribute.Bool("objectstore.offset_read", false))
		endSpan(span, err)
		return r, ok, err
	}
	return &tracedReader{ReadCloser: r, span: span}, true, nil
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
