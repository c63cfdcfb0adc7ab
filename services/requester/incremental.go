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

// request is what a run asks of the vendor: groups of securities, each over its own dates;
// or, when ended, the run's end instead.
type request struct {
	groups []Group
	// ended: nothing to ask; the stage publishes final ("loaded"), or nothing when it is nil.
	ended bool
	final *events.Job
}

// ask returns what the run j asks of the vendor (Ask), reading the coverage of an incremental
// job's dataset. When nothing is missing the run ends instead: "loaded" with 0 points, or
// nothing when a cancel ended it first.
func (h *Handler) ask(ctx context.Context, j *events.Job, securities []string) (request, error) {
	s := &j.Spec
	var cov map[string]coverage.Covered
	if Incremental(s) && h.Coverage != nil {
		var err error
		if cov, err = h.Coverage.Read(ctx, s.Dataset(), securities); err != nil {
			return request{}, err
		}
	}
	groups := Ask(s, securities, cov)
	if len(groups) == 0 {
		end, err := h.nothingMissing(ctx, j)
		return request{ended: true, final: end}, err
	}
	return request{groups: groups}, nil
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
