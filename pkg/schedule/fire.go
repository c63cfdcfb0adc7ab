package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/calendar"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// ConsumerName is the durable consumer of firings that the requester's replicas share.
const ConsumerName = "scheduler"

// Metrics count what firings became.
type Metrics struct {
	// Firings counts firings by schedule and outcome: submitted (a job), duplicate (the job
	// existed: a redelivery or a second handling), skipped (not a business day, or dates the
	// calendar does not cover), gone (deleted or paused).
	Firings *prometheus.CounterVec
	// Missed counts the firing times that passed while the server could not fire.
	Missed *prometheus.CounterVec
}

// NewMetrics registers the firing metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Firings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marketpipe_schedule_firings_total",
			Help: "schedule firings handled, by schedule and outcome (submitted, duplicate, skipped, gone)"}, []string{"schedule", "outcome"}),
		Missed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marketpipe_schedule_missed_total",
			Help: "firing times missed while the NATS server could not fire them (each schedule runs once when it is back)"}, []string{"schedule"}),
	}
	for _, c := range []prometheus.Collector{m.Firings, m.Missed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Firer turns each firing into a job: it is the requester's stage.Handler on the firings.
type Firer struct {
	Store   *Store
	Specs   jetstream.ObjectStore // securities lists too long for a job event
	Pub     *stage.Publisher
	Tracer  trace.Tracer
	Metrics *Metrics // nil: not counted
	Log     *slog.Logger
	Now     func() time.Time
}

// Handle implements stage.Handler.
func (f *Firer) Handle(ctx context.Context, m *stage.Message) error {
	name, ok := events.ScheduleOfFiring(m.Subject())
	if !ok {
		return stage.Permanent(fmt.Errorf("%s is not a firing subject", m.Subject()))
	}
	d, _, err := f.Store.Get(ctx, name)
	manual := m.Header().Get(ScheduledForHeader) != ""
	if errors.Is(err, ErrNotFound) || (err == nil && d.Paused && !manual) {
		f.count(name, "gone")
		f.Log.Info("firing of a schedule deleted or paused since: dropped", "schedule", name)
		return nil
	}
	if err != nil {
		return err
	}
	t, err := newTiming(d.Job.Schedule, d.Job.TZ)
	if err != nil {
		return stage.Permanent(fmt.Errorf("schedule %s: %w", name, err))
	}
	at, err := firingTime(m, t)
	if err != nil {
		return stage.Permanent(fmt.Errorf("schedule %s: %w", name, err))
	}
	st, rev, err := f.Store.state(ctx, name)
	if err != nil {
		return err
	}
	missed := 0
	if !manual && !st.LastFor.IsZero() && at.After(st.LastFor) {
		missed = t.between(st.LastFor, at, 100_000)
	}

	ctx, span := f.Tracer.Start(ctx, "schedule "+name, trace.WithNewRoot(),
		trace.WithAttributes(attribute.String("schedule", name), attribute.String("scheduled_for", at.Format(time.RFC3339))))
	defer span.End()
	id := jobspec.ScheduledJobID(name, at)
	reason, j, err := f.job(ctx, d, t, id, at)
	if err != nil {
		return err
	}
	outcome := "submitted"
	switch {
	case reason != "":
		outcome = "skipped"
		st.Skips++
		st.LastSkip = &Skip{For: at, Reason: reason}
		f.Log.Info("firing skipped", "schedule", name, "for", at, "reason", reason)
	default:
		if _, exists, err := natsx.LastJobEvent(ctx, f.Store.JS, id); err != nil {
			return err
		} else if exists {
			outcome = "duplicate"
			if at.After(st.LastFor) {
				st.LastFor, st.LastJob = at, id
			}
			break
		}
		if sc := span.SpanContext(); sc.IsValid() {
			j.TraceID = sc.TraceID().String()
		}
		if err := f.Pub.PublishJob(ctx, j); err != nil {
			return err
		}
		st.Firings++
		if at.After(st.LastFor) {
			st.LastFor, st.LastJob = at, id
		}
	}
	st.Missed += int64(missed)
	if err := f.saveState(ctx, name, st, rev); err != nil {
		return err
	}
	f.count(name, outcome)
	if missed > 0 && f.Metrics != nil {
		f.Metrics.Missed.WithLabelValues(name).Add(float64(missed))
	}
	return nil
}

// job returns the job of a firing for at, or why the firing is skipped.
func (f *Firer) job(ctx context.Context, d *Definition, t timing, id string, at time.Time) (string, *events.Job, error) {
	cal, err := calendar.Lookup(d.Job.Calendar)
	if err != nil {
		return err.Error(), nil, nil
	}
	day := at.In(t.loc)
	if ok, err := cal.IsBusinessDay(day); err != nil {
		return err.Error(), nil, nil
	} else if !ok {
		return fmt.Sprintf("%s is not a business day on %s (%s)", day.Format(time.DateOnly), cal.Name, cal.Why(day)), nil, nil
	}
	spec, err := d.Job.SpecAt(at)
	if err != nil {
		return err.Error(), nil, nil
	}
	now := f.Now()
	j := events.NewRun(id, spec, now, d.Job.Deadline)
	j.Schedule, j.ScheduledFor = d.Name(), at.UTC()
	if len(j.Spec.Securities) > events.InlineSecurities {
		if err := natsx.ExternalizeSecurities(ctx, f.Specs, j.ID, &j.Spec); err != nil {
			return "", nil, err
		}
	}
	return "", &j, nil
}

// firingTime is the time a firing is for: the manual run's header, or the schedule's firing
// before the server's Nats-Schedule-Next.
func firingTime(m *stage.Message, t timing) (time.Time, error) {
	if v := m.Header().Get(ScheduledForHeader); v != "" {
		at, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s %q: %w", ScheduledForHeader, v, err)
		}
		return at.UTC(), nil
	}
	next := m.Header().Get(jetstream.ScheduleNextHeader)
	nt, err := time.Parse(time.RFC3339Nano, next)
	if err != nil {
		// Not from the server's scheduler: the stored time says when it fired.
		ts := m.Timestamp()
		if ts.IsZero() {
			return time.Time{}, fmt.Errorf("firing without %s or a time", jetstream.ScheduleNextHeader)
		}
		if p := t.previous(ts.Add(time.Second)); !p.IsZero() {
			return p.UTC(), nil
		}
		return ts.UTC().Truncate(time.Second), nil
	}
	p := t.previous(nt)
	if p.IsZero() {
		return time.Time{}, fmt.Errorf("no firing before %s", next)
	}
	return p.UTC(), nil
}

func (f *Firer) saveState(ctx context.Context, name string, st State, rev uint64) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = f.Store.KV.Create(ctx, stateKey(name), b)
	} else {
		_, err = f.Store.KV.Update(ctx, stateKey(name), b, rev)
	}
	if err != nil {
		// Another replica wrote it meanwhile: the firing is redelivered and counted then; its
		// job, if published, is found and not published twice.
		return fmt.Errorf("state of schedule %s: %w", name, err)
	}
	return nil
}

func (f *Firer) count(name, outcome string) {
	if f.Metrics != nil {
		f.Metrics.Firings.WithLabelValues(name, outcome).Inc()
	}
}

// Consumer is the firing consumer, one shared by every requester replica.
var Consumer = stage.Config{
	Name: ConsumerName, Stream: events.SchedulesStream, Filters: []string{events.ScheduleFirings},
	MaxBytes: events.MaxPayload, Concurrency: 4, AckWait: time.Minute,
}

// Stage returns the firing consumer's stage.
func Stage(js jetstream.JetStream, f *Firer, o stage.Options) (*stage.Stage, error) {
	return stage.New(js, Consumer, f, o)
}
