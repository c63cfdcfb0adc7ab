package schedule_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/schedule"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// job is a scheduled job file firing every `every` seconds: six cron fields reach the server
// as they are (job files have five, minute first).
func job(name string, every int) *jobspec.File {
	return &jobspec.File{Name: name, Program: events.GetData, Securities: []string{"IBM US Equity"},
		Fields: []string{"PX_LAST"}, Schedule: fmt.Sprintf("*/%d * * * * *", every), Deadline: time.Hour, Path: name + ".yaml"}
}

// firers runs n replicas of the firing consumer until the test ends.
func firers(t *testing.T, js jetstream.JetStream, st *natsx.Streams, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := 0; i < n; i++ {
		f := &schedule.Firer{Store: &schedule.Store{JS: js, KV: st.Schedules}, Specs: st.Specs,
			Pub: stage.NewPublisher(js), Tracer: noop.NewTracerProvider().Tracer(""), Log: slog.New(slog.DiscardHandler), Now: time.Now}
		s, err := schedule.Stage(js, f, stage.Options{Logger: slog.New(slog.DiscardHandler), Subjects: events.Subjects{}})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Run(ctx) }()
	}
}

// submitted returns the ids of the jobs submitted so far, sorted, with their events.
func submitted(t *testing.T, js jetstream.JetStream) map[string]events.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, events.JobsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.JobFilter(events.Submitted)}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]events.Job{}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if err != nil {
			return out
		}
		j, err := events.Decode(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := out[j.ID]; dup {
			t.Errorf("job %s submitted twice", j.ID)
		}
		out[j.ID] = j
	}
}

