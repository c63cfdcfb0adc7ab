package vendor

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// MaxParts bounds the vendor requests one job becomes (Plan): each is a part of its job event,
// which must stay small, and each is polled and downloaded on its own. A job that needs more
// is better split into several jobs or given a larger VENDOR_MAX_POINTS_PER_REQUEST.
const MaxParts = 1000

// ErrUnsplittable is wrapped by Plan's errors: the job cannot be cut into requests within the
// limits.
var ErrUnsplittable = errors.New("cannot be split into vendor requests")

// Shape is what Plan needs of a job: how many securities and fields it asks for, its dates and
// whether its universe carries overrides (then at most MaxUniverseWithOverrides securities a
// request).
type Shape struct {
	Program     string // ProgramGetData, ProgramGetHistory or ProgramGetActions
	Securities  int
	Fields      int    // 0 for a getactions request of every action kind
	Start, End  string // YYYY-MM-DD, gethistory and getactions
	Periodicity string // gethistory: Periodicities, "" for daily
	Overrides   bool
}

// PlannedPart is one vendor request of a job: the securities [SecFrom, SecTo) and fields
// [FieldFrom, FieldTo) of the job's lists, between Start and End (the job's dates, or a part of
// them for gethistory), and its data points (Points).
type PlannedPart struct {
	SecFrom, SecTo     int
	FieldFrom, FieldTo int
	Start, End         string
	Points             int64
}

// Points is what a request asks for, as vendors bill it: securities × fields × dates (Dates),
// a request without fields (getactions of every kind) counting as one field.
func Points(program string, securities, fields int, start, end, periodicity string) int64 {
	return int64(securities) * int64(max(fields, 1)) * int64(Dates(program, start, end, periodicity))
}

// Dates is the number of dates a request asks for per security and field: for gethistory the
// periods between start and end (HistoryDates), for getdata and getactions one.
func Dates(program, start, end, periodicity string) int {
	if program == ProgramGetHistory {
		return HistoryDates(start, end, periodicity)
	}
	return 1
}

// HistoryDates counts the dates of a history between start and end at periodicity: the
// weekdays for daily (the vendor's own calendar may drop a few holidays), the periods (weeks,
// months, quarters, years) that have a weekday in the range for the others. It is 0 for a
// range it cannot read.
func HistoryDates(start, end, periodicity string) int {
	return len(HistoryPeriods(start, end, periodicity))
}

// Period is one date of a history: its first and last weekday within the range.
type Period struct{ First, Last time.Time }

// HistoryPeriods lists the periods of a history between start and end, in order: what
// HistoryDates counts, and what a history is cut at (Plan, and pkg/backfill's windows).
func HistoryPeriods(start, end, periodicity string) []Period {
	from, err1 := time.Parse(time.DateOnly, start)
	to, err2 := time.Parse(time.DateOnly, end)
	if err1 != nil || err2 != nil || to.Before(from) {
		return nil
	}
	key := func(d time.Time) int {
		switch periodicity {
		case "weekly":
			y, w := d.ISOWeek()
			return y*100 + w
		case "monthly":
			return d.Year()*100 + int(d.Month())
		case "quarterly":
			return d.Year()*10 + int(d.Month()-1)/3
		case "yearly":
			return d.Year()
		}
		return d.Year()*10000 + int(d.Month())*100 + d.Day()
	}
	var out []Period
	last := -1
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		if wd := d.Weekday(); wd == time.Saturday || wd == time.Sunday {
			continue
		}
		if k := key(d); k != last || len(out) == 0 {
			out = append(out, Period{First: d, Last: d})
			last = k
		} else {
			out[len(out)-1].Last = d
		}
	}
	return out
}

