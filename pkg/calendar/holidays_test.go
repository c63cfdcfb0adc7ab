package calendar

import (
	"slices"
	"testing"
	"time"

	"github.com/rickar/cal/v2"
	"github.com/rickar/cal/v2/aa"
	"github.com/rickar/cal/v2/gb"
	"github.com/rickar/cal/v2/us"
)

// expected computes a calendar's closures from rickar/cal's holiday rules, keeping the observed
// days that fall on weekdays of the year itself, plus the special closures no rule gives.
func expected(from, to int, rules []*cal.Holiday, keep func(h *cal.Holiday, year int, observed time.Time) bool, special ...string) []time.Time {
	var out []time.Time
	for y := from; y <= to; y++ {
		for _, h := range rules {
			_, obs := h.Calc(y)
			if obs.IsZero() || obs.Year() != y || obs.Weekday() == time.Saturday || obs.Weekday() == time.Sunday {
				continue
			}
			if keep != nil && !keep(h, y, obs) {
				continue
			}
			out = append(out, day(obs))
		}
	}
	for _, s := range special {
		d, _ := time.Parse(time.DateOnly, s)
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return slices.Compact(out)
}

func TestHolidayDataMatchesRules(t *testing.T) {
	from, to := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 12, 31, 0, 0, 0, 0, time.UTC)
	nyse := []*cal.Holiday{us.NewYear, us.MlkDay, us.PresidentsDay, aa.GoodFriday, us.MemorialDay,
		us.Juneteenth, us.IndependenceDay, us.LaborDay, us.ThanksgivingDay, us.ChristmasDay}
	want := expected(2020, 2027, nyse, func(h *cal.Holiday, year int, _ time.Time) bool {
		// The NYSE first closed for Juneteenth in 2022.
		return h != us.Juneteenth || year >= 2022
	}, "2025-01-09")
	if got := xnys.Holidays(from, to); !slices.Equal(got, want) {
		t.Errorf("XNYS holidays differ from the rules:\n only in data: %v\n only in rules: %v", minus(got, want), minus(want, got))
	}
	want = expected(2020, 2027, gb.Holidays, nil, "2022-09-19")
	if got := xlon.Holidays(from, to); !slices.Equal(got, want) {
		t.Errorf("XLON holidays differ from the rules:\n only in data: %v\n only in rules: %v", minus(got, want), minus(want, got))
	}
}

func minus(a, b []time.Time) []string {
	var out []string
	for _, d := range a {
		if !slices.ContainsFunc(b, d.Equal) {
			out = append(out, d.Format(time.DateOnly))
		}
	}
	return out
}
