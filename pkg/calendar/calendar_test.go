package calendar

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func date(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestBusinessDays(t *testing.T) {
	x, err := Lookup("xnys")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		day  string
		want bool
		why  string
	}{
		{"2026-11-26", false, "Thanksgiving Day"}, // a Thursday holiday
		{"2026-11-27", true, ""},                  // the day after trades (early close is still a business day)
		{"2026-11-28", false, "Saturday"},
		{"2026-07-03", false, "Independence Day (observed)"},
		{"2021-12-31", true, ""}, // New Year's Day 2022 was a Saturday: no Friday closure
	} {
		ok, err := x.IsBusinessDay(date(c.day))
		if err != nil || ok != c.want || x.Why(date(c.day)) != c.why {
			t.Errorf("%s: business day %v (%v), why %q; want %v, %q", c.day, ok, err, x.Why(date(c.day)), c.want, c.why)
		}
	}
	// -1b from the Monday after Thanksgiving week-end is Friday; -3b crosses the holiday.
	for _, c := range []struct {
		from string
		n    int
		want string
	}{
		{"2026-11-30", 1, "2026-11-27"},
		{"2026-11-30", 3, "2026-11-24"},
		{"2026-11-30", 0, "2026-11-30"},
		{"2026-11-29", 1, "2026-11-27"}, // from a Sunday
	} {
		got, err := x.BusinessDaysBefore(date(c.from), c.n)
		if err != nil || got.Format(time.DateOnly) != c.want {
			t.Errorf("%d business days before %s = %v (%v), want %s", c.n, c.from, got, err, c.want)
		}
	}
	l, _ := Lookup("XLON")
	if ok, _ := l.IsBusinessDay(date("2026-11-26")); !ok {
		t.Error("XLON trades on US Thanksgiving")
	}
	if ok, _ := l.IsBusinessDay(date("2026-12-28")); ok {
		t.Error("XLON open on the Boxing Day substitute 2026-12-28")
	}
	w, _ := Lookup("")
	if ok, err := w.IsBusinessDay(date("2099-06-01")); !ok || err != nil {
		t.Errorf("weekdays: Monday 2099-06-01 = %v, %v", ok, err)
	}
}

func TestRefusals(t *testing.T) {
	_, err := Lookup("XTKS")
	if err == nil || !strings.Contains(err.Error(), "XNYS") || !strings.Contains(err.Error(), "XTKS") {
		t.Errorf("unknown calendar: %v", err)
	}
	x, _ := Lookup("XNYS")
	_, err = x.IsBusinessDay(date("2028-01-03"))
	if !errors.Is(err, ErrOutOfRange) || !strings.Contains(err.Error(), "2027-12-31") {
		t.Errorf("date after the data: %v", err)
	}
	if _, err := x.BusinessDaysBefore(date("2020-01-03"), 5); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("walking back before the data: %v", err)
	}
}
