// Package backfill splits a long history into windows of consecutive dates, each small enough
// for one vendor request, runs each window as one job, and records the plan and its jobs in the
// key-value bucket events.BackfillsBucket, so that a backfill run again after a crash or a
// Ctrl-C finds its jobs (their ids are derived, jobspec.BackfillJobID) and never asks the vendor
// again for a window that loaded.
package backfill

import (
	"fmt"
	"time"
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

// requestPoints is what one vendor request asks for, as vendors bill it: securities × fields ×
// dates. pkg/vendor/plan.go (request parts, written at the same time) uses the same formula to
// split a large job into several vendor requests; the two are to be unified into one.
func requestPoints(securities, fields, dates int) int64 {
	return int64(securities) * int64(fields) * int64(dates)
}

// Split divides the calendar days from..to into as few consecutive windows as fit, each of at
// most maxPoints data points of securities × fields (one date at least, whatever the budget: a
// date of a universe larger than the budget is split by securities by the requester, not here),
// of even sizes (they differ by a date at most, but for periods cut whole). A window
// ends where a period of periodicity ends ("" is daily; weekly, monthly, quarterly, yearly), so
// that no period is cut in two (the vendor would report it twice, once in each window); the
// windows together cover every day of the range, and the same arguments always give the same
// windows. A range without a weekday, or one needing more than MaxWindows windows, is an error.
func Split(securities, fields int, periodicity string, from, to time.Time, maxPoints int64) ([]Window, error) {
	if securities < 1 || fields < 1 {
		return nil, fmt.Errorf("backfill of %d securities × %d fields: nothing to ask for", securities, fields)
	}
	if to.Before(from) {
		return nil, fmt.Errorf("from %s is after to %s", from.Format(time.DateOnly), to.Format(time.DateOnly))
	}
	perDate := requestPoints(securities, fields, 1)
	maxDates := max(maxPoints/perDate, 1)
	// As few windows as the budget allows, of even sizes: 5,217 dates in windows of at most
	// 4,000 are two of 2,609 and 2,608, not 4,000 and 1,217.
	if total := int64(countPeriods(from, to, periodicity)); total > maxDates {
		windows := (total + maxDates - 1) / maxDates
		maxDates = (total + windows - 1) / windows
	}
	var out []Window
	start := from
	dates, last := 0, ""
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		if wd := d.Weekday(); wd == time.Saturday || wd == time.Sunday {
			continue
		}
		p := periodKey(d, periodicity)
		if p == last {
			continue
		}
		if int64(dates) == maxDates {
			// d opens a period that does not fit: the window ends the day before its period.
			boundary := periodStart(d, periodicity)
			if boundary.Before(start.AddDate(0, 0, 1)) { // cannot happen: the window holds a period before d
				boundary = d
			}
			out = append(out, window(start, boundary.AddDate(0, 0, -1), dates, perDate))
			if len(out) >= MaxWindows {
				return nil, fmt.Errorf("%s to %s in windows of %d dates of %d securities × %d fields is more than %d windows: ask for a shorter range, or raise VENDOR_MAX_POINTS_PER_REQUEST (%d)",
					from.Format(time.DateOnly), to.Format(time.DateOnly), maxDates, securities, fields, MaxWindows, maxPoints)
			}
			start, dates = boundary, 0
		}
		dates++
		last = p
	}
	if len(out) == 0 && dates == 0 {
		return nil, fmt.Errorf("%s to %s holds no weekday: no date to ask for", from.Format(time.DateOnly), to.Format(time.DateOnly))
	}
	return append(out, window(start, to, dates, perDate)), nil
}

// countPeriods counts the periods of periodicity that hold a weekday of from..to.
func countPeriods(from, to time.Time, periodicity string) int {
	n, last := 0, ""
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		if wd := d.Weekday(); wd == time.Saturday || wd == time.Sunday {
			continue
		}
		if p := periodKey(d, periodicity); p != last {
			n++
			last = p
		}
	}
	return n
}

func window(start, end time.Time, dates int, perDate int64) Window {
	return Window{Start: start.Format(time.DateOnly), End: end.Format(time.DateOnly), Dates: dates, Points: perDate * int64(dates)}
}

// periodKey names the period of periodicity that day d is in.
func periodKey(d time.Time, periodicity string) string {
	switch periodicity {
	case "weekly":
		y, w := d.ISOWeek()
		return fmt.Sprint(y, "w", w)
	case "monthly":
		return d.Format("2006-01")
	case "quarterly":
		return fmt.Sprint(d.Year(), "q", (d.Month()-1)/3)
	case "yearly":
		return fmt.Sprint(d.Year())
	}
	return d.Format(time.DateOnly)
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
