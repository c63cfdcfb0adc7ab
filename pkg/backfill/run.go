package backfill

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// Publisher publishes a job event (stage.Publisher does).
type Publisher interface {
	PublishJob(ctx context.Context, e stage.Event) error
}

// Runner runs the windows of a backfill, at most Parallel jobs at a time.
type Runner struct {
	JS    jetstream.JetStream
	Store Store
	// Specs keeps the securities list of a window's job when it is longer than
	// events.InlineSecurities (natsx.ExternalizeSecurities).
	Specs     jetstream.ObjectStore
	Publisher Publisher
	// Tracer, when set, roots each window's job trace (as submit does).
	Tracer trace.Tracer
	// Spec is the job file's request (its dates are replaced by each window's), Deadline its
	// deadline:.
	Spec     events.Spec
	Deadline time.Duration
	Parallel int
	// Poll is how often a job in flight is looked at; default one second.
	Poll time.Duration
	// Report, when set, is told of each change of a window, one call at a time.
	Report func(Progress)
}

// Progress is a change of one window.
type Progress struct {
	Window int    // 0-based
	JobID  string // its current job
	Part   Part   // as recorded, State the job's latest
	// How the window was found: Skipped when it had loaded before this run, Resumed when its job
	// was in flight, Retry when its earlier job had failed or been cancelled and a new attempt
	// was submitted. Submitted when this run submitted its job.
	Skipped, Resumed, Retry, Submitted bool
	Record                             *Record // as stored after the change
}

// Result is what a run did.
type Result struct {
	Record *Record
	// Failed are the windows (0-based) whose job failed or was cancelled in this run, InFlight
	// those left running when the run was interrupted.
	Failed, InFlight []int
}

