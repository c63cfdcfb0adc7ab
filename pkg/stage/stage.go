package stage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/telemetry"
)

// Handler does a stage's work for one message. See the package doc for what its error means.
type Handler interface {
	Handle(ctx context.Context, m *Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Message) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, m *Message) error { return f(ctx, m) }

// Config describes one stage's consumer.
type Config struct {
	Name    string   // durable consumer name shared by the replicas; metrics label; span name
	Stream  string   // stream to consume
	Filters []string // subject filters
	// MaxDeliver bounds deliveries of one message; -1 for stages that wait (Retry) and bound
	// themselves by a deadline. Default 8.
	MaxDeliver int
	// AckWait is how long a delivery may go without an ack or InProgress. Default 30s.
	AckWait time.Duration
	// Concurrency is how many messages one replica handles at once. Default 4.
	Concurrency int
	// MaxAckPending bounds unacked messages across all replicas. Default 16×Concurrency.
	MaxAckPending int
	// Backoff gives the redelivery delay after the n-th failed delivery. Default: 1s doubling to
	// 1m, with ±20% jitter so failed messages from many jobs do not return in lockstep.
	Backoff func(n uint64) time.Duration
	// ShutdownGrace is how long in-flight handlers may run after shutdown starts. Default 25s.
	ShutdownGrace time.Duration
	// MaxBytes, when set, is the largest payload the stage accepts: a larger message is poison
	// (dead-lettered with its size) rather than handed to the handler.
	MaxBytes int
}

func (c *Config) defaults() error {
	if c.Name == "" || c.Stream == "" || len(c.Filters) == 0 {
		return errors.New("stage config needs Name, Stream and Filters")
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 8
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 16 * c.Concurrency
	}
	if c.Backoff == nil {
		c.Backoff = DefaultBackoff
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 25 * time.Second
	}
	return nil
}

// DefaultBackoff is 1s doubling per delivery up to 1m, with ±20% jitter. (A pure function of
// the delivery count, because the state lives in JetStream, not in the process.)
func DefaultBackoff(n uint64) time.Duration {
	d := time.Second
	for i := uint64(1); i < n && d < time.Minute; i++ {
		d *= 2
	}
	d = min(d, time.Minute)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Options are the stage's collaborators and process-wide settings; all are optional.
type Options struct {
	Logger  *slog.Logger
	Tracer  trace.TracerProvider
	Metrics *Metrics
	// AckWait, when set, replaces every stage's own AckWait: how soon the messages of a
	// replica that died are redelivered to the others (the ACK_WAIT variable).
	AckWait time.Duration
}

// Stage runs a Handler on a durable consumer.
type Stage struct {
	js      jetstream.JetStream
	cfg     Config
	h       Handler
	log     *slog.Logger
	tracer  trace.Tracer
	metrics *Metrics
	pub     *Publisher
}

// New returns a stage; Run starts it.
func New(js jetstream.JetStream, cfg Config, h Handler, o Options) (*Stage, error) {
	if o.AckWait > 0 {
		cfg.AckWait = o.AckWait
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = telemetry.Discard()
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	if o.Metrics == nil {
		o.Metrics, _ = NewMetrics(nil)
	}
	return &Stage{js: js, cfg: cfg, h: h, log: o.Logger.With("stage", cfg.Name),
		tracer: o.Tracer.Tracer("github.com/marketpipe/marketpipe/pkg/stage"), metrics: o.Metrics,
		pub: NewPublisher(js, PublishTracing(o.Tracer))}, nil
}

// Name returns the stage's name.
func (s *Stage) Name() string { return s.cfg.Name }

// ConsumerConfig is the durable consumer the stage binds to.
func (s *Stage) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        s.cfg.Name,
		FilterSubjects: s.cfg.Filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        s.cfg.AckWait,
		MaxDeliver:     s.cfg.MaxDeliver,
		MaxAckPending:  s.cfg.MaxAckPending,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

// Run consumes until ctx ends, then drains: no new fetches, in-flight work finishes (within
// ShutdownGrace) and is acked. It returns nil after a clean shutdown.
func (s *Stage) Run(ctx context.Context) error {
	cons, err := s.consumer(ctx)
	if err != nil {
		return err
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(2*s.cfg.Concurrency),
		jetstream.WithMessagesErrOnMissingHeartbeat(false))
	if err != nil {
		return fmt.Errorf("stage %s: consume: %w", s.cfg.Name, err)
	}
	// Handlers get a context that outlives ctx by ShutdownGrace, so in-flight work can finish
	// and be acked after shutdown starts.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			iter.Drain()
			select {
			case <-time.After(s.cfg.ShutdownGrace):
				s.log.Warn("shutdown grace over: cancelling in-flight work")
				cancelWork()
			case <-stopped:
			}
		case <-stopped:
		}
	}()
	go s.watchPending(ctx, cons)

	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	s.log.Info("stage started", "consumer", s.cfg.Name, "filters", s.cfg.Filters)
	for {
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				break
			}
			if ctx.Err() == nil {
				s.log.Warn("fetch", "err", err)
			}
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.handle(work, msg)
		}()
	}
	wg.Wait()
	close(stopped)
	s.log.Info("stage stopped")
	return nil
}

