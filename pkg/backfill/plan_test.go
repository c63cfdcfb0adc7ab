package backfill

import (
	"strings"
	"testing"
	"time"
)

func day(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

// weekdays counts the weekdays from..to, as a second way of counting a window's daily dates.
func weekdays(from, to string) int {
	n := 0
	for d := day(from); !d.After(day(to)); d = d.AddDate(0, 0, 1) {
		if wd := d.Weekday(); wd != time.Saturday && wd != time.Sunday {
			n++
		}
	}
	return n
}

// checkCover checks that windows cover from..to, day after day, each within the budget.
func checkCover(t *testing.T, ws []Window, from, to string, maxPoints, perDate int64) {
	t.Helper()
	if len(ws) == 0 {
		t.Fatal("no windows")
	}
	if ws[0].Start != from || ws[len(ws)-1].End != to {
		t.Errorf("windows span %s..%s, want %s..%s", ws[0].Start, ws[len(ws)-1].End, from, to)
	}
	for i, w := range ws {
		if day(w.End).Before(day(w.Start)) {
			t.Errorf("window %d: %s..%s ends before it starts", i, w.Start, w.End)
		}
		if i > 0 && day(ws[i-1].End).AddDate(0, 0, 1) != day(w.Start) {
			t.Errorf("window %d starts %s, the day after %s is not it: a gap or an overlap", i, w.Start, ws[i-1].End)
		}
		if w.Points != int64(w.Dates)*perDate {
			t.Errorf("window %d: %d points for %d dates of %d", i, w.Points, w.Dates, perDate)
		}
		if w.Points > maxPoints && w.Dates > 1 {
			t.Errorf("window %d: %d points, over the budget %d", i, w.Points, maxPoints)
		}
		if w.Dates == 0 {
			t.Errorf("window %d (%s..%s) holds no date", i, w.Start, w.End)
		}
	}
}

func TestSplitDaily(t *testing.T) {
	// 3 securities × 2 fields = 6 points a date; 132 points = 22 dates a window. 2025-01-01 to
	// 2025-04-30 holds 86 weekdays: windows of 22, 22, 22 and 20.
	ws, err := Split(3, 2, "", day("2025-01-01"), day("2025-04-30"), 132)
	if err != nil {
		t.Fatal(err)
	}
	checkCover(t, ws, "2025-01-01", "2025-04-30", 132, 6)
	var dates []int
	total := 0
	for _, w := range ws {
		dates = append(dates, w.Dates)
		total += w.Dates
		if got := weekdays(w.Start, w.End); got != w.Dates {
			t.Errorf("%s..%s: %d dates, but %d weekdays", w.Start, w.End, w.Dates, got)
		}
	}
	if want := weekdays("2025-01-01", "2025-04-30"); total != want || len(ws) != 4 || dates[0] != 22 || dates[3] != want-66 {
		t.Errorf("windows of %v dates (%d in all), want 22, 22, 22, %d", dates, total, want-66)
	}
	if ws[0].End != "2025-01-30" || ws[1].Start != "2025-01-31" || ws[1].End != "2025-03-03" {
		t.Errorf("windows %+v", ws)
	}
	// A window ends the day before the next one's first weekday: a week's window takes the
	// weekend after it.
	if week, _ := Split(1, 1, "", day("2025-01-06"), day("2025-01-24"), 5); len(week) != 3 ||
		week[0].End != "2025-01-12" || week[1].Start != "2025-01-13" || week[2].Dates != 5 {
		t.Errorf("windows of a week: %+v", week)
	}
	again, _ := Split(3, 2, "", day("2025-01-01"), day("2025-04-30"), 132)
	for i := range ws {
		if again[i] != ws[i] {
			t.Errorf("window %d: %+v, then %+v: not deterministic", i, ws[i], again[i])
		}
	}
}

func TestSplitKeepsPeriodsWhole(t *testing.T) {
	for _, c := range []struct {
		periodicity string
		maxPoints   int64
		want        []string // start..end of each window
	}{
		// 2 dates a window (1 × 1 field, budget 2): weeks 2026-W01 (Thu 1 Jan) and W02, then W03 and
		// W04, ... Each window ends on a Sunday.
		{"weekly", 2, []string{"2026-01-01..2026-01-11", "2026-01-12..2026-01-25", "2026-01-26..2026-02-08", "2026-02-09..2026-02-15"}},
		{"monthly", 1, []string{"2026-01-01..2026-01-31", "2026-02-01..2026-02-15"}},
		{"quarterly", 1, []string{"2026-01-01..2026-02-15"}},
	} {
		ws, err := Split(1, 1, c.periodicity, day("2026-01-01"), day("2026-02-15"), c.maxPoints)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, w := range ws {
			got = append(got, w.Start+".."+w.End)
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%s: windows %v, want %v", c.periodicity, got, c.want)
		}
		checkCover(t, ws, "2026-01-01", "2026-02-15", c.maxPoints, 1)
	}
	// Monthly over a month that ends on a Saturday (2026-10-31): the next window starts on
	// the first of the month, not on its first weekday.
	ws, err := Split(1, 1, "monthly", day("2026-10-01"), day("2026-11-30"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].End != "2026-10-31" || ws[1].Start != "2026-11-01" {
		t.Errorf("monthly windows %+v", ws)
	}
}

func TestSplitEdges(t *testing.T) {
	// A universe whose one date is over the budget: one date a window.
	ws, err := Split(1000, 10, "", day("2026-11-23"), day("2026-11-27"), 5000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 5 || ws[0].Dates != 1 || ws[0].Points != 10000 {
		t.Errorf("over-budget dates: %+v", ws)
	}
	// Even windows: 261 weekdays of 2025 in windows of at most 200 are two, of 131 and 130.
	if ws, _ := Split(1, 1, "", day("2025-01-01"), day("2025-12-31"), 200); len(ws) != 2 || ws[0].Dates != 131 || ws[1].Dates != 130 {
		t.Errorf("uneven windows: %+v", ws)
	}
	// A budget larger than the whole range: one window.
	if ws, _ := Split(2, 2, "", day("2025-01-01"), day("2025-12-31"), 1_000_000); len(ws) != 1 || ws[0].Dates != 261 {
		t.Errorf("one window expected: %+v", ws)
	}
	for _, c := range []struct {
		from, to string
		secs     int
		budget   int64
		want     string
	}{
		{"2026-11-28", "2026-11-29", 1, 10, "holds no weekday"},
		{"2026-02-01", "2026-01-01", 1, 10, "is after"},
		{"2000-01-01", "2026-01-01", 1, 1, "more than 5000 windows"},
		{"2026-01-01", "2026-02-01", 0, 10, "nothing to ask for"},
	} {
		_, err := Split(c.secs, 1, "", day(c.from), day(c.to), c.budget)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s..%s: %v, want an error saying %q", c.from, c.to, err, c.want)
		}
	}
}

func TestRequestDifferences(t *testing.T) {
	a := Request{Program: "gethistory", Dataset: "gethistory", SecurityCount: 3, Securities: "s1", FieldCount: 2, Fields: "f1", Options: "o1"}
	if d := a.differences(a); d != "" {
		t.Errorf("a request differs from itself: %s", d)
	}
	b := a
	b.SecurityCount, b.Securities = 4, "s2"
	b.Dataset, b.Options = "gethistory[currency=EUR]", "o2"
	d := a.differences(b)
	for _, want := range []string{"securities (3 then, 4 now)", "request options (stored as gethistory then, gethistory[currency=EUR] now)"} {
		if !strings.Contains(d, want) {
			t.Errorf("differences %q lack %q", d, want)
		}
	}
	if strings.Contains(d, "fields") {
		t.Errorf("differences %q name the fields, which are the same", d)
	}
}