func TestFiringsBecomeOneJobEach(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := natstest.NewEnv(t)
	store := &schedule.Store{JS: env.JS, KV: env.Streams.Schedules}
	f := job("tick", 2)
	if res, err := store.Apply(ctx, f, time.Now()); err != nil || res != schedule.Created {
		t.Fatalf("apply: %v %v", res, err)
	}
	if res, err := store.Apply(ctx, f, time.Now()); err != nil || res != schedule.Unchanged {
		t.Fatalf("apply again: %v %v, want unchanged", res, err)
	}
	firers(t, env.JS, env.Streams, 2)
	time.Sleep(7 * time.Second)
	jobs := submitted(t, env.JS)
	if len(jobs) < 2 || len(jobs) > 4 {
		t.Fatalf("%d jobs after 7 s of a schedule firing every 2 s: %v", len(jobs), slices.Collect(maps.Keys(jobs)))
	}
	for id, j := range jobs {
		if j.Schedule != "tick" || j.ScheduledFor.Second()%2 != 0 || j.ScheduledFor.Nanosecond() != 0 ||
			id != jobspec.ScheduledJobID("tick", j.ScheduledFor) {
			t.Errorf("job %s: schedule %q for %s", id, j.Schedule, j.ScheduledFor)
		}
	}
	list, err := store.List(ctx, time.Now())
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	if e := list[0]; e.Firings < int64(len(jobs)) || e.LastJob == "" || e.Next.IsZero() || e.Problem != "" || e.Paused {
		t.Errorf("list entry: %+v", e)
	}

	// Paused: no firing; resumed: firings again.
	if err := store.Pause(ctx, "tick"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // a firing already on its way may still arrive
	before := len(submitted(t, env.JS))
	time.Sleep(5 * time.Second)
	if n := len(submitted(t, env.JS)); n != before {
		t.Errorf("paused schedule made %d jobs", n-before)
	}
	if list, _ := store.List(ctx, time.Now()); len(list) != 1 || !list[0].Paused || !list[0].Next.IsZero() {
		t.Errorf("paused entry: %+v", list)
	}
	if err := store.Resume(ctx, "tick"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	resumed := len(submitted(t, env.JS))
	if resumed < before+1 {
		t.Errorf("resumed schedule made no job (%d before, %d after)", before, resumed)
	}

	// Run: one job now, as if scheduled now.
	if err := store.Pause(ctx, "tick"); err != nil {
		t.Fatal(err)
	}
	id, err := store.Run(ctx, "tick", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := submitted(t, env.JS)[id]; return ok }, "job %s of schedule run", id)

	// Delete: gone, and its firings with it.
	if err := store.Delete(ctx, "tick"); err != nil {
		t.Fatal(err)
	}
	if list, _ := store.List(ctx, time.Now()); len(list) != 0 {
		t.Errorf("after delete: %+v", list)
	}
	if err := store.Pause(ctx, "tick"); !errors.Is(err, schedule.ErrNotFound) {
		t.Errorf("pause of a deleted schedule: %v", err)
	}
}

// A firing for a holiday or a week-end is skipped and recorded; relative dates resolve in the
// schedule's zone.
func TestSkipsAndRelativeDates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := natstest.NewEnv(t)
	store := &schedule.Store{JS: env.JS, KV: env.Streams.Schedules}
	f, err := jobspec.Parse([]byte(`name: close
program: gethistory
securities: [IBM US Equity]
fields: [PX_LAST]
start: -5b
end: today
schedule: "0 18 * * *"
tz: America/New_York
calendar: XNYS
`), "close.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(ctx, f, time.Now()); err != nil {
		t.Fatal(err)
	}
	firers(t, env.JS, env.Streams, 1)
	fire := func(at time.Time) {
		t.Helper()
		m := nats.NewMsg(events.ScheduleFire("close"))
		m.Header.Set(schedule.ScheduledForHeader, at.UTC().Format(time.RFC3339))
		if _, err := env.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	ny, _ := time.LoadLocation("America/New_York")
	thanksgiving := time.Date(2026, 11, 26, 18, 0, 0, 0, ny)
	saturday := time.Date(2026, 11, 28, 18, 0, 0, 0, ny)
	monday := time.Date(2026, 11, 30, 18, 0, 0, 0, ny) // 23:00 UTC: still Monday in New York
	for _, at := range []time.Time{thanksgiving, saturday, monday} {
		fire(at)
	}
	id := jobspec.ScheduledJobID("close", monday)
	waitFor(t, func() bool { _, ok := submitted(t, env.JS)[id]; return ok }, "job %s", id)
	jobs := submitted(t, env.JS)
	if len(jobs) != 1 {
		t.Errorf("jobs: %v, want only Monday's", slices.Collect(maps.Keys(jobs)))
	}
	j := jobs[id]
	if j.Spec.Start != "2026-11-20" || j.Spec.End != "2026-11-30" {
		t.Errorf("Monday's dates %s..%s, want 2026-11-20..2026-11-30 (five XNYS business days back skip Thanksgiving)", j.Spec.Start, j.Spec.End)
	}
	var list []schedule.Entry
	waitFor(t, func() bool {
		list, _ = store.List(ctx, time.Now())
		return len(list) == 1 && list[0].Skips == 2
	}, "two skips recorded")
	if s := list[0].LastSkip; s == nil || !strings.Contains(s.Reason, "Saturday") && !strings.Contains(s.Reason, "Thanksgiving") {
		t.Errorf("last skip: %+v", s)
	}
	// A file without schedule: cannot be applied.
	f.Schedule = ""
	if _, err := store.Apply(ctx, f, time.Now()); err == nil || !strings.Contains(err.Error(), "close.yaml has no schedule") {
		t.Errorf("apply without schedule: %v", err)
	}
}

func waitFor(t *testing.T, ok func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A schedule whose firings were missed while the server was down fires once when it is back,
// for the latest missed time, and counts the others as missed.
func TestMissedFiringsRunOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	srv, err := natstest.Run(dir, -1)
	if err != nil {
		t.Fatal(err)
	}
	port := srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() { srv.Shutdown() })
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := natsx.Setup(ctx, js, natsx.Retention{})
	if err != nil {
		t.Fatal(err)
	}
	store := &schedule.Store{JS: js, KV: st.Schedules}
	if _, err := store.Apply(ctx, job("slow", 4), time.Now()); err != nil {
		t.Fatal(err)
	}
	firers(t, js, st, 1)
	waitFor(t, func() bool { return len(submitted(t, js)) >= 1 }, "a first firing")

	srv.Shutdown()
	srv.WaitForShutdown()
	down := time.Now()
	time.Sleep(13 * time.Second) // three or four firing times pass
	srv, err = natstest.Run(dir, port)
	if err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	// One job for the firing times missed while down (the latest of them), not one per time.
	missed := func() (out []events.Job) {
		for _, j := range submitted(t, js) {
			if j.ScheduledFor.After(down) && !j.ScheduledFor.After(up) {
				out = append(out, j)
			}
		}
		return out
	}
	waitFor(t, func() bool { return len(missed()) >= 1 }, "the firing for the missed times")
	time.Sleep(5 * time.Second) // time for a second one, if the server fired more than once
	if m := missed(); len(m) != 1 {
		t.Errorf("after the restart: %d jobs for times missed while down (%s to %s), want 1: %v", len(m), down, up, m)
	}
	var list []schedule.Entry
	waitFor(t, func() bool {
		list, _ = store.List(ctx, time.Now())
		return len(list) == 1 && list[0].Missed >= 2
	}, "the missed firings counted")
}
