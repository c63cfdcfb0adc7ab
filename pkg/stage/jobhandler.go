package stage

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/events"
)

// JobHandler does a stage's work for one job event and returns the event that follows it
// (nil: none). Its error means what a Handler's does (Permanent, Wait, otherwise transient);
// with an error, the returned event is ignored. The runtime decodes the event and publishes
// the next one, so a handler holds neither a decoder nor a publisher.
type JobHandler interface {
	HandleJob(ctx context.Context, j events.Job, m *Message) (*events.Job, error)
}

// JobHandlerFunc adapts a function to JobHandler.
type JobHandlerFunc func(ctx context.Context, j events.Job, m *Message) (*events.Job, error)

// HandleJob calls f.
func (f JobHandlerFunc) HandleJob(ctx context.Context, j events.Job, m *Message) (*events.Job, error) {
	return f(ctx, j, m)
}

// JobPublished is implemented by a JobHandler that acts once the event it returned is durable
// (the transformer counts a job's rows then, not before a publish that may fail).
type JobPublished interface {
	Published(ctx context.Context, j *events.Job)
}

// Jobs makes h a Handler: it decodes each message as a job event (a payload that is not one is
// permanent), calls h, and publishes the event h returns with pub (PublishJob: its Nats-Msg-Id,
// and a producer span when pub traces) before the message is acked; then it calls h's
// Published, if h has one.
func Jobs(pub *Publisher, h JobHandler) Handler {
	return HandlerFunc(func(ctx context.Context, m *Message) error {
		j, err := events.Decode(m.Data())
		if err != nil { // an invalid job id included (events.Decode)
			return Permanent(err)
		}
		next, err := h.HandleJob(ctx, j, m)
		if err != nil || next == nil {
			return err
		}
		if err := pub.PublishJob(ctx, next); err != nil {
			return err
		}
		if p, ok := h.(JobPublished); ok {
			p.Published(ctx, next)
		}
		return nil
	})
}

// NewJobs returns a stage that runs h on the job events of its consumer and publishes what h
// returns with the stage's own publisher (traced with o.Tracer, spans named by o.SubjectKind).
func NewJobs(js jetstream.JetStream, cfg Config, h JobHandler, o Options) (*Stage, error) {
	s, err := New(js, cfg, nil, o)
	if err != nil {
		return nil, err
	}
	if o.Cancelled != nil {
		h = skipCancelled{h, o.Cancelled, s.log}
	}
	s.h = Jobs(s.pub, h)
	return s, nil
}

// skipCancelled drops the events of cancelled runs: whatever a stage would do for them is
// wasted, and what it would publish must not follow the cancellation.
type skipCancelled struct {
	JobHandler
	cancelled func(ctx context.Context, j *events.Job) (bool, error)
	log       *slog.Logger
}

func (s skipCancelled) HandleJob(ctx context.Context, j events.Job, m *Message) (*events.Job, error) {
	if j.State != events.Cancelled {
		gone, err := s.cancelled(ctx, &j)
		if err != nil {
			return nil, err
		}
		if gone {
			s.log.Info("job run cancelled: event dropped", "job", j.ID, "generation", j.Generation, "event", j.State)
			return nil, nil
		}
	}
	return s.JobHandler.HandleJob(ctx, j, m)
}

func (s skipCancelled) Published(ctx context.Context, j *events.Job) {
	if p, ok := s.JobHandler.(JobPublished); ok {
		p.Published(ctx, j)
	}
}
