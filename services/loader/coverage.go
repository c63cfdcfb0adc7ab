package loader

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/coverage"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// Coverage is where committed history runs record what they loaded (package coverage).
type Coverage interface {
	Add(ctx context.Context, dataset string, securities, fields []string, r coverage.Range) error
}

// recordCoverage records what a committed gethistory run loaded: every security and field of
// its job over the job's dates, up to the day before its request (coverage.Cutoff). An
// incremental run asked only for what was missing, and earlier runs loaded the rest, so after
// it the job's whole range is loaded. It runs after the commit and before "loaded" is
// published, and adding is idempotent: a crash in between is redone by the redelivery.
//
// A run whose securities list is gone from the object store records nothing (its dates are
// asked again by the next incremental run), as does one without dates.
func recordCoverage(ctx context.Context, cov Coverage, specs jetstream.ObjectStore, j *events.Job) error {
	if cov == nil || j.Spec.Program != events.GetHistory {
		return nil
	}
	r, err := coverage.ParseRange(j.Spec.Start, j.Spec.End)
	if err != nil {
		return nil
	}
	if !j.RequestedAt.IsZero() {
		r.To = min(r.To, coverage.Cutoff(obs.DateOf(j.RequestedAt)))
	}
	if r.To < r.From {
		return nil
	}
	securities, err := natsx.ResolveSecurities(ctx, specs, j.Spec)
	if errors.Is(err, natsx.ErrSpecMissing) {
		return nil
	}
	if err != nil {
		return err
	}
	return cov.Add(ctx, j.Spec.Dataset(), securities, j.Spec.Fields, r)
}