// Plan cuts a job into the vendor requests it becomes: one when it fits, else several, each
// within HAPI's limits (MaxUniverse securities, MaxUniverseWithOverrides with overrides,
// MaxFieldList fields) and asking at most maxPoints data points (Points; maxPoints <= 0: no
// budget). It splits the securities first, into balanced ranges, then, when one security's
// request is still over the budget, the fields, then, for gethistory, the dates into ranges
// of whole periods. The result depends on its arguments only, so that a requester that
// crashed plans the same parts again. A job that needs more than MaxParts requests, or whose
// single security, field and date is over the budget, gives an error wrapping
// ErrUnsplittable.
func Plan(s Shape, maxPoints int64) ([]PlannedPart, error) {
	if s.Securities < 1 {
		return nil, fmt.Errorf("%w: no securities", ErrUnsplittable)
	}
	if maxPoints <= 0 {
		maxPoints = math.MaxInt64
	}
	universe := MaxUniverse
	if s.Overrides {
		universe = MaxUniverseWithOverrides
	}
	nFields := max(s.Fields, 1)
	var periods []Period
	dates := 1
	if s.Program == ProgramGetHistory {
		periods = HistoryPeriods(s.Start, s.End, s.Periodicity)
		dates = max(len(periods), 1)
	}
	// Fields: within the field list limit, then within the budget if one security needs it.
	fieldsPer := ceilDiv(nFields, ceilDiv(nFields, MaxFieldList))
	// Securities: within the universe limit and the budget.
	secPer := min(universe, s.Securities)
	if fit := maxPoints / (int64(fieldsPer) * int64(dates)); fit < int64(secPer) {
		secPer = int(max(fit, 1))
	}
	datesPer := dates
	if secPer == 1 {
		if fit := maxPoints / int64(dates); fit < int64(fieldsPer) {
			fieldsPer = int(max(fit, 1))
		}
		if fieldsPer == 1 && int64(dates) > maxPoints {
			if s.Program != ProgramGetHistory {
				return nil, fmt.Errorf("%w: one security and field is %d data points, over the budget of %d", ErrUnsplittable, dates, maxPoints)
			}
			datesPer = int(maxPoints)
		}
	}
	secGroups := ceilDiv(s.Securities, secPer)
	fieldGroups := ceilDiv(nFields, fieldsPer)
	dateGroups := ceilDiv(dates, datesPer)
	if n := int64(secGroups) * int64(fieldGroups) * int64(dateGroups); n > MaxParts {
		return nil, fmt.Errorf("%w: %d securities × %d fields × %d dates needs %d requests of at most %d data points; at most %d (raise VENDOR_MAX_POINTS_PER_REQUEST or split the job)",
			ErrUnsplittable, s.Securities, s.Fields, dates, n, maxPoints, MaxParts)
	}
	parts := make([]PlannedPart, 0, secGroups*fieldGroups*dateGroups)
	for si := range secGroups {
		secFrom, secTo := cut(s.Securities, secGroups, si)
		for fi := range fieldGroups {
			fieldFrom, fieldTo := cut(nFields, fieldGroups, fi)
			if s.Fields == 0 {
				fieldFrom, fieldTo = 0, 0
			}
			for di := range dateGroups {
				p := PlannedPart{SecFrom: secFrom, SecTo: secTo, FieldFrom: fieldFrom, FieldTo: fieldTo, Start: s.Start, End: s.End}
				nDates := dates
				if dateGroups > 1 {
					from, to := cut(len(periods), dateGroups, di)
					nDates = to - from
					if di > 0 {
						p.Start = periods[from].First.Format(time.DateOnly)
					}
					if di < dateGroups-1 {
						p.End = periods[to-1].Last.Format(time.DateOnly)
					}
				} else if s.Program == ProgramGetHistory {
					nDates = len(periods)
				}
				p.Points = int64(secTo-secFrom) * int64(max(fieldTo-fieldFrom, 1)) * int64(nDates)
				parts = append(parts, p)
			}
		}
	}
	return parts, nil
}

// cut returns group i of n items cut into groups balanced within one: [from, to).
func cut(n, groups, i int) (from, to int) {
	return i * n / groups, (i + 1) * n / groups
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
