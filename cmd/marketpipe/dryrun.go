package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// dataPoints estimates what a request asks for, as vendors bill it (vendor.Points): securities
// × fields × dates, a date being a weekday of the range for daily history (the vendor's own
// calendar may drop a few holidays), a period's end for the other periodicities, and one for a
// snapshot.
func dataPoints(s events.Spec) (dates int, points int64) {
	dates = vendor.Dates(s.Program, s.Start, s.End, s.Periodicity)
	return dates, vendor.Points(s.Program, s.SecurityCount(), len(s.Fields), s.Start, s.End, s.Periodicity)
}

// historyDates counts the data points of one security and field between start and end
// (vendor.HistoryDates, which the requester counts with too).
func historyDates(start, end, periodicity string) int {
	return vendor.HistoryDates(start, end, periodicity)
}

// planRequests returns the vendor requests of spec as the requester makes them (vendor.Plan
// within maxPoints, VENDOR_MAX_POINTS_PER_REQUEST), each checked as the client checks it
// before sending. A job that cannot be split, or a request the client would refuse, is an
// error saying why.
func planRequests(spec events.Spec, maxPoints int64) ([]vendor.PlannedPart, []vendor.Request, error) {
	parts, err := vendor.Plan(vendor.Shape{Program: spec.Program, Securities: len(spec.Securities), Fields: len(spec.Fields),
		Start: spec.Start, End: spec.End, Periodicity: spec.Periodicity,
		Overrides: len(spec.Overrides) > 0 || len(spec.SecurityOverrides) > 0}, maxPoints)
	if err != nil {
		return nil, nil, err
	}
	reqs := make([]vendor.Request, len(parts))
	for i, p := range parts {
		reqs[i] = vendor.Request{Identifier: "dryrun", Program: spec.Program, Securities: spec.Securities[p.SecFrom:p.SecTo],
			Fields: spec.Fields[p.FieldFrom:p.FieldTo], Start: p.Start, End: p.End,
			Overrides: spec.Overrides, SecurityOverrides: spec.SecurityOverrides,
			PricingSource: spec.PricingSource, PricingSourceExclusive: spec.PricingSourceExclusive,
			Periodicity: spec.Periodicity, Currency: spec.Currency}
		if err := reqs[i].Validate(); err != nil {
			return nil, nil, fmt.Errorf("the vendor would refuse it: %w", err)
		}
	}
	return parts, reqs, nil
}

// checkRequests refuses, before anything is sent, a job file whose vendor requests could not
// be made: one that cannot be split within the limits (vendor.Plan), or a request the client
// would refuse.
func checkRequests(f *jobspec.File, now time.Time, maxPoints int64) error {
	spec, err := f.SpecAt(now)
	if err != nil {
		return err
	}
	if _, _, err := planRequests(spec, maxPoints); err != nil {
		return &exitError{code: exitInvalid, err: fmt.Errorf("%s: %w", f.Path, err)}
	}
	return nil
}

// dryRun prints the vendor requests a job file would make, planned and checked as the
// requester plans and checks them (within maxPoints data points each), and sends nothing.
func dryRun(f *jobspec.File, now time.Time, maxPoints int64, w io.Writer) error {
	spec, err := f.SpecAt(now)
	if err != nil {
		return err
	}
	parts, _, err := planRequests(spec, maxPoints)
	if err != nil {
		return &exitError{code: exitInvalid, err: fmt.Errorf("%s: %w", f.Path, err)}
	}
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
	if spec.Incremental {
		opts = append(opts, "incremental: at most this; the requester asks only for what committed runs have not loaded")
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
	plural := "s"
	if len(parts) == 1 {
		plural = ""
	}
	fmt.Fprintf(w, "in all: %d vendor request%s, %d data points (at most %d a request); nothing sent\n", len(parts), plural, total, maxPoints)
	return nil
}
