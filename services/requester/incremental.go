package requester

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/coverage"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// CoverageReader tells what committed runs of a dataset loaded (coverage.Store).
type CoverageReader interface {
	Read(ctx context.Context, dataset string, securities []string) (map[string]coverage.Covered, error)
}

// request is what a run asks of the vendor: groups of securities, each over its own dates;
// or, when ended, the run's end instead.
type request struct {
	groups []askGroup
	// ended: nothing to ask; the stage publishes final ("loaded"), or nothing when it is nil.
	ended bool
	final *events.Job
}

// askGroup is securities asked over the same dates.
type askGroup struct {
	securities []string
	start, end string
}

// maxAskGroups bounds the groups of an incremental run: past it, securities missing different
// ranges are asked in one group over the span of them all, since a vendor request per range
// would cost more in requests than the dates it saves.
const maxAskGroups = 16

// ask returns what the run j asks of the vendor. For most jobs that is one group: the job's
// securities over its dates. For an incremental gethistory job it is only what committed runs
// have not loaded (coverage.Missing): the securities with anything missing, grouped by their
// missing range (coverage.Groups), each group becoming its own vendor requests; more than
// maxAskGroups become one group over their span (coverage.Span). When nothing is missing the
// run ends instead: "loaded" with 0 points, or nothing when a cancel ended it first.
func (h *Handler) ask(ctx context.Context, j *events.Job, securities []string) (request, error) {
	s := &j.Spec
	all := request{groups: []askGroup{{securities: securities, start: s.Start, end: s.End}}}
	// Dates that do not parse are the vendor client's to refuse (the job fails with why).
	dates, bad := coverage.ParseRange(s.Start, s.End)
	if !s.Incremental || s.Program != events.GetHistory || h.Coverage == nil || bad != nil {
		return all, nil
	}
	cov, err := h.Coverage.Read(ctx, s.Dataset(), securities)
	if err != nil {
		return request{}, err
	}
	groups := coverage.Groups(coverage.Missing(cov, securities, s.Fields, dates), securities)
	if len(groups) == 0 {
		end, err := h.nothingMissing(ctx, j)
		return request{ended: true, final: end}, err
	}
	if len(groups) > maxAskGroups {
		missing, span, _ := coverage.Span(groups, securities)
		return request{groups: []askGroup{{securities: missing, start: span.From.String(), end: span.To.String()}}}, nil
	}
	r := request{groups: make([]askGroup, len(groups))}
	for i, g := range groups {
		r.groups[i] = askGroup{securities: g.Securities, start: g.From.String(), end: g.To.String()}
	}
	return r, nil
}

// planParts plans the vendor requests of groups (vendor.Plan of each), numbered across the
// groups; each part's securities range is into asked, the groups' securities one after another
// (for a job of one group, its resolved universe).
func planParts(s *events.Spec, groups []askGroup, maxPoints int64) (planned []vendor.PlannedPart, asked []string, err error) {
	for _, g := range groups {
		pp, err := vendor.Plan(vendor.Shape{Program: s.Program, Securities: len(g.securities), Fields: len(s.Fields),
			Start: g.start, End: g.end, Periodicity: s.Periodicity,
			Overrides: len(s.Overrides) > 0 || len(s.SecurityOverrides) > 0}, maxPoints)
		if err != nil {
			return nil, nil, err
		}
		for _, p := range pp {
			p.SecFrom, p.SecTo = p.SecFrom+len(asked), p.SecTo+len(asked)
			planned = append(planned, p)
		}
		asked = append(asked, g.securities...)
	}
	if len(planned) > vendor.MaxParts {
		return nil, nil, fmt.Errorf("%w: %d vendor requests, more than %d", vendor.ErrUnsplittable, len(planned), vendor.MaxParts)
	}
	return planned, asked, nil
}

// nothingMissing ends an incremental run that has nothing to ask: committed runs loaded every
// security and date of it. It claims the run's end as the loader's commit does, so that a
// `marketpipe cancel` racing it either wins (nil: the run stays cancelled) or finds it loaded.
func (h *Handler) nothingMissing(ctx context.Context, j *events.Job) (*events.Job, error) {
	now := h.Now()
	if h.Ends != nil {
		e, err := natsx.ClaimEnd(ctx, h.Ends, j.ID, j.Generation, natsx.End{State: events.Loaded, By: Name, At: now})
		if err != nil {
			return nil, err
		}
		if e.State == events.Cancelled {
			return nil, nil
		}
	}
	next := j.Advance(events.Loaded, now)
	next.PointsRequested = 0
	return &next, nil
}

// coverageOf returns the reader of the coverage bucket.
func coverageOf(kv jetstream.KeyValue) CoverageReader { return coverage.Store{KV: kv} }