// consumer creates or updates the durable consumer, retrying while JetStream is unavailable
// (for instance while the NATS server restarts).
func (s *Stage) consumer(ctx context.Context) (jetstream.Consumer, error) {
	for attempt := uint64(1); ; attempt++ {
		cons, err := s.js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, s.ConsumerConfig())
		if err == nil {
			return cons, nil
		}
		s.log.Warn("declare consumer", "err", err, "attempt", attempt)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stage %s: declare consumer: %w", s.cfg.Name, err)
		case <-time.After(min(DefaultBackoff(attempt), 5*time.Second)):
		}
	}
}

func (s *Stage) watchPending(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		if info, err := cons.Info(ctx); err == nil {
			s.metrics.Pending.WithLabelValues(s.cfg.Name).Set(float64(info.NumPending))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// jobIDOf returns the job id in a pipeline subject, for logs and spans.
func jobIDOf(subject string) string {
	if id, _, ok := events.ParseJobSubject(subject); ok {
		return id
	}
	if rest, ok := strings.CutPrefix(subject, "mp.rows."); ok {
		return rest
	}
	return ""
}

func (s *Stage) handle(ctx context.Context, raw jetstream.Msg) {
	m := NewMessage(raw)
	jobID := jobIDOf(m.Subject())
	ctx = telemetry.WithJobID(ctx, jobID)
	ctx = telemetry.Extract(ctx, m.Header())
	ctx, span := s.tracer.Start(ctx, s.cfg.Name, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.destination.name", m.Subject()),
			attribute.Int64("messaging.delivery_count", int64(m.NumDelivered())),
			attribute.String("marketpipe.job_id", jobID)))
	defer span.End()
	if m.NumDelivered() > 1 {
		s.metrics.Redelivered.WithLabelValues(s.cfg.Name).Inc()
	}

	stop := s.keepAlive(ctx, m)
	start := time.Now()
	var err error
	if n := len(m.Data()); s.cfg.MaxBytes > 0 && n > s.cfg.MaxBytes {
		err = Permanent(fmt.Errorf("message of %d bytes exceeds the stage's limit of %d", n, s.cfg.MaxBytes))
	} else {
		err = s.h.Handle(ctx, m)
	}
	stop()
	s.metrics.Latency.WithLabelValues(s.cfg.Name).Observe(time.Since(start).Seconds())
	s.settle(ctx, m, err, span)
}

// keepAlive sends InProgress every AckWait/3 until stop is called.
func (s *Stage) keepAlive(ctx context.Context, m *Message) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	go func() {
		t := time.NewTicker(s.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := m.InProgress(); err != nil {
					s.log.DebugContext(ctx, "in progress", "err", err)
				}
			}
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}

// attrOutcome records on a delivery's span what the ack rules made of it: acked, waiting,
// retry or dead-lettered.
const attrOutcome = attribute.Key("marketpipe.outcome")

// settle applies the ack rules of the package doc.
func (s *Stage) settle(ctx context.Context, m *Message, err error, span trace.Span) {
	name := s.cfg.Name
	if err == nil {
		span.SetAttributes(attrOutcome.String("acked"))
		if aerr := m.msg.Ack(); aerr != nil {
			// The work is durable; a lost ack means a redelivery the handler deduplicates.
			s.log.WarnContext(ctx, "ack", "err", aerr)
		}
		s.metrics.Handled.WithLabelValues(name).Inc()
		s.log.DebugContext(ctx, "handled", "subject", m.Subject(), "deliveries", m.NumDelivered())
		return
	}
	if after, ok := RetryAfter(err); ok {
		span.SetAttributes(attrOutcome.String("waiting"))
		s.metrics.Retried.WithLabelValues(name).Inc()
		s.log.DebugContext(ctx, "waiting", "reason", err.Error(), "after", after)
		s.nak(ctx, m, after)
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	last := s.cfg.MaxDeliver > 0 && m.NumDelivered() >= uint64(s.cfg.MaxDeliver)
	if IsPermanent(err) || last {
		kind := "permanent"
		reason := err.Error()
		if !IsPermanent(err) {
			kind = "transient"
			reason = fmt.Sprintf("gave up after %d deliveries: %s", m.NumDelivered(), reason)
		}
		s.metrics.Failed.WithLabelValues(name, kind).Inc()
		if derr := s.deadLetter(ctx, m, reason); derr != nil {
			// Keep the message: it is retried, and dead-lettered again, later.
			s.log.ErrorContext(ctx, "dead-letter failed; message kept", "err", derr, "reason", reason)
			span.SetAttributes(attrOutcome.String("retry"))
			s.nak(ctx, m, s.cfg.Backoff(m.NumDelivered()))
			return
		}
		s.metrics.DeadLettered.WithLabelValues(name).Inc()
		span.SetAttributes(attrOutcome.String("dead-lettered"))
		s.log.ErrorContext(ctx, "dead-lettered", "reason", reason, "deliveries", m.NumDelivered())
		if terr := m.msg.TermWithReason(truncate(reason, 200)); terr != nil {
			s.log.WarnContext(ctx, "term", "err", terr)
		}
		return
	}
	s.metrics.Failed.WithLabelValues(name, "transient").Inc()
	span.SetAttributes(attrOutcome.String("retry"))
	delay := s.cfg.Backoff(m.NumDelivered())
	s.log.WarnContext(ctx, "handler failed; will retry", "err", err, "deliveries", m.NumDelivered(), "retry_in", delay)
	s.nak(ctx, m, delay)
}

func (s *Stage) nak(ctx context.Context, m *Message, d time.Duration) {
	if err := m.msg.NakWithDelay(d); err != nil {
		// Without the nak the message comes back after AckWait: late, but not lost.
		s.log.WarnContext(ctx, "nak", "err", err)
	}
}

// Dead-letter headers. The original headers are kept beside them.
const (
	HdrDLQStage      = "Mp-Dlq-Stage"
	HdrDLQReason     = "Mp-Dlq-Reason"
	HdrDLQDeliveries = "Mp-Dlq-Deliveries"
	HdrDLQSubject    = "Mp-Dlq-Subject"
	HdrDLQStream     = "Mp-Dlq-Stream"
	HdrDLQSeq        = "Mp-Dlq-Seq"
	HdrDLQTime       = "Mp-Dlq-Time"
	HdrDLQMsgID      = "Mp-Dlq-Msg-Id"
)

func (s *Stage) deadLetter(ctx context.Context, m *Message, reason string) error {
	hdr := nats.Header{}
	for k, v := range m.Header() {
		if k == nats.MsgIdHdr {
			hdr[HdrDLQMsgID] = v
			continue
		}
		hdr[k] = v
	}
	hdr.Set(HdrDLQStage, s.cfg.Name)
	hdr.Set(HdrDLQReason, truncate(reason, 4096))
	hdr.Set(HdrDLQDeliveries, strconv.FormatUint(m.NumDelivered(), 10))
	hdr.Set(HdrDLQSubject, m.Subject())
	hdr.Set(HdrDLQStream, s.cfg.Stream)
	hdr.Set(HdrDLQSeq, strconv.FormatUint(m.StreamSeq(), 10))
	hdr.Set(HdrDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
	id := fmt.Sprintf("dlq.%s.%s.%d", s.cfg.Name, s.cfg.Stream, m.StreamSeq())
	return s.pub.Publish(ctx, events.DLQSubject(s.cfg.Name), id, m.Data(), hdr)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
