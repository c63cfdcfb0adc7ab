package coverage

import (
	"cmp"
	"slices"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// Covered is what committed runs of one dataset loaded for one security: the dates asked, by
// field.
type Covered map[string]Ranges

// Missing returns, for each of securities, the dates of want that cov (by security) does not
// hold for at least one of fields: a security is asked for all the job's fields at once, so a
// date missing for one field is asked for every field. A security with nothing missing is not
// in the result.
func Missing(cov map[string]Covered, securities, fields []string, want Range) map[string]Ranges {
	out := map[string]Ranges{}
	for _, s := range securities {
		var miss Ranges
		c := cov[s]
		for _, f := range fields {
			miss = miss.Union(c[f].Missing(want))
		}
		if len(miss) > 0 {
			out[s] = miss
		}
	}
	return out
}

// MaxGap is the widest run of loaded dates, in calendar days, that a request asks for again
// rather than splitting a security's missing dates into two requests: a week of data points
// costs less than a second request (and its poll, download and load).
const MaxGap = 7

// Group is one vendor request of an incremental run: securities, all asked for the dates Start
// to End.
type Group struct {
	Securities []string
	Range
}

// Groups turns what is missing (Missing's result) into as few requests as sensible: each
// security's missing ranges, with gaps of at most MaxGap loaded days between them closed,
// and the securities with the same range asked together. A security whose missing dates are
// far apart is in several groups. Securities keep their order in order (the job's); groups are
// sorted by dates.
func Groups(missing map[string]Ranges, order []string) []Group {
	byRange := map[Range]*Group{}
	for _, s := range order {
		for _, r := range closeGaps(missing[s]) {
			g := byRange[r]
			if g == nil {
				g = &Group{Range: r}
				byRange[r] = g
			}
			if n := len(g.Securities); n == 0 || g.Securities[n-1] != s {
				g.Securities = append(g.Securities, s)
			}
		}
	}
	out := make([]Group, 0, len(byRange))
	for _, g := range byRange {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b Group) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	return out
}

// closeGaps merges ranges of rs separated by at most MaxGap days.
func closeGaps(rs Ranges) Ranges {
	var out Ranges
	for _, r := range rs {
		if n := len(out); n > 0 && int(r.From-out[n-1].To)-1 <= MaxGap {
			out[n-1].To = r.To
			continue
		}
		out = append(out, r)
	}
	return out
}

// Span is the single request that asks for every group's dates: their securities (in order's
// order) from the earliest date to the latest. It is what an incremental run sends while a job
// is one vendor request; ok is false when there are no groups.
func Span(groups []Group, order []string) (securities []string, r Range, ok bool) {
	if len(groups) == 0 {
		return nil, Range{}, false
	}
	in := map[string]bool{}
	r = groups[0].Range
	for _, g := range groups {
		for _, s := range g.Securities {
			in[s] = true
		}
		r.From, r.To = min(r.From, g.From), max(r.To, g.To)
	}
	for _, s := range order {
		if in[s] {
			securities = append(securities, s)
			delete(in, s) // a security listed twice is asked once
		}
	}
	return securities, r, true
}

// Cutoff is the last date a run requested at requestedAt can have loaded for good: the day
// before its request (UTC). A date on or after the day it was asked may not have been final
// (today's prices before the close), so an incremental run asks for it again.
func Cutoff(requestedAt obs.Date) obs.Date { return requestedAt - 1 }
