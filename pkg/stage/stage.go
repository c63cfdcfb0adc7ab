package stage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/marketpipe/marketpipe/pkg/attempts"
	"github.com/marketpipe/marketpipe/pkg/setup"
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
	// MaxDeliver bounds deliveries of one message; -1 for stages that wait (Wait) and bound
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
	// MaxCrashes bounds the consecutive deliveries of one message that ended without the runtime
	// settling them (the process crashed, was killed, or froze past AckWait): the next delivery
	// is dead-lettered instead of being handled. It bounds stages with an unlimited MaxDeliver
	// too. Default DefaultMaxCrashes.
	MaxCrashes int
}

// DefaultMaxCrashes is MaxCrashes when not set: enough that a replica killed by its
// orchestrator, or a NATS restart that loses acks, does not cost a message; few enough that a
// message that kills its process is put aside after minutes.
const DefaultMaxCrashes = 5

// MaxWait is the longest delay a Wait may ask for; a longer one is shortened. It keeps a
// waiting message's records in the attempts bucket (attempts.TTL) alive between deliveries.
const MaxWait = time.Hour

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
	if c.MaxCrashes <= 0 {
		c.MaxCrashes = DefaultMaxCrashes
	}
	return nil
}

// DefaultBackoff is 1s doubling per failure in a row up to 1m, with ±20% jitter. (A pure
// function of the count, which the message's delivery record in the attempts bucket keeps, not
// the process.)
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
	// replica that died are redelivered to the others. It is the ACK_WAIT variable, listed by
	// -h: operators and the fault tests shorten that wait.
	AckWait time.Duration
	// Subjects names the pipeline's subjects (events.Subjects): which job a message belongs
	// to, span names, where dead letters go. Required.
	Subjects Subjects
	// Skip reports why a job-event stage (NewJobs) acks a decoded event, given as a pointer to
	// it, without handling it: a non-empty reason (a cancelled run). Nil: none is skipped.
	Skip func(ctx context.Context, event any) (reason string, err error)
	// Bind makes the stage only bind to its consumer and the attempts bucket, which the admin
	// created (Declare, run by `marketpipe migrate`): a missing one stops Run at start with an
	// error naming `marketpipe migrate` (setup.ErrNotSetUp), and one lost while the stage runs is
	// waited for. Every service sets it (its identity may not create them); left false, as in
	// the runtime's own tests, the stage declares them itself.
	Bind bool
}

// Stage runs a Handler on a durable consumer.
type Stage struct {
	js       jetstream.JetStream
	cfg      Config
	h        Handler
	log      *slog.Logger
	tracer   trace.Tracer
	metrics  *Metrics
	pub      *Publisher
	subjects Subjects
	bind     bool

	attempts jetstream.KeyValue // bound by Run: attempts.Bucket
	settled  settledHere        // the delivery records this process wrote, or tried to
	ackFloor atomic.Uint64      // the consumer's acknowledgement floor when last seen

	mu     sync.Mutex
	broken error // why the stage is not consuming now; nil while it is
}

