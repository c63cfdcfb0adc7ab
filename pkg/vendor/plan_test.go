package vendor

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// checkParts checks that parts cover the job's securities × fields × dates exactly once, each
// within the limits and the budget, with the points of Points.
func checkParts(t *testing.T, s Shape, maxPoints int64, parts []PlannedPart) {
	t.Helper()
	universe := MaxUniverse
	if s.Overrides {
		universe = MaxUniverseWithOverrides
	}
	nf, nd := max(s.Fields, 1), 1
	dateIndex := map[string]int{}
	if s.Program == ProgramGetHistory {
		for i, p := range HistoryPeriods(s.Start, s.End, s.Periodicity) {
			dateIndex[p.Last.Format(time.DateOnly)] = i
		}
		nd = len(dateIndex)
	}
	asked := make([]int8, s.Securities*nf*nd)
	var total int64
	for i, p := range parts {
		if n := p.SecTo - p.SecFrom; n < 1 || n > universe {
			t.Errorf("part %d: %d securities, limit %d", i, n, universe)
		}
		if n := p.FieldTo - p.FieldFrom; n > MaxFieldList || (s.Fields > 0 && n < 1) {
			t.Errorf("part %d: %d fields", i, n)
		}
		if maxPoints > 0 && p.Points > maxPoints {
			t.Errorf("part %d: %d points, budget %d", i, p.Points, maxPoints)
		}
		if want := Points(s.Program, p.SecTo-p.SecFrom, p.FieldTo-p.FieldFrom, p.Start, p.End, s.Periodicity); p.Points != want {
			t.Errorf("part %d: %d points, Points says %d", i, p.Points, want)
		}
		total += p.Points
		dates := []int{0}
		if s.Program == ProgramGetHistory {
			dates = nil
			for _, per := range HistoryPeriods(p.Start, p.End, s.Periodicity) {
				d, ok := dateIndex[per.Last.Format(time.DateOnly)]
				if !ok {
					t.Fatalf("part %d: period ending %s is not one of the job's", i, per.Last.Format(time.DateOnly))
				}
				dates = append(dates, d)
			}
		}
		for sec := p.SecFrom; sec < p.SecTo; sec++ {
			for f := p.FieldFrom; f < max(p.FieldTo, p.FieldFrom+1); f++ {
				for _, d := range dates {
					asked[(sec*nf+f)*nd+d]++
				}
			}
		}
	}
	if want := Points(s.Program, s.Securities, s.Fields, s.Start, s.End, s.Periodicity); total != want {
		t.Errorf("parts total %d points, the job %d", total, want)
	}
	for i, n := range asked {
		if n != 1 {
			t.Fatalf("security %d field %d date %d asked %d times", i/nd/nf, i/nd%nf, i%nd, n)
		}
	}
}

