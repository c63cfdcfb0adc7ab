// Package schedule keeps job files that run on a schedule. The NATS server fires them: each
// schedule is one message of MP_SCHEDULES with a cron expression and a time zone (JetStream
// message schedules), which the server, not a process of ours, publishes on the schedule's
// firing subject at each time it names, replicated with the stream in a cluster. The
// requester's firing consumer (Firer) turns each firing into one job whose id derives from the
// schedule's name and the firing's time, so a firing handled twice is still one job.
//
// The job file and the schedule's state (paused, last firing, last skip) are kept in the
// key-value bucket mp_schedules: "def.<name>" and "state.<name>".
package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/calendar"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natsx"
)

// ScheduledForHeader carries the time a manual run (`schedule run`) is for; a server firing
// has none, and is for the firing before its Nats-Schedule-Next.
const ScheduledForHeader = "Marketpipe-Scheduled-For"

// Definition is a schedule: its job file, validated, and whether it is paused.
type Definition struct {
	Job       jobspec.File `json:"job"`
	Paused    bool         `json:"paused,omitempty"`
	AppliedAt time.Time    `json:"applied_at"`
}

// Name is the schedule's name: its job's name.
func (d *Definition) Name() string { return d.Job.Name }

// State is what happened at a schedule's firings.
type State struct {
	// LastFor is the time of the latest firing turned into a job, LastJob that job's id.
	LastFor time.Time `json:"last_for,omitzero"`
	LastJob string    `json:"last_job,omitempty"`
	// LastSkip is the latest firing skipped, and why (a holiday, a weekend, dates the calendar
	// does not cover).
	LastSkip *Skip `json:"last_skip,omitempty"`
	Firings  int64 `json:"firings"`
	Skips    int64 `json:"skips"`
	// Missed counts the firing times that passed while the server could not fire them (NATS
	// was down): the server fires once when it is back, for the latest of them.
	Missed int64 `json:"missed"`
}

// Skip is a firing that made no job.
type Skip struct {
	For    time.Time `json:"for"`
	Reason string    `json:"reason"`
}

func defKey(name string) string   { return "def." + name }
func stateKey(name string) string { return "state." + name }

// Store applies, lists and changes schedules.
type Store struct {
	JS jetstream.JetStream
	KV jetstream.KeyValue // events.SchedulesBucket
}

// NewStore binds the schedules' bucket and stream on js.
func NewStore(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	kv, err := js.KeyValue(ctx, events.SchedulesBucket)
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", events.SchedulesBucket, err)
	}
	return &Store{JS: js, KV: kv}, nil
}

// ErrNotFound is wrapped by the errors for a schedule that does not exist.
var ErrNotFound = errors.New("no such schedule")

// Get returns a schedule's definition.
func (s *Store) Get(ctx context.Context, name string) (*Definition, uint64, error) {
	e, err := s.KV.Get(ctx, defKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("%w %q (`marketpipe schedule list` shows them)", ErrNotFound, name)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read schedule %s: %w", name, err)
	}
	var d Definition
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		return nil, 0, fmt.Errorf("read schedule %s: %w", name, err)
	}
	return &d, e.Revision(), nil
}

func (s *Store) state(ctx context.Context, name string) (State, uint64, error) {
	e, err := s.KV.Get(ctx, stateKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return State{}, 0, nil
	}
	if err != nil {
		return State{}, 0, fmt.Errorf("read state of schedule %s: %w", name, err)
	}
	var st State
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return State{}, 0, fmt.Errorf("read state of schedule %s: %w", name, err)
	}
	return st, e.Revision(), nil
}

// check refuses a job file whose next firing the schedule could not run: a calendar whose
// holiday data ends before it, or relative dates it cannot resolve.
func check(f *jobspec.File, now time.Time) error {
	if f.Schedule == "" {
		return fmt.Errorf("%s has no schedule: (use `marketpipe submit` for a job run on demand)", f.Path)
	}
	t, err := newTiming(f.Schedule, f.TZ)
	if err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	next := t.next(now)
	if next.IsZero() {
		return fmt.Errorf("%s: schedule %q never fires", f.Path, f.Schedule)
	}
	cal, err := calendar.Lookup(f.Calendar)
	if err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	if err := cal.Covers(next.In(t.loc)); err != nil {
		return fmt.Errorf("%s: the next firing, %s: %w", f.Path, next.Format(time.RFC3339), err)
	}
	if _, err := f.SpecAt(next); err != nil {
		return fmt.Errorf("%s: the next firing, %s: %w", f.Path, next.Format(time.RFC3339), err)
	}
	return nil
}