// New returns a stage; Run starts it.
func New(js jetstream.JetStream, cfg Config, h Handler, o Options) (*Stage, error) {
	if o.AckWait > 0 {
		cfg.AckWait = o.AckWait
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if o.Subjects == nil {
		return nil, fmt.Errorf("stage %s: options need Subjects (events.Subjects)", cfg.Name)
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
		pub: NewPublisher(js, PublishTracing(o.Tracer), PublishSpanNames(o.Subjects.Kind)), subjects: o.Subjects,
		bind: o.Bind, broken: errors.New("not started")}, nil
}

// Ready reports why the stage is not consuming (its consumer is being declared, or was lost
// and is being recreated), or nil while it is: a readiness check.
func (s *Stage) Ready(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken
}

func (s *Stage) setBroken(err error) {
	s.mu.Lock()
	s.broken = err
	s.mu.Unlock()
}

// Name returns the stage's name.
func (s *Stage) Name() string { return s.cfg.Name }

// ConsumerConfig is the durable consumer the stage binds to.
func (s *Stage) ConsumerConfig() jetstream.ConsumerConfig { return consumerConfig(s.cfg) }

// consumerConfig is the durable consumer of a stage with cfg (defaults applied). Its MaxDeliver
// is unlimited: the runtime enforces Config.MaxDeliver itself by dead-lettering, because the
// server would drop a message at its limit without a trace (after a crash, or a failed
// dead-letter publish).
func consumerConfig(cfg Config) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        cfg.Name,
		FilterSubjects: cfg.Filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  cfg.MaxAckPending,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

// Declare creates or updates the durable consumer of a stage with cfg, as the admin does
// (`marketpipe migrate`) before the stage's service starts with Options.Bind. ackWait, when
// set, replaces cfg.AckWait as Options.AckWait does. An existing consumer keeps where it starts.
func Declare(ctx context.Context, js jetstream.JetStream, cfg Config, ackWait time.Duration) error {
	if ackWait > 0 {
		cfg.AckWait = ackWait
	}
	if err := cfg.defaults(); err != nil {
		return err
	}
	cc := consumerConfig(cfg)
	if c, err := js.Consumer(ctx, cfg.Stream, cfg.Name); err == nil {
		ci := c.CachedInfo().Config
		cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = ci.DeliverPolicy, ci.OptStartSeq, ci.OptStartTime
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("consumer %s on %s: %w", cfg.Name, cfg.Stream, err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, cc); err != nil {
		return fmt.Errorf("declare consumer %s on %s: %w", cfg.Name, cfg.Stream, err)
	}
	return nil
}

// Run consumes until ctx ends, then drains: no new fetches, in-flight work finishes (within
// ShutdownGrace) and is acked. It returns nil after a clean shutdown. A consumer that
// disappears while the stage runs (deleted by an operator, lost with a server's state) is
// declared again; Ready reports the stage not ready meanwhile.
func (s *Stage) Run(ctx context.Context) error {
	kv, err := retryDeclare(ctx, s, "declare attempts bucket", func() (jetstream.KeyValue, error) {
		if s.bind {
			kv, err := attempts.Bind(ctx, s.js)
			if errors.Is(err, setup.ErrNotSetUp) {
				return nil, &stopError{err}
			}
			return kv, err
		}
		return attempts.Declare(ctx, s.js, 0)
	})
	if err != nil {
		return err
	}
	s.attempts = kv
	cons, err := s.consumer(ctx, true)
	if err != nil {
		return err
	}
	// Handlers get a context that outlives ctx by ShutdownGrace, so in-flight work can finish
	// and be acked after shutdown starts.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var (
		iterMu   sync.Mutex
		iter     jetstream.MessagesContext
		draining bool
	)
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			iterMu.Lock()
			draining = true
			if iter != nil {
				iter.Drain()
			}
			iterMu.Unlock()
			select {
			case <-time.After(s.cfg.ShutdownGrace):
				s.log.Warn("shutdown grace over: cancelling in-flight work")
				cancelWork()
			case <-stopped:
			}
		case <-stopped:
		}
	}()
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	s.log.Info("stage started", "consumer", s.cfg.Name, "filters", s.cfg.Filters)
loop:
	for {
		it, err := cons.Messages(jetstream.PullMaxMessages(2*s.cfg.Concurrency),
			jetstream.WithMessagesErrOnMissingHeartbeat(false))
		if err == nil {
			iterMu.Lock()
			iter = it
			if draining {
				it.Drain()
			}
			iterMu.Unlock()
			s.setBroken(nil)
			w := &watcher{done: make(chan struct{})}
			go s.watch(ctx, cons, it, w)
			err = s.consume(ctx, work, it, sem, &wg)
			close(w.done)
			if lost := w.lost.Load(); lost != nil {
				err = *lost
			}
		} else {
			err = fmt.Errorf("stage %s: consume: %w", s.cfg.Name, err)
		}
		if ctx.Err() != nil {
			break
		}
		s.setBroken(err)
		s.log.Error("consumer lost; declaring it again", "err", err)
		select {
		case <-ctx.Done():
			break loop
		case <-time.After(time.Second): // let the deletion finish, or another replica redeclare
		}
		if cons, err = s.consumer(ctx, false); err != nil {
			break // ctx ended
		}
	}
	wg.Wait()
	close(stopped)
	s.log.Info("stage stopped")
	return nil
}

