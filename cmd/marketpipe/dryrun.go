package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/coverage"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/requester"
)

// planRequests returns the vendor requests of spec as the requester makes them: the groups it
// asks for given cov, what committed runs of an incremental job's dataset loaded (nil: nothing;
// requester.Ask), planned within maxPoints (requester.PlanRequests), each request checked as
// the client checks it before sending. A job that cannot be split, or a request the client
// would refuse, is an error saying why; a plan of no part means nothing is missing.
func planRequests(spec events.Spec, cov map[string]coverage.Covered, maxPoints int64) (requester.Plan, error) {
	groups := requester.Ask(&spec, spec.Securities, cov)
	if len(groups) == 0 {
		return requester.Plan{}, nil
	}
	plan, err := requester.PlanRequests(&spec, groups, maxPoints)
	if err != nil {
		return requester.Plan{}, err
	}
	for i := range plan.Parts {
		r := plan.Request(&spec, i)
		r.Identifier = "dryrun"
		if err := r.Validate(); err != nil {
			return requester.Plan{}, fmt.Errorf("the vendor would refuse it: %w", err)
		}
	}
	return plan, nil
}

// checkRequests refuses, before anything is sent, a job file whose vendor requests could not
// be made: one that cannot be split within the limits (vendor.Plan), or a request the client
// would refuse. An incremental job is checked as if nothing were loaded: the most it asks.
func checkRequests(f *jobspec.File, now time.Time, maxPoints int64) error {
	spec, err := f.SpecAt(now)
	if err != nil {
		return err
	}
	if _, err := planRequests(spec, nil, maxPoints); err != nil {
		return &exitError{code: exitInvalid, err: fmt.Errorf("%s: %w", f.Path, err)}
	}
	return nil
}

// loadedFunc reads what committed runs of an incremental job's dataset loaded (readCoverage).
type loadedFunc func(spec events.Spec) (map[string]coverage.Covered, error)

// dryRun prints the vendor requests a job file would make, planned and checked as the
// requester plans and checks them (within maxPoints data points each), and sends nothing. For
// an incremental job, loaded (when not nil) says what committed runs loaded, so that only what
// is missing is shown; without it, or when it fails, the dry run shows the most the job asks.
func dryRun(f *jobspec.File, now time.Time, maxPoints int64, loaded loadedFunc, w io.Writer) error {
	spec, err := f.SpecAt(now)
	if err != nil {
		return err
	}
	var cov map[string]coverage.Covered
	incremental := ""
	if requester.Incremental(&spec) {
		incremental = "incremental: at most this, as what earlier runs loaded is unknown here"
		if loaded != nil {
			if cov, err = loaded(spec); err != nil {
				incremental = fmt.Sprintf("incremental: at most this, as what earlier runs loaded could not be read (%v)", err)
			} else {
				incremental = "incremental: only what committed runs have not loaded, as of now"
			}
		}
	}
	plan, err := planRequests(spec, cov, maxPoints)
	if err != nil {
		return &exitError{code: exitInvalid, err: fmt.Errorf("%s: %w", f.Path, err)}
	}
	parts := plan.Parts
	var total int64
	for i, p := range parts {
		dates := vendor.Dates(spec.Program, p.Start, p.End, spec.Periodicity)
		what := "snapshot"
		switch spec.Program {
		case events.GetHistory:
			what = fmt.Sprintf("%s to %s, %d dates", p.Start, p.End, dates)
		case events.GetActions:
			what = fmt.Sprintf("the actions of %s to %s", p.Start, p.End)
		}
		secs, fields := fmt.Sprintf("%d securities", p.SecTo-p.SecFrom), fmt.Sprintf("%d fields", p.FieldTo-p.FieldFrom)
		if len(parts) > 1 {
			secs = fmt.Sprintf("%s (%d to %d)", secs, p.SecFrom+1, p.SecTo)
			fields = fmt.Sprintf("%s (%d to %d)", fields, p.FieldFrom+1, p.FieldTo)
		}
		fmt.Fprintf(w, "request %d of %d: %s, %s × %s × %s = %d data points\n",
			i+1, len(parts), spec.Program, secs, fields, what, p.Points)
		total += p.Points
	}
	var opts []string
	if spec.Dataset() != spec.Program {
		opts = append(opts, "stored as "+spec.Dataset())
	}
	if incremental != "" {
		opts = append(opts, incremental)
	}
	if n := len(spec.Overrides); n > 0 {
		opts = append(opts, fmt.Sprintf("%d overrides on every security", n))
	}
	if n := len(spec.SecurityOverrides); n > 0 {
		opts = append(opts, fmt.Sprintf("%d securities with their own overrides", n))
	}
	if len(opts) > 0 {
		fmt.Fprintf(w, "  %s\n", strings.Join(opts, "; "))
	}
	if len(parts) == 0 {
		fmt.Fprintln(w, "nothing missing: committed runs loaded every security and date; the job would end loaded without asking the vendor")
	}
	plural := "s"
	if len(parts) == 1 {
		plural = ""
	}
	fmt.Fprintf(w, "in all: %d vendor request%s, %d data points (at most %d a request); nothing sent\n", len(parts), plural, total, maxPoints)
	return nil
}

// readCoverage reads, for a dry run, what committed runs of spec's dataset loaded
// (events.CoverageBucket), giving NATS a few seconds to answer.
func readCoverage(ctx context.Context, cfg config.Config) loadedFunc {
	return func(spec events.Spec) (map[string]coverage.Covered, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		nc, js, err := dialJS(cfg, "marketpipe-dry-run")
		if err != nil {
			return nil, err
		}
		defer nc.Close()
		kv, err := js.KeyValue(ctx, events.CoverageBucket)
		if err != nil {
			if refused := natsx.Refused(nc); refused != nil {
				return nil, refused
			}
			return nil, fmt.Errorf("key-value bucket %s at %s: %w", events.CoverageBucket, config.RedactURL(cfg.NATS.URL), err)
		}
		return coverage.Store{KV: kv}.Read(ctx, spec.Dataset(), spec.Securities)
	}
}
