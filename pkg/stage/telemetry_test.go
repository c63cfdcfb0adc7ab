package stage_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// One message through a stage whose handler publishes the next: the trace goes root → publish
// span → consumer span → publish span → consumer span, one trace, and the metrics count each
// delivery, the wait and the redelivery.
func TestTraceAndMetricsFollowTheMessages(t *testing.T) {
	js := setup(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reg := prometheus.NewRegistry()
	metrics, err := stage.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	pub := stage.NewPublisher(js, stage.PublishTracing(tp))

	var done atomic.Int64
	var waited atomic.Bool
	h := stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		if m.Subject() == "t.work" {
			if !waited.Swap(true) {
				return stage.Wait(50*time.Millisecond, "not yet")
			}
			return pub.Publish(ctx, "t.done", "done-1", []byte("x"), nil)
		}
		done.Add(1)
		return nil
	})
	s, err := stage.New(js, stage.Config{Name: "work", Stream: testStream, Filters: []string{"t.>"}, MaxDeliver: -1},
		h, stage.Options{Tracer: tp, Metrics: metrics, Subjects: events.Subjects{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- s.Run(ctx) }()
	defer func() { cancel(); <-runDone }()

	rootCtx, root := tp.Tracer("test").Start(context.Background(), "root")
	if err := pub.Publish(rootCtx, "t.work", "work-1", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	root.End()
	waitFor(t, "the second message handled", func() bool { return done.Load() == 1 })
	waitFor(t, "three consumer spans ended", func() bool { return len(spansNamed(rec.Ended(), "work")) == 3 })

	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, sp := range rec.Ended() {
		byID[sp.SpanContext().SpanID()] = sp
		if sp.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Errorf("span %q in trace %s, want the root's %s", sp.Name(), sp.SpanContext().TraceID(), root.SpanContext().TraceID())
		}
	}
	parentName := func(sp sdktrace.ReadOnlySpan) string {
		if p, ok := byID[sp.Parent().SpanID()]; ok {
			return p.Name()
		}
		return "?"
	}
	for _, sp := range rec.Ended() {
		want := map[string]string{"root": "?", "publish t.work": "root", "publish t.done": "work"}[sp.Name()]
		if sp.Name() == "work" {
			want = "publish t.work"
			if subject(sp) == "t.done" {
				want = "publish t.done"
			}
		}
		if got := parentName(sp); got != want {
			t.Errorf("span %q (%s): parent %q, want %q", sp.Name(), subject(sp), got, want)
		}
		if sp.Name() == "work" && sp.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("consumer span kind %v", sp.SpanKind())
		}
	}
	var outcomes []string
	for _, sp := range spansNamed(rec.Ended(), "work") {
		outcomes = append(outcomes, attr(sp, "marketpipe.outcome"))
	}
	if len(outcomes) != 3 || outcomes[0] != "waiting" || outcomes[1] != "acked" || outcomes[2] != "acked" {
		t.Errorf("outcomes %v, want [waiting acked acked]", outcomes)
	}

	for name, want := range map[string]float64{
		"marketpipe_messages_handled_total":     2,
		"marketpipe_messages_waiting_total":     1,
		"marketpipe_messages_redelivered_total": 1,
		"marketpipe_handler_seconds":            3, // observations
	} {
		if got := gathered(t, reg, name, "work"); got != want {
			t.Errorf("%s{stage=\"work\"} = %v, want %v", name, got, want)
		}
	}
}

// gathered returns the value of a counter (or a histogram's count) of the given stage.
func gathered(t *testing.T, reg *prometheus.Registry, name, stageName string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabel(m, "stage", stageName) {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func spansNamed(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, sp := range spans {
		if sp.Name() == name {
			out = append(out, sp)
		}
	}
	return out
}

func attr(sp sdktrace.ReadOnlySpan, key attribute.Key) string {
	for _, kv := range sp.Attributes() {
		if kv.Key == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func subject(sp sdktrace.ReadOnlySpan) string { return attr(sp, "messaging.destination.name") }

// The runtime names publish spans with the SubjectKind it is given (events.SubjectKind), so a
// span name carries no id; without one, the subject is the name.
func TestPublishSpansAreNamedByTheGivenKind(t *testing.T) {
	js := setup(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s, err := stage.New(js, stage.Config{Name: "work", Stream: testStream, Filters: []string{"t.>"}},
		stage.HandlerFunc(func(context.Context, *stage.Message) error { return stage.Permanent(errors.New("poison")) }),
		stage.Options{Tracer: tp, Subjects: events.Subjects{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- s.Run(ctx) }()
	defer func() { cancel(); <-runDone }()

	if err := stage.NewPublisher(js, stage.PublishTracing(tp)).Publish(ctx, "t.work", "w1", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	named := stage.NewPublisher(js, stage.PublishTracing(tp), stage.PublishSpanNames(events.SubjectKind))
	if err := named.Publish(ctx, events.DLQSubject("other"), "d1", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the dead letter's publish span", func() bool { return len(spansNamed(rec.Ended(), "publish dlq.work")) == 1 })
	for _, name := range []string{"publish t.work", "publish dlq.other"} {
		if n := len(spansNamed(rec.Ended(), name)); n != 1 {
			t.Errorf("%d spans named %q, want 1", n, name)
		}
	}
}