// Applied says what Apply did.
type Applied string

const (
	Created   Applied = "created"
	Updated   Applied = "updated"
	Unchanged Applied = "unchanged"
)

// Apply creates the schedule of a job file, or updates the one of that name. A paused schedule
// stays paused. Applying the same file again changes nothing.
func (s *Store) Apply(ctx context.Context, f *jobspec.File, now time.Time) (Applied, error) {
	if err := check(f, now); err != nil {
		return "", err
	}
	have, rev, err := s.Get(ctx, f.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return "", err
	}
	d := Definition{Job: *f, AppliedAt: now.UTC()}
	result := Created
	if have != nil {
		d.Paused = have.Paused
		result = Updated
		if reflect.DeepEqual(have.Job, d.Job) {
			ok, err := s.timerMatches(ctx, have)
			if err != nil {
				return "", err
			}
			if ok || have.Paused {
				return Unchanged, nil
			}
		}
	}
	b, err := json.Marshal(d)
	if err != nil {
		return "", err
	}
	if have == nil {
		_, err = s.KV.Create(ctx, defKey(f.Name), b)
	} else {
		_, err = s.KV.Update(ctx, defKey(f.Name), b, rev)
	}
	if err != nil {
		return "", fmt.Errorf("schedule %s: %w (applied concurrently? apply again)", f.Name, err)
	}
	if d.Paused {
		return result, nil
	}
	return result, s.arm(ctx, &d)
}

// arm publishes the schedule's message: the server fires it from then on. Publishing again
// replaces the previous one (the server rolls the subject up).
func (s *Store) arm(ctx context.Context, d *Definition) error {
	opts := []jetstream.PublishOpt{
		jetstream.WithScheduleCron(serverCron(d.Job.Schedule)),
		jetstream.WithScheduleTarget(events.ScheduleFire(d.Name())),
	}
	if d.Job.TZ != "" {
		opts = append(opts, jetstream.WithScheduleTimeZone(d.Job.TZ))
	}
	if _, err := s.JS.Publish(ctx, events.ScheduleTimer(d.Name()), []byte(d.Name()), opts...); err != nil {
		return fmt.Errorf("schedule %s: publish its message schedule: %w", d.Name(), err)
	}
	return nil
}

// disarm removes the schedule's message: the server fires it no more. It asks the server to
// (Nats-Schedule-Next: purge, the schedules' own way), which needs no right to purge the
// stream; the request is kept on mp.schedule.purge.<name>, which no consumer reads.
func (s *Store) disarm(ctx context.Context, name string) error {
	m := nats.NewMsg(events.SchedulePurge(name))
	m.Header.Set(jetstream.ScheduleNextHeader, "purge")
	m.Header.Set(jetstream.SchedulerHeader, events.ScheduleTimer(name))
	if _, err := s.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("schedule %s: remove its message schedule: %w", name, err)
	}
	return nil
}

// timer returns the schedule's message, nil when there is none.
func (s *Store) timer(ctx context.Context, name string) (*jetstream.RawStreamMsg, error) {
	str, err := s.JS.Stream(ctx, events.SchedulesStream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", events.SchedulesStream, err)
	}
	m, err := str.GetLastMsgForSubject(ctx, events.ScheduleTimer(name))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("schedule %s: read its message schedule: %w", name, err)
	}
	return m, nil
}

func (s *Store) timerMatches(ctx context.Context, d *Definition) (bool, error) {
	m, err := s.timer(ctx, d.Name())
	if err != nil || m == nil {
		return false, err
	}
	return m.Header.Get(jetstream.ScheduleHeader) == serverCron(d.Job.Schedule) &&
		m.Header.Get(jetstream.ScheduleTimeZoneHeader) == d.Job.TZ, nil
}

// Pause stops a schedule's firings; its definition stays.
func (s *Store) Pause(ctx context.Context, name string) error { return s.setPaused(ctx, name, true) }

// Resume starts a paused schedule's firings again, from the next time it names.
func (s *Store) Resume(ctx context.Context, name string) error { return s.setPaused(ctx, name, false) }

