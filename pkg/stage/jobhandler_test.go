package stage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// TestJobsDecodesAndPublishesTheNextEvent: the adapter hands the handler the decoded event,
// publishes the event it returns under that event's message id (so a redelivery's second
// publish is dropped) and within a producer span, publishes nothing for nil, passes the
// handler's error on without publishing, and refuses a payload that is no job event as
// permanent without calling the handler.
func TestJobsDecodesAndPublishesTheNextEvent(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := trace.NewTracerProvider(trace.WithSpanProcessor(spans))
	pub := stage.NewPublisher(env.JS, stage.PublishTracing(tp), stage.PublishSpanNames(events.SubjectKind))
	var got []events.Job
	var reply func(j events.Job) (*events.Job, error)
	h := stage.Jobs(pub, events.Decode, stage.JobHandlerFunc[events.Job](func(ctx context.Context, j events.Job, m *stage.Message) (*events.Job, error) {
		got = append(got, j)
		return reply(j)
	}))

	j := events.Job{ID: "job-1"}
	j = j.Advance(events.Submitted, time.Now())
	reply = func(j events.Job) (*events.Job, error) {
		next := j.Advance(events.Requested, time.Now())
		next.VendorRequestID = "r1"
		return &next, nil
	}
	for range 2 { // a redelivery publishes the same event again: JetStream keeps one
		if err := h.Handle(ctx, env.DeliverJob(&j)); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || got[0].ID != "job-1" || got[0].State != events.Submitted {
		t.Fatalf("handler got %+v, want the submitted event of job-1 twice", got)
	}
	stream, err := env.JS.Stream(ctx, events.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stream.GetLastMsgForSubject(ctx, events.JobSubject("job-1", events.Requested))
	if err != nil {
		t.Fatalf("requested event: %v", err)
	}
	if next, err := events.Decode(raw.Data); err != nil || next.VendorRequestID != "r1" ||
		raw.Header.Get("Nats-Msg-Id") != next.MsgID(events.Requested) {
		t.Fatalf("requested event %+v (%v), Nats-Msg-Id %q: want r1 under its message id", next, err, raw.Header.Get("Nats-Msg-Id"))
	}
	if n := env.Count(events.JobsStream, events.JobSubject("job-1", events.Requested)); n != 1 {
		t.Errorf("%d requested events, want 1 (Nats-Msg-Id)", n)
	}
	var published int
	for _, s := range spans.Ended() {
		if s.Name() == "publish "+events.SubjectKind(events.JobSubject("job-1", events.Requested)) {
			published++
		}
	}
	if published != 2 {
		t.Errorf("%d publish spans, want 2", published)
	}

	before := env.Count(events.JobsStream, events.JobsSubjects)
	reply = func(events.Job) (*events.Job, error) { return nil, nil }
	if err := h.Handle(ctx, env.DeliverJob(&j)); err != nil {
		t.Fatal(err)
	}
	wait := stage.Wait(time.Second, "not yet")
	reply = func(j events.Job) (*events.Job, error) {
		next := j.Advance(events.Requested, time.Now())
		return &next, wait
	}
	if err := h.Handle(ctx, env.DeliverJob(&j)); !errors.Is(err, wait) {
		t.Errorf("error %v, want the handler's", err)
	}
	// Two deliveries, and nothing published for them.
	if n := env.Count(events.JobsStream, events.JobsSubjects); n != before+2 {
		t.Errorf("%d job events, want %d: nil and an error publish nothing", n, before+2)
	}

	calls := len(got)
	err = h.Handle(ctx, env.Deliver(events.JobsStream, events.JobSubject("job-1", events.Submitted), []byte("{")))
	if !stage.IsPermanent(err) {
		t.Errorf("bad payload: %v, want permanent", err)
	}
	if len(got) != calls {
		t.Error("the handler ran for a payload that is no job event")
	}
}

// TestNewJobsPublishesWithTheStagesPublisher: a stage made with NewJobs consumes job events
// and publishes what its handler returns, with no publisher of the handler's own.
func TestNewJobsPublishesWithTheStagesPublisher(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx := context.Background()
	s, err := stage.NewJobs(env.JS, stage.Config{Name: "jobs", Stream: events.JobsStream,
		Filters: []string{events.JobFilter(events.Submitted)}}, events.Decode,
		stage.JobHandlerFunc[events.Job](func(ctx context.Context, j events.Job, m *stage.Message) (*events.Job, error) {
			next := j.Advance(events.Requested, time.Now())
			return &next, nil
		}), stage.Options{Subjects: events.Subjects{}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = s.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	j := events.Job{ID: "job-2"}
	j = j.Advance(events.Submitted, time.Now())
	if err := stage.NewPublisher(env.JS).PublishJob(ctx, &j); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "requested", func() bool {
		last, ok := env.LastJob("job-2")
		return ok && last.State == events.Requested
	})
}

// publishedAfter records what its Published saw, and whether the event was in the stream then.
type publishedAfter struct {
	env  *natstest.Env
	seen []string
}

func (p *publishedAfter) HandleJob(ctx context.Context, j events.Job, m *stage.Message) (*events.Job, error) {
	next := j.Advance(events.Requested, time.Now())
	return &next, nil
}

func (p *publishedAfter) Published(ctx context.Context, j *events.Job) {
	p.seen = append(p.seen, fmt.Sprintf("%s %s %d", j.ID, j.State, p.env.Count(events.JobsStream, events.JobSubject(j.ID, j.State))))
}

// TestJobsCallsPublishedOnceDurable: a handler's Published runs after its event is stored, and
// not when the publish fails.
func TestJobsCallsPublishedOnceDurable(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx := context.Background()
	p := &publishedAfter{env: env}
	h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, p)
	j := events.Job{ID: "job-3"}
	j = j.Advance(events.Submitted, time.Now())
	if err := h.Handle(ctx, env.DeliverJob(&j)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"job-3 requested 1"}; fmt.Sprint(p.seen) != fmt.Sprint(want) {
		t.Errorf("Published saw %v, want %v", p.seen, want)
	}
	m := env.DeliverJob(&j)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := h.Handle(cancelled, m); err == nil {
		t.Fatal("publish with a cancelled context succeeded")
	}
	if len(p.seen) != 1 {
		t.Errorf("Published ran after a failed publish: %v", p.seen)
	}
}