// consume hands the iterator's messages to handlers until it closes: nil once drained at
// shutdown, an error when the consumer is gone.
func (s *Stage) consume(ctx, work context.Context, it jetstream.MessagesContext, sem chan struct{}, wg *sync.WaitGroup) error {
	for {
		msg, err := it.Next()
		if err != nil {
			switch {
			case errors.Is(err, jetstream.ErrMsgIteratorClosed):
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("stage %s: message iterator closed: %w", s.cfg.Name, err)
			case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound):
				it.Stop()
				return fmt.Errorf("stage %s: consumer %s on %s: %w", s.cfg.Name, s.cfg.Name, s.cfg.Stream, err)
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
}

// consumer creates or updates the durable consumer, retrying while JetStream is unavailable
// (for instance while the NATS server restarts). An existing consumer keeps where it starts
// (the server refuses to change it). One that was lost while the stage ran is created again
// from the last acknowledgement floor the stage saw, so it does not deliver the whole stream
// again; a new one starts at the stream's first message.
//
// With Options.Bind it only binds: a consumer missing at start is an error wrapping
// setup.ErrNotSetUp; one lost later is waited for (the admin declares it again).
func (s *Stage) consumer(ctx context.Context, start bool) (jetstream.Consumer, error) {
	if s.bind {
		return retryDeclare(ctx, s, "bind consumer", func() (jetstream.Consumer, error) {
			c, err := s.js.Consumer(ctx, s.cfg.Stream, s.cfg.Name)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				err = setup.Missing(fmt.Sprintf("consumer %s on stream %s", s.cfg.Name, s.cfg.Stream), err)
				if start {
					return nil, &stopError{err}
				}
			}
			if err == nil {
				if have := c.CachedInfo().Config.AckWait; have != s.cfg.AckWait {
					s.log.Warn("the consumer's AckWait differs from the stage's: run `marketpipe migrate` with the same ACK_WAIT",
						"consumer_ack_wait", have, "stage_ack_wait", s.cfg.AckWait)
				}
			}
			return c, err
		})
	}
	return retryDeclare(ctx, s, "declare consumer", func() (jetstream.Consumer, error) {
		cfg := s.ConsumerConfig()
		c, err := s.js.Consumer(ctx, s.cfg.Stream, s.cfg.Name)
		switch {
		case err == nil:
			ci := c.CachedInfo().Config
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = ci.DeliverPolicy, ci.OptStartSeq, ci.OptStartTime
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			if floor := s.ackFloor.Load(); floor > 0 {
				cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, floor+1
			}
		default:
			return nil, err
		}
		return s.js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, cfg)
	})
}

// stopError is an error of declare that retrying does not cure.
type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }

// retryDeclare calls declare until it succeeds or ctx ends, backing off between attempts.
func retryDeclare[T any](ctx context.Context, s *Stage, what string, declare func() (T, error)) (T, error) {
	for attempt := uint64(1); ; attempt++ {
		v, err := declare()
		if err == nil {
			return v, nil
		}
		var stop *stopError
		if errors.As(err, &stop) {
			s.setBroken(stop.err)
			return v, fmt.Errorf("stage %s: %w", s.cfg.Name, stop.err)
		}
		s.setBroken(fmt.Errorf("%s: %w", what, err))
		s.log.Warn(what, "err", err, "attempt", attempt)
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("stage %s: %s: %w", s.cfg.Name, what, err)
		case <-time.After(min(DefaultBackoff(attempt), 5*time.Second)):
		}
	}
}

// watcher is what watch tells the loop consuming one binding of the consumer.
type watcher struct {
	done chan struct{}         // closed when the binding's consumption ends
	lost atomic.Pointer[error] // why watch stopped the iterator
}

// watch reports the consumer's pending messages, remembers its acknowledgement floor, and stops
// the iterator when the consumer is gone: its pulls then go unanswered, which the iterator
// does not notice by itself.
func (s *Stage) watch(ctx context.Context, cons jetstream.Consumer, it jetstream.MessagesContext, w *watcher) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		info, err := cons.Info(ctx)
		switch {
		case err == nil:
			s.metrics.Pending.WithLabelValues(s.cfg.Name).Set(float64(info.NumPending))
			s.ackFloor.Store(info.AckFloor.Stream)
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			err = fmt.Errorf("stage %s: consumer %s on %s: %w", s.cfg.Name, s.cfg.Name, s.cfg.Stream, err)
			w.lost.Store(&err)
			it.Stop()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-w.done:
			return
		case <-t.C:
		}
	}
}

func (s *Stage) handle(ctx context.Context, raw jetstream.Msg) {
	m := NewMessage(raw)
	jobID, jobErr := s.subjects.JobID(m.Subject())
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

	// Judged before the handler runs, so a message that kills its process is put aside rather
	// than handed to it again.
	prev := s.loadDelivery(ctx, m)
	stop := s.keepAlive(ctx, m)
	start := time.Now()
	var err error
	if !redrivenFor(m, s.cfg.Name) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "redriven for other stages: acked unread",
			slog.String("stages", m.Header().Get(HdrRedriveStages)))
	} else if reason := s.overLimit(m, prev); reason != "" {
		err = &limitError{reason: reason}
	} else if jobErr != nil {
		err = Permanent(fmt.Errorf("subject %s: %w", m.Subject(), jobErr))
	} else if n := len(m.Data()); s.cfg.MaxBytes > 0 && n > s.cfg.MaxBytes {
		err = Permanent(fmt.Errorf("message of %d bytes exceeds the stage's limit of %d", n, s.cfg.MaxBytes))
	} else {
		err = s.h.Handle(ctx, m)
	}
	stop()
	s.metrics.Latency.WithLabelValues(s.cfg.Name).Observe(time.Since(start).Seconds())
	if jobErr != nil {
		jobID = "" // nothing is recorded under an id that is not valid
	}
	s.settle(ctx, m, jobID, prev, err, span)
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

