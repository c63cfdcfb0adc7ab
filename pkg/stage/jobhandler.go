package stage

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
)

// JobHandler does a stage's work for one job event of type J (events.Job) and returns the event
// that follows it (nil: none). Its error means what a Handler's does (Permanent, Wait,
// otherwise transient); with an error, the returned event is ignored. The runtime decodes the
// event and publishes the next one, so a handler holds neither a decoder nor a publisher.
type JobHandler[J any] interface {
	HandleJob(ctx context.Context, j J, m *Message) (*J, error)
}

// JobHandlerFunc adapts a function to JobHandler.
type JobHandlerFunc[J any] func(ctx context.Context, j J, m *Message) (*J, error)

// HandleJob calls f.
func (f JobHandlerFunc[J]) HandleJob(ctx context.Context, j J, m *Message) (*J, error) {
	return f(ctx, j, m)
}

// JobPublished is implemented by a JobHandler that acts once the event it returned is durable
// (the transformer counts a job's rows then, not before a publish that may fail).
type JobPublished[J any] interface {
	Published(ctx context.Context, j *J)
}

// Jobs makes h a Handler: it decodes each message with decode (events.Decode; a payload that
// is not an event is permanent), calls h, and publishes the event h returns with pub
// (PublishJob: its Nats-Msg-Id, and a producer span when pub traces) before the message is
// acked; then it calls h's Published, if h has one.
func Jobs[J any, E interface {
	*J
	Event
}](pub *Publisher, decode func([]byte) (J, error), h JobHandler[J]) Handler {
	return HandlerFunc(func(ctx context.Context, m *Message) error {
		j, err := decode(m.Data())
		if err != nil { // an invalid job id included (events.Decode)
			return Permanent(err)
		}
		next, err := h.HandleJob(ctx, j, m)
		if err != nil || next == nil {
			return err
		}
		if err := pub.PublishJob(ctx, E(next)); err != nil {
			return err
		}
		if p, ok := h.(JobPublished[J]); ok {
			p.Published(ctx, next)
		}
		return nil
	})
}

// NewJobs returns a stage that runs h on the job events of its consumer, decoded by decode,
// and publishes what h returns with the stage's own publisher (traced with o.Tracer, spans
// named by o.Subjects).
func NewJobs[J any, E interface {
	*J
	Event
}](js jetstream.JetStream, cfg Config, decode func([]byte) (J, error), h JobHandler[J], o Options) (*Stage, error) {
	s, err := New(js, cfg, nil, o)
	if err != nil {
		return nil, err
	}
	if o.Skip != nil {
		h = skipping[J]{h, o.Skip, s.log}
	}
	s.h = Jobs[J, E](s.pub, decode, h)
	return s, nil
}

// skipping acks the events Options.Skip names without handling them: whatever a stage would do
// for a cancelled run is wasted, and what it would publish must not follow the cancellation.
type skipping[J any] struct {
	JobHandler[J]
	skip func(ctx context.Context, event any) (string, error)
	log  *slog.Logger
}

func (s skipping[J]) HandleJob(ctx context.Context, j J, m *Message) (*J, error) {
	reason, err := s.skip(ctx, &j)
	if err != nil {
		return nil, err
	}
	if reason != "" {
		s.log.Info("event skipped", "subject", m.Subject(), "reason", reason)
		return nil, nil
	}
	return s.JobHandler.HandleJob(ctx, j, m)
}

func (s skipping[J]) Published(ctx context.Context, j *J) {
	if p, ok := s.JobHandler.(JobPublished[J]); ok {
		p.Published(ctx, j)
	}
}
