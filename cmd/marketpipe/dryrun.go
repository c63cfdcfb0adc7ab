package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/marketpipe/marketpipe/pkg/coverage"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// dataPoints estimates what a request asks for, as vendors bill it: securities × fields ×
// dates, a date being a weekday of the range for daily history (the vendor's own calendar
// may drop a few holidays), a period's end for the other periodicities, and one for a snapshot.
func dataPoints(s events.Spec) (dates int, points int64) {
	dates = 1
	if s.Program == events.GetHistory {
		dates = historyDates(s.Start, s.End, s.Periodicity)
	}
	return dates, int64(s.SecurityCount()) * int64(len(s.Fields)) * int64(dates)
}

// historyDates counts the data points of one security and field between start and end
// (coverage.Dates, which the requester counts with too).
func historyDates(start, end, periodicity string) int {
	r, err := coverage.ParseRange(start, end)
	if err != nil {
		return 0
	}
	return int(coverage.Dates(r, periodicity))
}

// dryRun prints the vendor requests a job file would make, checked as the requester checks
// them, and sends nothing.
func dryRun(f *jobspec.File, now time.Time, w io.Writer) error {
	spec, err := f.SpecAt(now)
	if err != nil {
		return err
	}
	req := vendor.Request{Identifier: "dryrun", Program: spec.Program, Securities: spec.Securities, Fields: spec.Fields,
		Start: spec.Start, End: spec.End, Overrides: spec.Overrides, SecurityOverrides: spec.SecurityOverrides,
		PricingSource: spec.PricingSource, PricingSourceExclusive: spec.PricingSourceExclusive,
		Periodicity: spec.Periodicity, Currency: spec.Currency}
	if err := req.Validate(); err != nil {
		return &exitError{code: exitInvalid, err: fmt.Errorf("%s: the vendor would refuse it: %w", f.Path, err)}
	}
	dates, points := dataPoints(spec)
	what := "snapshot"
	if spec.Program == events.GetHistory {
		what = fmt.Sprintf("%s to %s, %d dates", spec.Start, spec.End, dates)
	}
	fmt.Fprintf(w, "request 1 of 1: %s, %d securities × %d fields × %s = %d data points\n",
		spec.Program, spec.SecurityCount(), len(spec.Fields), what, points)
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
	fmt.Fprintf(w, "in all: 1 vendor request, %d data points; nothing sent\n", points)
	return nil
}