// settle applies the ack rules of the package doc, and keeps the attempts bucket's records:
// prev is the message's delivery record as handle found it.
func (s *Stage) settle(ctx context.Context, m *Message, jobID string, prev delivery, err error, span trace.Span) {
	name := s.cfg.Name
	n := m.NumDelivered()
	if err == nil {
		span.SetAttributes(attrOutcome.String("acked"))
		if aerr := m.msg.Ack(); aerr != nil {
			// The work is durable; a lost ack means a redelivery the handler deduplicates.
			s.log.WarnContext(ctx, "ack", "err", aerr)
		}
		s.forget(ctx, m, jobID, prev)
		s.metrics.Handled.WithLabelValues(name).Inc()
		s.log.DebugContext(ctx, "handled", "subject", m.Subject(), "deliveries", n)
		return
	}
	if after, ok := WaitAfter(err); ok {
		after = min(after, MaxWait)
		span.SetAttributes(attrOutcome.String("waiting"))
		s.metrics.Waiting.WithLabelValues(name).Inc()
		s.log.DebugContext(ctx, "waiting", "reason", err.Error(), "after", after)
		s.putDelivery(ctx, m, delivery{Settled: n})
		if prev.Failures > 0 {
			s.clearAttempt(ctx, jobID)
		}
		s.nak(ctx, m, after)
		return
	}
	if !IsPermanent(err) && invalidInput(err) {
		err = Permanent(err)
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	failures := prev.Failures + 1
	var limit *limitError
	last := s.cfg.MaxDeliver > 0 && n >= uint64(s.cfg.MaxDeliver)
	if IsPermanent(err) || errors.As(err, &limit) || last {
		kind := "permanent"
		reason := err.Error()
		switch {
		case limit != nil:
			kind = "crashed"
		case !IsPermanent(err):
			kind = "transient"
			reason = fmt.Sprintf("gave up after %d deliveries: %s", n, reason)
		}
		reason = Redact(reason)
		s.metrics.Failed.WithLabelValues(name, kind).Inc()
		if derr := s.deadLetter(ctx, m, reason); derr != nil {
			// Keep the message: the next delivery publishes the dead letter without running the
			// handler (the consumer's MaxDeliver is unlimited, so there is one).
			s.log.ErrorContext(ctx, "dead-letter failed; message kept", "err", derr, "reason", reason)
			span.SetAttributes(attrOutcome.String("retry"))
			s.putDelivery(ctx, m, delivery{Settled: n, Failures: failures, Error: reason, DeadLetter: reason})
			s.nak(ctx, m, s.cfg.Backoff(uint64(failures)))
			return
		}
		s.metrics.DeadLettered.WithLabelValues(name).Inc()
		span.SetAttributes(attrOutcome.String("dead-lettered"))
		s.log.ErrorContext(ctx, "dead-lettered", "reason", reason, "deliveries", n)
		if terr := m.msg.TermWithReason(truncate(reason, 200)); terr != nil {
			s.log.WarnContext(ctx, "term", "err", terr)
		}
		s.putAttempt(ctx, attempts.Record{Job: jobID, Attempts: failures, Error: reason, At: time.Now().UTC(), DeadLettered: true})
		s.forget(ctx, m, jobID, delivery{found: prev.found})
		return
	}
	s.metrics.Failed.WithLabelValues(name, "transient").Inc()
	span.SetAttributes(attrOutcome.String("retry"))
	// The n-th failure in a row, not the n-th delivery: the deliveries that waited (a poll, a
	// run's batches still loading) are no failures, and must not push a retry to the cap.
	delay := s.cfg.Backoff(uint64(failures))
	s.log.WarnContext(ctx, "handler failed; will retry", "err", err, "deliveries", n, "retry_in", delay)
	reason := Redact(err.Error())
	now := time.Now().UTC()
	s.putDelivery(ctx, m, delivery{Settled: n, Failures: failures, Error: reason})
	s.putAttempt(ctx, attempts.Record{Job: jobID, Attempts: failures, Error: reason, At: now, NextAt: now.Add(delay)})
	s.nak(ctx, m, delay)
}

func (s *Stage) nak(ctx context.Context, m *Message, d time.Duration) {
	if err := m.msg.NakWithDelay(d); err != nil {
		// Without the nak the message comes back after AckWait: late, but not lost.
		s.log.WarnContext(ctx, "nak", "err", err)
	}
}

// deadLetter publishes the dead-letter record of m.
func (s *Stage) deadLetter(ctx context.Context, m *Message, reason string) error {
	d := newDeadLetter(m, s.cfg.Name, s.cfg.Stream, reason, time.Now())
	msgID, hdr := d.record()
	return s.pub.Publish(ctx, s.subjects.DeadLetter(d.Stage), msgID, d.Data, hdr)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
