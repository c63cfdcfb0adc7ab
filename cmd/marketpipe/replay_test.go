package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

func TestReplayIsANewRunWithItsOwnTrace(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx := context.Background()
	now := time.Now().UTC()
	first := events.Job{ID: "job-r", Version: 5, TraceID: "0123456789abcdef0123456789abcdef", FileKey: "job-r/g0/f",
		Deadline: now.Add(time.Hour), Batches: 3, RowsParsed: 10, RowsLoaded: 10}
	first = first.Advance(events.Submitted, now)
	collected := first.Advance(events.Collected, now)
	loaded := collected.Advance(events.Loaded, now)
	for _, j := range []events.Job{collected, loaded} {
		if err := stage.NewPublisher(env.JS).PublishJob(ctx, &j); err != nil {
			t.Fatal(err)
		}
	}

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	j, err := replayJob(ctx, env.JS, tp, "job-r", "transformer", events.Collected)
	if err != nil {
		t.Fatal(err)
	}
	if j.Generation != 1 || j.Version <= first.Version || j.State != events.Collected || j.Batches != 0 ||
		j.RowsLoaded != 0 || !j.LoadedAt.IsZero() || j.FileKey != "job-r/g0/f" {
		t.Errorf("replayed job: %+v", j)
	}
	var root sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "replay job-r from transformer" {
			root = s
		}
	}
	if root == nil || root.Parent().IsValid() {
		t.Fatalf("no root span for the replay among %d spans", len(rec.Ended()))
	}
	if j.TraceID != root.SpanContext().TraceID().String() || j.TraceID == first.TraceID {
		t.Errorf("replay trace id %s; its root span's %s; the first run's %s", j.TraceID, root.SpanContext().TraceID(), first.TraceID)
	}
	// The stages continue that trace: the stored event carries it in its headers.
	s, _ := env.JS.Stream(ctx, events.JobsStream)
	m, err := s.GetLastMsgForSubject(ctx, events.JobSubject("job-r", events.Collected))
	if err != nil {
		t.Fatal(err)
	}
	if tp := m.Header.Get("traceparent"); len(tp) < 36 || tp[3:35] != j.TraceID {
		t.Errorf("traceparent %q, want trace %s", tp, j.TraceID)
	}
}

// TestReplayFlags: contradictory or incomplete flags are refused with what to give, before
// anything is contacted.
func TestReplayFlags(t *testing.T) {
	env := map[string]string{"NATS_URL": "nats://127.0.0.1:1"} // nothing listens: nothing may be contacted
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replay", "--job", "a", "--since", "2026-01-01"}, "--job and --since exclude each other"},
		{[]string{"replay"}, "give --job ID, or --since T"},
		{[]string{"replay", "--job", "a", "--until", "2026-01-01"}, "--until needs --since"},
		{[]string{"replay", "--job", "a", "--timeout", "1m"}, "--timeout bounds --wait"},
		{[]string{"replay", "--job", "a", "--from", "loader"}, `--from "loader": want requester, poller, collector or transformer`},
	} {
		out, err := runCmd(t, context.Background(), env, tc.args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v (output %q); want exit %d saying %q", tc.args, err, out, exitInvalid, tc.want)
		}
	}
}
