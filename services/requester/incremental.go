package requester

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/coverage"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
)

// CoverageReader tells what committed runs of a dataset loaded (coverage.Store).
type CoverageReader interface {
	Read(ctx context.Context, dataset string, securities []string) (map[string]coverage.Covered, error)
}

// request is what a run asks of the vendor; or, when ended, the run's end instead.
type request struct {
	securities []string
	start, end string
	// ended: nothing to ask; the stage publishes final ("loaded"), or nothing when it is nil.
	ended bool
	final *events.Job
}

// ask returns what the run j asks of the vendor: the securities and dates of its vendor
// request, with j.PointsRequested set to their data points. For an incremental gethistory job
// that is only what committed runs have not loaded (coverage.Missing): the securities with
// anything missing, from the earliest missing date among them to the latest (coverage.Span of
// coverage.Groups, one request while a job is one vendor request). When nothing is missing the
// run ends instead: "loaded" with 0 points, or nothing when a cancel ended it first.
func (h *Handler) ask(ctx context.Context, j *events.Job, securities []string) (request, error) {
	s := &j.Spec
	r := request{securities: securities, start: s.Start, end: s.End}
	// Dates that do not parse are the vendor client's to refuse (the job fails with why).
	dates, bad := coverage.ParseRange(s.Start, s.End)
	if s.Incremental && s.Program == events.GetHistory && h.Coverage != nil && bad == nil {
		cov, err := h.Coverage.Read(ctx, s.Dataset(), securities)
		if err != nil {
			return request{}, err
		}
		groups := coverage.Groups(coverage.Missing(cov, securities, s.Fields, dates), securities)
		missing, span, ok := coverage.Span(groups, securities)
		if !ok {
			end, err := h.nothingMissing(ctx, j)
			return request{ended: true, final: end}, err
		}
		r.securities, r.start, r.end, dates = missing, span.From.String(), span.To.String(), span
	}
	switch s.Program {
	case events.GetHistory:
		if bad == nil {
			j.PointsRequested = coverage.Points(len(r.securities), len(s.Fields), dates, s.Periodicity)
		}
	case events.GetData:
		j.PointsRequested = int64(len(r.securities)) * int64(len(s.Fields))
	}
	return r, nil
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