func TestPlanUniverseLimit(t *testing.T) {
	s := Shape{Program: ProgramGetData, Securities: 100_000, Fields: 10}
	parts, err := Plan(s, 10_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 || parts[0].SecTo-parts[0].SecFrom != 50_000 {
		t.Fatalf("100,000 securities: %+v, want two balanced parts of 50,000", parts)
	}
	checkParts(t, s, 10_000_000, parts)

	s.Overrides = true
	parts, err = Plan(s, 10_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 5 {
		t.Fatalf("100,000 securities with overrides: %d parts, want 5 of 20,000", len(parts))
	}
	checkParts(t, s, 10_000_000, parts)
}

func TestPlanFieldLimit(t *testing.T) {
	s := Shape{Program: ProgramGetData, Securities: 10, Fields: 500}
	parts, err := Plan(s, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 || parts[0].FieldTo != 250 || parts[1].FieldFrom != 250 || parts[1].FieldTo != 500 {
		t.Fatalf("500 fields: %+v, want two lists of 250", parts)
	}
	checkParts(t, s, 0, parts)
}

func TestPlanLongHistorySmallBudget(t *testing.T) {
	// 20 years of daily history of one security and two fields, 1,000 points a request: the
	// fields are split, then the dates.
	s := Shape{Program: ProgramGetHistory, Securities: 1, Fields: 2, Start: "2006-01-01", End: "2025-12-31"}
	parts, err := Plan(s, 1000)
	if err != nil {
		t.Fatal(err)
	}
	dates := HistoryDates(s.Start, s.End, "")
	if want := 2 * ((dates + 999) / 1000); len(parts) != want {
		t.Fatalf("%d parts, want %d (2 fields × date ranges of 1,000)", len(parts), want)
	}
	if parts[0].Start != s.Start || parts[5].End != s.End || parts[1].Start <= parts[0].End {
		t.Errorf("date ranges: %+v", parts[:6])
	}
	checkParts(t, s, 1000, parts)

	// Securities are split before anything else.
	s = Shape{Program: ProgramGetHistory, Securities: 300, Fields: 5, Start: "2025-01-01", End: "2025-12-31"}
	parts, err = Plan(s, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if p.FieldFrom != 0 || p.FieldTo != 5 || p.Start != s.Start || p.End != s.End {
			t.Fatalf("part %+v: want every field and date, the securities split", p)
		}
	}
	checkParts(t, s, 100_000, parts)

	// Weekly periods are kept whole.
	s = Shape{Program: ProgramGetHistory, Securities: 2, Fields: 1, Start: "2020-01-01", End: "2025-12-31", Periodicity: "weekly"}
	parts, err = Plan(s, 100)
	if err != nil {
		t.Fatal(err)
	}
	checkParts(t, s, 100, parts)
}

func TestPlanOnePartWhenItFits(t *testing.T) {
	for _, s := range []Shape{
		{Program: ProgramGetData, Securities: 80_000, Fields: 450},
		{Program: ProgramGetHistory, Securities: 50, Fields: 5, Start: "2025-01-01", End: "2025-12-31"},
		{Program: ProgramGetActions, Securities: 10, Start: "2025-01-01", End: "2025-12-31"},
	} {
		parts, err := Plan(s, 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		want := PlannedPart{SecTo: s.Securities, FieldTo: s.Fields, Start: s.Start, End: s.End,
			Points: Points(s.Program, s.Securities, s.Fields, s.Start, s.End, "")}
		if len(parts) != 1 || parts[0] != want {
			t.Errorf("%+v: %+v, want one part %+v", s, parts, want)
		}
	}
}

func TestPlanDeterministic(t *testing.T) {
	s := Shape{Program: ProgramGetHistory, Securities: 777, Fields: 600, Start: "2024-03-01", End: "2025-02-28", Overrides: false}
	a, err := Plan(s, 5_000_000)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Plan(s, 5_000_000)
	if !reflect.DeepEqual(a, b) || len(a) < 2 {
		t.Fatalf("two plans of one job differ or did not split: %d and %d parts", len(a), len(b))
	}
	checkParts(t, s, 5_000_000, a)
}

func TestPlanRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		s   Shape
		max int64
	}{
		"too many parts": {Shape{Program: ProgramGetHistory, Securities: 5000, Fields: 10, Start: "2025-01-01", End: "2025-12-31"}, 1000},
		"no securities":  {Shape{Program: ProgramGetData, Fields: 1}, 10},
	} {
		if _, err := Plan(c.s, c.max); !errors.Is(err, ErrUnsplittable) {
			t.Errorf("%s: %v, want ErrUnsplittable", name, err)
		}
	}
}

func TestHistoryDates(t *testing.T) {
	for _, c := range []struct {
		start, end, period string
		want               int
	}{
		{"2025-01-01", "2025-01-31", "", 23},
		{"2025-01-04", "2025-01-05", "", 0},
		{"2025-01-01", "2025-06-30", "weekly", 27},
		{"2025-01-01", "2025-12-31", "monthly", 12},
		{"2025-01-01", "2025-12-31", "quarterly", 4},
		{"2024-06-01", "2025-12-31", "yearly", 2},
		{"2025-02-01", "2025-01-01", "", 0},
	} {
		if got := HistoryDates(c.start, c.end, c.period); got != c.want {
			t.Errorf("HistoryDates(%s, %s, %q) = %d, want %d", c.start, c.end, c.period, got, c.want)
		}
	}
}
