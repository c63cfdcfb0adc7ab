// Package backfill splits a long history into windows of consecutive dates, each small enough
// for one vendor request, runs each window as one job, and records the plan and its jobs in the
// key-value bucket events.BackfillsBucket, so that a backfill run again after a crash or a
// Ctrl-C finds its jobs (their ids are derived, jobspec.BackfillJobID) and never asks the vendor
// again for a window that loaded.
package backfill

import (
	"fmt"
	"time"

	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// MaxWindows bounds one backfill's plan: it is kept as one key-value entry, and a plan of more
// windows than this (twenty years of weekdays, one date per window) asks for a wider budget or
// a shorter range rather than for thousands of jobs.
const MaxWindows = 5000

// Window is one part of a backfill: a range of calendar days asked for in one job.
type Window struct {
	Start string `json:"start"` // YYYY-MM-DD
	End   string `json:"end"`
	// Dates is the number of data dates of one security and field in the range (weekdays for
	// daily history, periods for the other periodicities), and Points the data points asked for.
	Dates  int   `json:"dates"`
	Points int64 `json:"points"`
}

// Split divides the calendar days from..to into as few consecutive windows as fit, each of at
// most maxPoints data points of securities × fields (vendor.Points; one date at least, whatever
// the budget: a date of a universe larger than the budget is split by securities by the
// requester, not here), of even sizes (they differ by a date at most). A window ends where a
// period of periodicity ends ("" is daily; weekly, monthly, quarterly, yearly: the periods of
// vendor.HistoryPeriods), so that no period is cut in two (the vendor would report it twice,
// once in each window); the windows together cover every day of the range, and the same
// arguments always give the same windows. A range without a weekday, or one needing more than
// MaxWindows windows, is an error.
func Split(securities, fields int, periodicity string, from, to time.Time, maxPoints int64) ([]Window, error) {
	if securities < 1 || fields < 1 {
		return nil, fmt.Errorf("backfill of %d securities × %d fields: nothing to ask for", securities, fields)
	}
	if to.Before(from) {
		return nil, fmt.Errorf("from %s is after to %s", from.Format(time.DateOnly), to.Format(time.DateOnly))
	}
	periods := vendor.HistoryPeriods(from.Format(time.DateOnly), to.Format(time.DateOnly), periodicity)
	if len(periods) == 0 {
		return nil, fmt.Errorf("%s to %s holds no weekday: no date to ask for", from.Format(time.DateOnly), to.Format(time.DateOnly))
	}
	perDate := vendor.Points(vendor.ProgramGetHistory, securities, fields, periods[0].First.Format(time.DateOnly), periods[0].First.Format(time.DateOnly), periodicity)
	size := int(max(maxPoints/perDate, 1))
	// As few windows as the budget allows, of even sizes: 5,217 dates in windows of at most
	// 4,000 are two of 2,609 and 2,608, not 4,000 and 1,217.
	n := (len(periods) + size - 1) / size
	if n > MaxWindows {
		return nil, fmt.Errorf("%s to %s in windows of %d dates of %d securities × %d fields is more than %d windows: ask for a shorter range, or raise VENDOR_MAX_POINTS_PER_REQUEST (%d)",
			from.Format(time.DateOnly), to.Format(time.DateOnly), size, securities, fields, MaxWindows, maxPoints)
	}
	size = (len(periods) + n - 1) / n
	out := make([]Window, 0, n)
	start := from
	for first := 0; first < len(periods); first += size {
		next := min(first+size, len(periods))
		end := to
		if next < len(periods) {
			// The window ends the day before the calendar start of the next window's period.
			end = periodStart(periods[next].First, periodicity).AddDate(0, 0, -1)
		}
		out = append(out, Window{Start: start.Format(time.DateOnly), End: end.Format(time.DateOnly),
			Dates: next - first, Points: perDate * int64(next-first)})
		start = end.AddDate(0, 0, 1)
	}
	return out, nil
}

// periodStart is the first calendar day of the period that day d is in.
func periodStart(d time.Time, periodicity string) time.Time {
	switch periodicity {
	case "weekly":
		return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7)) // back to Monday
	case "monthly":
		return time.Date(d.Year(), d.Month(), 1, 0, 0, 0, 0, d.Location())
	case "quarterly":
		return time.Date(d.Year(), (d.Month()-1)/3*3+1, 1, 0, 0, 0, 0, d.Location())
	case "yearly":
		return time.Date(d.Year(), 1, 1, 0, 0, 0, 0, d.Location())
	}
	return d
}
