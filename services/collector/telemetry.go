package collector

import (
	"context"
	"io"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Counter counts downloaded bytes; a prometheus.Counter is one.
type Counter interface{ Add(float64) }

// countedVendor counts the bytes read from every download as they arrive, so a download cut
// short still counts what it fetched.
type countedVendor struct {
	Vendor
	bytes Counter
}

func (v countedVendor) Download(ctx context.Context, key, digest string, listed int64) (io.ReadCloser, error) {
	body, err := v.Vendor.Download(ctx, key, digest, listed)
	if err != nil {
		return nil, err
	}
	return countingReader{body, v.bytes}, nil
}

type countingReader struct {
	io.ReadCloser
	bytes Counter
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.bytes.Add(float64(n))
	}
	return n, err
}

// tracedRaw makes each raw-store call a span of the job's trace.
type tracedRaw struct {
	RawStore
	tracer trace.Tracer
}

func (s tracedRaw) Put(ctx context.Context, meta jetstream.ObjectMeta, r io.Reader) (info *jetstream.ObjectInfo, err error) {
	ctx, span := s.tracer.Start(ctx, "objectstore.put", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("objectstore.name", meta.Name)))
	defer func() {
		if info != nil {
			span.SetAttributes(attribute.Int64("objectstore.size", int64(info.Size)))
		}
		endSpan(span, err)
	}()
	return s.RawStore.Put(ctx, meta, r)
}

func (s tracedRaw) GetInfo(ctx context.Context, name string, opts ...jetstream.GetObjectInfoOpt) (info *jetstream.ObjectInfo, err error) {
	ctx, span := s.tracer.Start(ctx, "objectstore.get_info", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("objectstore.name", name)))
	defer func() { endSpan(span, err) }()
	return s.RawStore.GetInfo(ctx, name, opts...)
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
