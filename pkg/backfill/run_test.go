package backfill

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// scriptedPipeline answers each job submitted on the real NATS server as the stages would,
// a little later: requested, then loaded (rows: the job's data points), or failed for the ids
// in fail. It counts the jobs between their submission and their end.
type scriptedPipeline struct {
	mu        sync.Mutex
	submitted []string
	inFlight  atomic.Int32
	maxFlight atomic.Int32
}

func (p *scriptedPipeline) run(t *testing.T, ctx context.Context, js jetstream.JetStream, fail map[string]bool) {
	cons, err := js.OrderedConsumer(ctx, events.JobsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.JobFilter(events.Submitted)}})
	if err != nil {
		t.Error(err)
		return
	}
	pub := stage.NewPublisher(js)
	for ctx.Err() == nil {
		m, err := cons.Next(jetstream.FetchMaxWait(200 * time.Millisecond))
		if err != nil {
			continue
		}
		j, err := events.Decode(m.Data())
		if err != nil {
			t.Error(err)
			continue
		}
		p.mu.Lock()
		p.submitted = append(p.submitted, j.ID)
		p.mu.Unlock()
		if n := p.inFlight.Add(1); n > p.maxFlight.Load() {
			p.maxFlight.Store(n)
		}
		go func() {
			time.Sleep(50 * time.Millisecond)
			r := j.Advance(events.Requested, time.Now())
			_ = pub.PublishJob(ctx, &r)
			time.Sleep(150 * time.Millisecond)
			var end events.Job
			if fail[j.ID] {
				end = r.Fail("vendor refused the request", time.Now())
			} else {
				end = r.Advance(events.Loaded, time.Now())
				end.RowsLoaded = int64(len(j.Spec.Securities) * len(j.Spec.Fields))
			}
			p.inFlight.Add(-1)
			_ = pub.PublishJob(ctx, &end)
		}()
	}
}

func (p *scriptedPipeline) jobs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.submitted)
}

// Run runs at most Parallel jobs at a time, reports a failed window without stopping the
// others; the next run submits the failed window's second attempt only, and the one after it
// submits nothing. An interrupted run leaves its jobs running and says which.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := natstest.NewEnv(t)
	kv, err := env.JS.KeyValue(ctx, events.BackfillsBucket)
	if err != nil {
		t.Fatal(err)
	}
	store := Store{KV: kv}
	// 2 × 2 = 4 points a date, 40 a window: 10 weekdays. Eight windows.
	body := "name: eod\nprogram: gethistory\nsecurities: [A US Equity, B US Equity]\nfields: [PX_LAST, PX_VOLUME]\nstart: 2026-01-01\nend: 2026-01-31\n"
	rec := plan(t, "eod-run", body, "2025-01-01", "2025-04-30")
	rec.MaxPoints = 40
	ws, err := Split(2, 2, "", day("2025-01-01"), day("2025-04-30"), 40)
	if err != nil {
		t.Fatal(err)
	}
	rec.Parts = nil
	for _, w := range ws {
		rec.Parts = append(rec.Parts, Part{Window: w, Attempt: 1})
	}
	if rec, _, err = store.Open(ctx, rec); err != nil {
		t.Fatal(err)
	}
	failing := rec.JobID(2)
	pipe := &scriptedPipeline{}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go pipe.run(t, pctx, env.JS, map[string]bool{failing: true})

	spec := events.Spec{Name: "eod", Program: events.GetHistory, Securities: []string{"A US Equity", "B US Equity"}, Fields: []string{"PX_LAST", "PX_VOLUME"}}
	runner := func(parallel int) *Runner {
		return &Runner{JS: env.JS, Store: store, Publisher: stage.NewPublisher(env.JS), Spec: spec, Deadline: time.Hour,
			Parallel: parallel, Poll: 20 * time.Millisecond}
	}
	res, err := runner(3).Run(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Failed, []int{2}) {
		t.Errorf("failed windows %v, want [2]", res.Failed)
	}
	if loaded, rows := res.Record.LoadedCount(); loaded != len(ws)-1 || rows != int64(4*(len(ws)-1)) {
		t.Errorf("%d windows loaded, %d rows", loaded, rows)
	}
	if p := res.Record.Parts[2]; p.State != events.Failed || !strings.Contains(p.Error, "vendor refused") {
		t.Errorf("failed window recorded as %+v", p)
	}
	if m := pipe.maxFlight.Load(); m > 3 || m < 2 {
		t.Errorf("at most %d jobs in flight at once, want 3 (--parallel 3, eight windows)", m)
	}
	if n := len(pipe.jobs()); n != len(ws) {
		t.Errorf("%d jobs submitted, want %d", n, len(ws))
	}
	// Each window's job asked for its own dates.
	j, _ := env.LastJob(rec.JobID(1))
	if j.Spec.Start != ws[1].Start || j.Spec.End != ws[1].End {
		t.Errorf("window 2's job asked for %s..%s, want %s..%s", j.Spec.Start, j.Spec.End, ws[1].Start, ws[1].End)
	}

	// Again: only the failed window, as its second attempt.
	res, err = runner(3).Run(ctx, res.Record)
	if err != nil || len(res.Failed) != 0 {
		t.Fatalf("second run: %v, failed %v", err, res.Failed)
	}
	jobs := pipe.jobs()
	if len(jobs) != len(ws)+1 || jobs[len(jobs)-1] != failing+"-r2" {
		t.Errorf("jobs submitted: %v; want the %d windows' and then %s-r2", jobs, len(ws), failing)
	}
	if loaded, _ := res.Record.LoadedCount(); loaded != len(ws) || res.Record.Parts[2].Attempt != 2 {
		t.Errorf("after the second run: %d loaded, window 3 at attempt %d", loaded, res.Record.Parts[2].Attempt)
	}
	// And again: nothing.
	if _, err := runner(3).Run(ctx, res.Record); err != nil || len(pipe.jobs()) != len(ws)+1 {
		t.Errorf("third run: %v, %d jobs submitted", err, len(pipe.jobs()))
	}

	// Interrupted once a job is in flight: the jobs keep running, named in InFlight.
	rec2 := plan(t, "eod-int", body, "2025-01-01", "2025-04-30")
	if rec2, _, err = store.Open(ctx, rec2); err != nil {
		t.Fatal(err)
	}
	ictx, interrupt := context.WithCancel(ctx)
	r := runner(1)
	r.Report = func(p Progress) {
		if p.Submitted {
			interrupt()
		}
	}
	res, err = r.Run(ictx, rec2)
	if !errors.Is(err, context.Canceled) || !slices.Equal(res.InFlight, []int{0}) {
		t.Errorf("interrupted run: %v, in flight %v", err, res.InFlight)
	}
}