func (s *Store) setPaused(ctx context.Context, name string, paused bool) error {
	d, rev, err := s.Get(ctx, name)
	if err != nil {
		return err
	}
	d.Paused = paused
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if _, err := s.KV.Update(ctx, defKey(name), b, rev); err != nil {
		return fmt.Errorf("schedule %s: %w (changed concurrently? try again)", name, err)
	}
	if paused {
		return s.disarm(ctx, name)
	}
	return s.arm(ctx, d)
}

// Delete removes a schedule, its state and its future firings. Jobs it made stay.
func (s *Store) Delete(ctx context.Context, name string) error {
	if _, _, err := s.Get(ctx, name); err != nil {
		return err
	}
	if err := s.disarm(ctx, name); err != nil {
		return err
	}
	for _, k := range []string{defKey(name), stateKey(name)} {
		if err := s.KV.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("delete schedule %s: %w", name, err)
		}
	}
	return nil
}

// Run fires the schedule once now, as the server would at now, and returns the id the job
// will have.
func (s *Store) Run(ctx context.Context, name string, now time.Time) (string, error) {
	d, _, err := s.Get(ctx, name)
	if err != nil {
		return "", err
	}
	at := now.UTC().Truncate(time.Second)
	msg := nats.NewMsg(events.ScheduleFire(name))
	msg.Data = []byte(name)
	msg.Header.Set(ScheduledForHeader, at.Format(time.RFC3339))
	id := jobspec.ScheduledJobID(d.Name(), at)
	if _, err := s.JS.PublishMsg(ctx, msg, jetstream.WithMsgID("run."+id)); err != nil {
		return "", fmt.Errorf("run schedule %s: %w", name, err)
	}
	return id, nil
}

// Entry is one schedule as `schedule list` shows it.
type Entry struct {
	Name     string    `json:"name"`
	Cron     string    `json:"cron"`
	TZ       string    `json:"tz"`
	Calendar string    `json:"calendar"`
	Paused   bool      `json:"paused"`
	Next     time.Time `json:"next_run,omitzero"`
	// NextSkipped says why the next firing will be skipped (a holiday), if it will.
	NextSkipped string `json:"next_skipped,omitempty"`
	State
	// LastState and LastWarnings are the last job's state and warnings, from its events.
	LastState    string           `json:"last_state,omitempty"`
	LastWarnings *events.Warnings `json:"last_warnings,omitempty"`
	// Problem says what is wrong with the schedule (its message is missing).
	Problem string `json:"problem,omitempty"`
}

// List returns every schedule, by name.
func (s *Store) List(ctx context.Context, now time.Time) ([]Entry, error) {
	lister, err := s.KV.ListKeysFiltered(ctx, "def.>")
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	var names []string
	if lister != nil {
		for k := range lister.Keys() {
			names = append(names, k[len("def."):])
		}
	}
	slices.Sort(names)
	out := make([]Entry, 0, len(names))
	for _, name := range names {
		d, _, err := s.Get(ctx, name)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		st, _, err := s.state(ctx, name)
		if err != nil {
			return nil, err
		}
		e := Entry{Name: name, Cron: d.Job.Schedule, TZ: d.Job.TZ, Calendar: d.Job.Calendar, Paused: d.Paused, State: st}
		if e.Calendar == "" {
			e.Calendar = calendar.Default
		}
		if e.TZ == "" {
			e.TZ = "UTC"
		}
		if !d.Paused {
			if t, err := newTiming(d.Job.Schedule, d.Job.TZ); err == nil {
				e.Next = t.next(now)
				if cal, err := calendar.Lookup(d.Job.Calendar); err == nil && !e.Next.IsZero() {
					if ok, err := cal.IsBusinessDay(e.Next.In(t.loc)); err != nil {
						e.NextSkipped = err.Error()
					} else if !ok {
						e.NextSkipped = cal.Why(e.Next.In(t.loc))
					}
				}
			}
			if ok, err := s.timerMatches(ctx, d); err != nil {
				return nil, err
			} else if !ok {
				e.Problem = "its message schedule is missing or stale: run `marketpipe schedule apply` on its file again"
			}
		}
		if st.LastJob != "" {
			if j, ok, err := natsx.LastJobEvent(ctx, s.JS, st.LastJob); err == nil && ok {
				e.LastState = j.Outcome()
				e.LastWarnings = j.Warnings
			}
		}
		out = append(out, e)
	}
	return out, nil
}
