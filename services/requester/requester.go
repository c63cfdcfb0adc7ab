// Package requester is the first stage: for each submitted job it creates the vendor request
// and publishes "requested". Its consumer reads mp.job.*.submitted; a second one
// (schedule.ConsumerName) turns the schedules' firings into submitted jobs.
package requester

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/schedule"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// Name is the stage's consumer and service name.
const Name = "requester"

// Summary is what the requester does, for -h.
const Summary = "creates the vendor request of each submitted job"

// Vendor creates requests at the vendor.
type Vendor interface {
	Account(ctx context.Context) (string, error)
	Submit(ctx context.Context, r vendor.Request) error
}

// Handler creates the vendor requests of a submitted job.
type Handler struct {
	Vendor Vendor
	// Specs holds the securities lists too long for a job event (events.InlineSecurities).
	Specs jetstream.ObjectStore
	// Coverage tells an incremental job what committed runs loaded, and Ends is where a run
	// with nothing missing claims its end (events.CoverageBucket, events.EndsBucket).
	Coverage CoverageReader
	Ends     jetstream.KeyValue
	Now      func() time.Time
	// MaxPoints bounds the data points of one vendor request (VENDOR_MAX_POINTS_PER_REQUEST):
	// a larger job becomes several (vendor.Plan). 0: only HAPI's limits.
	MaxPoints int64
}

// HandleJob implements stage.JobHandler: it returns "requested", or "failed" for a request the
// vendor refuses. A job within the limits is one vendor request; a larger one is planned into
// parts (vendor.Plan), each its own request, all submitted before "requested" carries them
// (Job.Parts). Submitting twice is safe: the vendor request identifiers are derived from the
// job run (and the part), and the client never re-creates an identifier that exists.
func (h *Handler) HandleJob(ctx context.Context, j events.Job, _ *stage.Message) (*events.Job, error) {
	id := jobspec.VendorRequestID(j.ID, j.Generation)
	securities, err := natsx.ResolveSecurities(ctx, h.Specs, j.Spec)
	if errors.Is(err, natsx.ErrSpecMissing) {
		failed := j.Fail(fmt.Sprintf("securities of request %s: %v", id, err), h.Now())
		return &failed, nil
	}
	if err != nil {
		return nil, err
	}
	ask, err := h.ask(ctx, &j, securities)
	if err != nil || ask.ended {
		return ask.final, err
	}
	s := &j.Spec
	plan, err := PlanRequests(s, ask.groups, h.MaxPoints)
	if err != nil {
		failed := j.Fail(fmt.Sprintf("the job's vendor requests: %v", err), h.Now())
		return &failed, nil
	}
	j.PointsRequested = plan.Points()
	account, err := h.Vendor.Account(ctx)
	if err != nil {
		return h.refused(&j, id, err)
	}
	var parts []events.Part
	if len(plan.Parts) == 1 {
		req := plan.Request(s, 0)
		req.Identifier = id
		if err := h.Vendor.Submit(ctx, req); err != nil {
			return h.refused(&j, id, err)
		}
	} else {
		parts = make([]events.Part, len(plan.Parts))
		for i, p := range plan.Parts {
			part := events.Part{SecFrom: p.SecFrom, SecTo: p.SecTo, FieldFrom: p.FieldFrom, FieldTo: p.FieldTo,
				Start: p.Start, End: p.End, Points: p.Points, VendorRequestID: jobspec.PartRequestID(j.ID, j.Generation, i)}
			r := plan.Request(s, i)
			r.Identifier = part.VendorRequestID
			r.Title = fmt.Sprintf("%s (part %d of %d)", s.Name, i+1, len(plan.Parts))
			if err := h.Vendor.Submit(ctx, r); err != nil {
				return h.refused(&j, r.Identifier, err)
			}
			parts[i] = part
		}
		id = ""
	}
	next := j.Advance(events.Requested, h.Now())
	next.VendorRequestID = id
	next.VendorAccount = account
	next.Parts = parts
	return &next, nil
}

// refused settles a failure to submit request id of j: a request the vendor refuses, or the
// client refuses to send, fails the job (retrying cannot help); anything else is retried.
func (h *Handler) refused(j *events.Job, id string, err error) (*events.Job, error) {
	var apiErr *vendor.APIError
	if errors.Is(err, vendor.ErrInvalidRequest) || (errors.As(err, &apiErr) && !apiErr.Temporary()) {
		// The job fails with the description, which `marketpipe status` shows.
		failed := j.Fail(fmt.Sprintf("vendor refused request %s: %v", id, err), h.Now())
		return &failed, nil
	}
	return nil, fmt.Errorf("submit vendor request %s: %w", id, err)
}

// Stage returns the requester stage on env's JetStream.
func Stage(env *service.Env, v Vendor) (*stage.Stage, error) {
	h := &Handler{Vendor: v, Specs: env.Streams.Specs, Coverage: coverageOf(env.Streams.Coverage), Ends: env.Streams.Ends,
		Now: time.Now, MaxPoints: int64(env.Config.VendorMaxPoints)}
	return stage.NewJobs(env.JS, Consumer, events.Decode, h, env.StageOptions())
}

// Consumer is the requester's stage: "submitted" events.
var Consumer = stage.Config{
	Name: Name, Stream: events.JobsStream, Filters: []string{events.JobFilter(events.Submitted)},
	MaxBytes:    events.MaxJobEventBytes,
	Concurrency: 8, AckWait: time.Minute,
}

// Uses is what the requester does on NATS (its identity's permissions): it reads stored
// securities lists and publishes "requested" or "failed"; for an incremental job it reads what
// committed runs loaded, and ends one with nothing missing ("loaded", its end claimed in
// events.EndsBucket); for schedule firings (schedule.Consumer) it reads the schedules and
// writes their state, looks a firing's job up in MP_JOBS, stores long securities lists and
// publishes "submitted".
var Uses = auth.Uses{
	Consumers: []stage.Config{Consumer, schedule.Consumer},
	Publishes: []string{events.JobFilter(events.Requested), events.JobFilter(events.Failed), events.JobFilter(events.Submitted),
		events.JobFilter(events.Loaded)},
	Reads:    []string{events.JobsStream},
	KVRead:   []string{events.CoverageBucket},
	KVWrite:  []string{events.SchedulesBucket, events.EndsBucket},
	ObjWrite: []string{events.SpecsBucket},
}

// Firings returns the stage that turns schedule firings into submitted jobs (package
// schedule): the first step of a scheduled job, so the requester's replicas share it.
func Firings(env *service.Env) (*stage.Stage, error) {
	m, err := schedule.NewMetrics(env.Registry)
	if err != nil {
		return nil, err
	}
	f := &schedule.Firer{
		Store: &schedule.Store{JS: env.JS, KV: env.Streams.Schedules}, Specs: env.Streams.Specs,
		Pub: env.Publisher(), Tracer: env.Tracing.Provider.Tracer("marketpipe/schedule"), Metrics: m,
		Log: env.Log, Now: time.Now,
	}
	return schedule.Stage(env.JS, f, env.StageOptions())
}

// Build is the service's wiring: the vendor client from VENDOR_URL and VENDOR_CREDENTIALS, the
// requests and the schedule firings.
func Build(ctx context.Context, env *service.Env) ([]service.Runner, error) {
	v, err := env.Vendor()
	if err != nil {
		return nil, err
	}
	req, err := Stage(env, v)
	if err != nil {
		return nil, err
	}
	fire, err := Firings(env)
	if err != nil {
		return nil, err
	}
	return []service.Runner{req, fire}, nil
}
