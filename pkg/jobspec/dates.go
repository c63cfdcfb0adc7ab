package jobspec

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/marketpipe/marketpipe/pkg/calendar"
	"github.com/marketpipe/marketpipe/pkg/events"
)

// maxRelativeDays bounds -Nd and -Nb: twenty years back is more than any vendor serves.
const maxRelativeDays = 20 * 366

// relativeRE is today, -Nd (calendar days back) or -Nb (business days back on the calendar).
var relativeRE = regexp.MustCompile(`^(today|-([0-9]{1,5})([db]))$`)

// Date is a job file's start: or end:, absolute (2026-01-02) or relative to the day the job
// runs (today, -3d, -5b).
type Date struct {
	// Fixed is the date when it is absolute.
	Fixed string
	// Back counts days back from today, in Unit: 'd' calendar days, 'b' business days. Today is
	// 0 days back.
	Back int
	Unit byte
}

// Relative reports whether d depends on the day the job runs.
func (d Date) Relative() bool { return d.Fixed == "" && d.Unit != 0 }

// String gives d as written in a job file.
func (d Date) String() string {
	switch {
	case d.Fixed != "":
		return d.Fixed
	case d.Unit == 0:
		return ""
	case d.Back == 0:
		return "today"
	}
	return "-" + strconv.Itoa(d.Back) + string(d.Unit)
}

// resolve gives d's date for a run on day (a time in the job's zone), on cal for business days.
func (d Date) resolve(day time.Time, cal *calendar.Calendar) (string, error) {
	switch {
	case d.Fixed != "" || d.Unit == 0:
		return d.Fixed, nil
	case d.Unit == 'b':
		t, err := cal.BusinessDaysBefore(day, d.Back)
		if err != nil {
			return "", err
		}
		return t.Format(time.DateOnly), nil
	}
	return day.AddDate(0, 0, -d.Back).Format(time.DateOnly), nil
}

func (p *parser) dates(start, end *yaml.Node) {
	prog := p.f.Program
	if prog == events.GetData {
		if start != nil {
			p.errorf(p.keys["start"], "start", "only gethistory takes a date range")
		}
		if end != nil {
			p.errorf(p.keys["end"], "end", "only gethistory takes a date range")
		}
		return
	}
	parse := func(field string, v *yaml.Node) (Date, bool) {
		if v == nil {
			if prog == events.GetHistory || prog == events.GetActions {
				p.errorf(nil, field, "missing (%s needs start and end)", prog)
			}
			return Date{}, false
		}
		s, ok := p.scalar(field, v)
		if !ok {
			return Date{}, false
		}
		if m := relativeRE.FindStringSubmatch(s); m != nil {
			if m[1] == "today" {
				return Date{Unit: 'd'}, true
			}
			n, _ := strconv.Atoi(m[2])
			if n > maxRelativeDays {
				p.errorf(v, field, "%s goes back more than %d days", s, maxRelativeDays)
				return Date{}, false
			}
			return Date{Back: n, Unit: m[3][0]}, true
		}
		if !dateRE.MatchString(s) {
			p.errorf(v, field, "%s is not a date (YYYY-MM-DD, today, -Nd for N days back or -Nb for N business days back)", show(s))
			return Date{}, false
		}
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			p.errorf(v, field, "%s is not a real date", s)
			return Date{}, false
		}
		return Date{Fixed: s}, true
	}
	s, okS := parse("start", start)
	e, okE := parse("end", end)
	if okS && okE && after(s, e) {
		p.errorf(start, "start", "%s is after end %s", s, e)
		return
	}
	if okS && okE && (prog == events.GetHistory || prog == events.GetActions) {
		p.f.Start, p.f.End = s, e
	}
}

// after reports whether start is surely after end: both absolute, or both back in one unit.
func after(start, end Date) bool {
	switch {
	case !start.Relative() && !end.Relative():
		return start.Fixed > end.Fixed
	case start.Relative() && end.Relative() && (start.Unit == end.Unit || start.Back == 0 || end.Back == 0):
		return start.Back < end.Back
	}
	return false
}

// calendarKey validates calendar:.
func (p *parser) calendarKey(v *yaml.Node) {
	if v == nil {
		return
	}
	s, ok := p.scalar("calendar", v)
	if !ok {
		return
	}
	c, err := calendar.Lookup(s)
	if err != nil {
		p.errorf(v, "calendar", "%v", err)
		return
	}
	p.f.Calendar = c.Name
}

// SpecAt returns what the job asks of the vendor for a run at at: relative dates are resolved
// on the day at is in the job's tz, business days on its calendar. It fails when the calendar's
// holiday data does not cover the days needed. The slices are copies, so the event can be
// changed without changing f.
func (f *File) SpecAt(at time.Time) (events.Spec, error) {
	spec := f.spec()
	if !f.Start.Relative() && !f.End.Relative() {
		return spec, nil
	}
	loc, err := location(f.TZ)
	if err != nil {
		return events.Spec{}, fmt.Errorf("job %s: tz: %w", f.Name, err)
	}
	cal, err := calendar.Lookup(f.Calendar)
	if err != nil {
		return events.Spec{}, fmt.Errorf("job %s: %w", f.Name, err)
	}
	day := at.In(loc)
	if spec.Start, err = f.Start.resolve(day, cal); err == nil {
		spec.End, err = f.End.resolve(day, cal)
	}
	if err != nil {
		return events.Spec{}, fmt.Errorf("job %s: dates for a run on %s: %w", f.Name, day.Format(time.DateOnly), err)
	}
	return spec, nil
}