// Run runs the windows of rec that have not loaded: a window whose job is in flight is waited
// on, one whose job failed or was cancelled gets a new job (a new attempt), one with no job
// gets its first. It returns when every window has ended, or when ctx ends (the jobs in flight
// keep running; running again resumes). The error is for a run that could not go on (NATS
// unreachable, the record gone), not for failed windows (Result.Failed).
func (r *Runner) Run(ctx context.Context, rec *Record) (Result, error) {
	if r.Parallel < 1 {
		return Result{}, fmt.Errorf("parallel %d: want at least 1", r.Parallel)
	}
	if r.Poll == 0 {
		r.Poll = time.Second
	}
	var (
		mu     sync.Mutex
		res    = Result{Record: rec}
		runErr error
	)
	report := func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Record != nil {
			res.Record = p.Record
		}
		if r.Report != nil {
			r.Report(p)
		}
	}
	todo := make(chan int)
	var wg sync.WaitGroup
	for range min(r.Parallel, len(rec.Parts)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range todo {
				state, err := r.window(ctx, rec.Name, i, report)
				mu.Lock()
				switch {
				case err != nil && ctx.Err() != nil:
					if state != "" {
						res.InFlight = append(res.InFlight, i)
					}
				case err != nil:
					if runErr == nil {
						runErr = err
					}
				case state == events.Failed || state == events.Cancelled:
					res.Failed = append(res.Failed, i)
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for i := range rec.Parts {
		if rec.Parts[i].Loaded() {
			report(Progress{Window: i, JobID: rec.JobID(i), Part: rec.Parts[i], Skipped: true})
			continue
		}
		mu.Lock()
		stop := runErr != nil
		mu.Unlock()
		if stop {
			break
		}
		select {
		case todo <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(todo)
	wg.Wait()
	if runErr != nil {
		return res, runErr
	}
	return res, ctx.Err()
}

// window runs window i of the backfill called name to its end, and returns its job's last
// state ("" when it has none: interrupted before its submission).
func (r *Runner) window(ctx context.Context, name string, i int, report func(Progress)) (string, error) {
	rec, _, err := r.Store.Get(ctx, name)
	if err != nil {
		return "", err
	}
	if rec == nil || i >= len(rec.Parts) {
		return "", fmt.Errorf("backfill %s: gone from %s while it ran", name, events.BackfillsBucket)
	}
	p := rec.Parts[i]
	if p.Loaded() {
		report(Progress{Window: i, JobID: rec.JobID(i), Part: p, Skipped: true, Record: rec})
		return events.Loaded, nil
	}
	id := rec.JobID(i)
	j, ok, err := natsx.LastJobEvent(ctx, r.JS, id)
	if err != nil {
		return "", err
	}
	progress := Progress{Window: i}
	if ok && (j.State == events.Failed || j.State == events.Cancelled) ||
		!ok && (p.State == events.Failed || p.State == events.Cancelled) {
		// Its job ended without loading, in an earlier run: a new attempt, a new job.
		seen := p.Attempt
		rec, err = r.Store.UpdatePart(ctx, name, i, func(p *Part) {
			if p.Attempt == seen {
				p.Attempt, p.State, p.Rows, p.Error = seen+1, "", 0, ""
			}
		})
		if err != nil {
			return "", err
		}
		p, id = rec.Parts[i], rec.JobID(i)
		if j, ok, err = natsx.LastJobEvent(ctx, r.JS, id); err != nil {
			return "", err
		}
		progress.Retry = true
	}
	if ok {
		progress.Resumed = !progress.Retry && j.State != events.Loaded
		progress.Skipped = !progress.Retry && j.State == events.Loaded
	} else {
		if err := r.submit(ctx, id, p.Window); err != nil {
			return "", err
		}
		progress.Submitted = true
		j = events.Job{ID: id, State: events.Submitted}
	}
	return r.wait(ctx, name, i, j, progress, report)
}

// submit publishes the job of a window: the job file's request over the window's dates.
func (r *Runner) submit(ctx context.Context, id string, w Window) error {
	spec := r.Spec
	spec.Options = spec.Options.Clone()
	spec.Start, spec.End = w.Start, w.End
	j := events.NewRun(id, spec, time.Now(), r.Deadline)
	if len(j.Spec.Securities) > events.InlineSecurities {
		if r.Specs == nil {
			return fmt.Errorf("job %s: %d securities need the object store %s", id, len(j.Spec.Securities), events.SpecsBucket)
		}
		if err := natsx.ExternalizeSecurities(ctx, r.Specs, j.ID, &j.Spec); err != nil {
			return err
		}
	}
	if r.Tracer != nil {
		var span trace.Span
		ctx, span = r.Tracer.Start(ctx, "job "+spec.Name+" "+w.Start+".."+w.End, trace.WithNewRoot())
		defer span.End()
		if sc := span.SpanContext(); sc.IsValid() {
			j.TraceID = sc.TraceID().String()
		}
	}
	if err := r.Publisher.PublishJob(ctx, &j); err != nil {
		return fmt.Errorf("submit job %s: %w", id, err)
	}
	return nil
}

// wait follows the job j of window i until it ends, recording its end in the record.
func (r *Runner) wait(ctx context.Context, name string, i int, j events.Job, progress Progress, report func(Progress)) (string, error) {
	last := ""
	tick := time.NewTicker(r.Poll)
	defer tick.Stop()
	for {
		if j.State != last {
			last = j.State
			// Recorded even when the run is being interrupted: status and the next run see it.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			rec, err := r.Store.UpdatePart(uctx, name, i, func(p *Part) {
				p.State = j.State
				p.Rows, p.Error = j.RowsLoaded, j.Error
				if j.State == events.Cancelled {
					p.Error = "cancelled by " + j.CancelledBy
				}
			})
			cancel()
			if err != nil {
				return last, err
			}
			progress.JobID, progress.Part, progress.Record = j.ID, rec.Parts[i], rec
			report(progress)
			progress.Skipped, progress.Resumed, progress.Retry, progress.Submitted = false, false, false, false
			if j.Finished() {
				return j.State, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-tick.C:
		}
		next, ok, err := natsx.LastJobEvent(ctx, r.JS, j.ID)
		switch {
		case err != nil && ctx.Err() != nil:
			return last, ctx.Err()
		case err != nil:
			// NATS away for a moment (it reconnects): look again at the next tick.
			continue
		case ok:
			j = next
		}
	}
}
