package stage

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/telemetry"
)

// Publisher publishes to JetStream and waits for the stream's acknowledgement, so a handler
// that returns after publishing knows the event is durable. Every message carries a
// Nats-Msg-Id (JetStream drops a duplicate within the stream's window) and the caller's trace
// context. With a tracer (PublishTracing), each publish is a producer span and the headers carry
// that span's context, so the consuming stage's span is its child.
type Publisher struct {
	js     jetstream.JetStream
	tracer trace.Tracer // nil: no spans of its own; the caller's context is propagated
	kind   func(subject string) string
}

// PublisherOption configures a Publisher.
type PublisherOption func(*Publisher)

// PublishTracing makes every publish a producer span of tp.
func PublishTracing(tp trace.TracerProvider) PublisherOption {
	return func(p *Publisher) {
		if tp != nil {
			p.tracer = tp.Tracer("github.com/marketpipe/marketpipe/pkg/stage")
		}
	}
}

// PublishSpanNames names each publish span "publish " + kind(subject) (Subjects.Kind), so
// that span names do not carry ids. Without it, or with a nil kind, the subject is used.
func PublishSpanNames(kind func(subject string) string) PublisherOption {
	return func(p *Publisher) {
		if kind != nil {
			p.kind = kind
		}
	}
}

// NewPublisher returns a publisher on js.
func NewPublisher(js jetstream.JetStream, opts ...PublisherOption) *Publisher {
	p := &Publisher{js: js, kind: func(subject string) string { return subject }}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Publish stores data on subject with the given message id and waits for the ack.
func (p *Publisher) Publish(ctx context.Context, subject, msgID string, data []byte, hdr nats.Header) (err error) {
	ctx, end := p.span(ctx, subject, msgID, len(data))
	defer func() { end(err) }()
	msg := p.msg(ctx, subject, data, hdr)
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}

// span starts the producer span of one publish, when the publisher traces.
func (p *Publisher) span(ctx context.Context, subject, msgID string, size int) (context.Context, func(error)) {
	if p.tracer == nil {
		return ctx, func(error) {}
	}
	ctx, span := p.tracer.Start(ctx, "publish "+p.kind(subject), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.message.id", msgID),
			attribute.Int("messaging.message.body.size", size)))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

func (p *Publisher) msg(ctx context.Context, subject string, data []byte, hdr nats.Header) *nats.Msg {
	if hdr == nil {
		hdr = nats.Header{}
	}
	telemetry.Inject(ctx, hdr)
	return &nats.Msg{Subject: subject, Data: data, Header: hdr}
}

// PublishJob publishes the job event e where it routes itself (Event.Route). An event whose
// route is refused (a job id that is not valid) is not published; the error says whether it
// is permanent.
func (p *Publisher) PublishJob(ctx context.Context, e Event) error {
	subject, msgID, err := e.Route()
	if err != nil {
		return err
	}
	data, err := e.Encode()
	if err != nil {
		return fmt.Errorf("encode event for %s: %w", subject, err)
	}
	return p.Publish(ctx, subject, msgID, data, nil)
}

// Async publishes many messages without waiting for each ack in turn; Wait collects the acks.
// The transformer uses it to stream row batches at the speed of the network rather than of
// one round trip per batch.
type Async struct {
	p    *Publisher
	acks []jetstream.PubAckFuture
}

// Async starts a group of asynchronous publishes.
func (p *Publisher) Async() *Async { return &Async{p: p} }

// Publish queues a message. It may block when too many publishes are outstanding. Its
// producer span (with PublishTracing) covers the send; Wait collects the acknowledgement.
func (a *Async) Publish(ctx context.Context, subject, msgID string, data []byte, hdr nats.Header) error {
	sctx, end := a.p.span(ctx, subject, msgID, len(data))
	f, err := a.p.js.PublishMsgAsync(a.p.msg(sctx, subject, data, hdr), jetstream.WithMsgID(msgID))
	if err != nil {
		err = fmt.Errorf("publish %s: %w", subject, err)
		end(err)
		return err
	}
	end(nil)
	a.acks = append(a.acks, f)
	// Bound the futures kept so a huge job does not grow this slice without limit.
	if len(a.acks) >= 256 {
		return a.Wait(ctx)
	}
	return nil
}

// Wait returns once every queued message is acknowledged, or the first error.
func (a *Async) Wait(ctx context.Context) error {
	defer func() { a.acks = a.acks[:0] }()
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for _, f := range a.acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return fmt.Errorf("publish %s: no acknowledgement within a minute", f.Msg().Subject)
		}
	}
	return nil
}
