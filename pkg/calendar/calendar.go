// Package calendar knows which days a market trades: the trading calendars a job file names
// (calendar:), used to skip scheduled firings on non-business days and to resolve relative
// dates such as -5b (five business days back).
package calendar

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Default is the calendar of a job file that names none.
const Default = "weekdays"

// Calendar is a market's business days: Monday to Friday, except its holidays.
type Calendar struct {
	Name string
	// Source says where the holiday list comes from.
	Source string
	// holidays are the closed weekdays, as dates in UTC.
	holidays map[time.Time]string
	// from and through bound the years the holiday list covers; zero for weekdays, which has
	// no holidays and no bounds.
	from, through time.Time
}

// ErrOutOfRange is wrapped by the error for a date outside a calendar's holiday data.
var ErrOutOfRange = errors.New("outside the calendar's holiday data")

// Lookup returns the calendar called name (case-insensitive); an empty name is Default.
func Lookup(name string) (*Calendar, error) {
	if name == "" {
		name = Default
	}
	for _, c := range all {
		if strings.EqualFold(c.Name, name) {
			return c, nil
		}
	}
	return nil, fmt.Errorf("unknown calendar %q (known: %s)", name, strings.Join(Names(), ", "))
}

// Names lists the known calendars.
func Names() []string {
	names := make([]string, len(all))
	for i, c := range all {
		names[i] = c.Name
	}
	return names
}

// day is date's calendar day as midnight UTC, whatever its location: a date is the day it is
// where it was taken.
func day(date time.Time) time.Time {
	y, m, d := date.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Covers returns an error wrapping ErrOutOfRange when date is outside the holiday data.
func (c *Calendar) Covers(date time.Time) error {
	if c.from.IsZero() {
		return nil
	}
	d := day(date)
	if d.Before(c.from) || d.After(c.through) {
		return fmt.Errorf("calendar %s: %s is %w (%s to %s; source: %s)", c.Name, d.Format(time.DateOnly),
			ErrOutOfRange, c.from.Format(time.DateOnly), c.through.Format(time.DateOnly), c.Source)
	}
	return nil
}

// IsBusinessDay reports whether the market trades on date's day (in date's location).
func (c *Calendar) IsBusinessDay(date time.Time) (bool, error) {
	if err := c.Covers(date); err != nil {
		return false, err
	}
	d := day(date)
	if wd := d.Weekday(); wd == time.Saturday || wd == time.Sunday {
		return false, nil
	}
	_, closed := c.holidays[d]
	return !closed, nil
}

// Why says why date is not a business day ("Saturday", "Good Friday"); empty when it is one
// or is outside the data.
func (c *Calendar) Why(date time.Time) string {
	d := day(date)
	if wd := d.Weekday(); wd == time.Saturday || wd == time.Sunday {
		return wd.String()
	}
	return c.holidays[d]
}

// BusinessDaysBefore returns the day n business days before date's day (n >= 0; 0 is date's
// day itself, business day or not), as midnight in date's location.
func (c *Calendar) BusinessDaysBefore(date time.Time, n int) (time.Time, error) {
	y, m, dd := date.Date()
	d := time.Date(y, m, dd, 0, 0, 0, 0, date.Location())
	for i := 0; i < n; {
		d = d.AddDate(0, 0, -1)
		ok, err := c.IsBusinessDay(d)
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			i++
		}
	}
	return d, nil
}

// newCalendar builds a calendar from holiday lines "YYYY-MM-DD name", covering whole years
// from first to last.
func newCalendar(name, source string, first, last int, lines string) *Calendar {
	c := &Calendar{Name: name, Source: source, holidays: map[time.Time]string{},
		from: time.Date(first, 1, 1, 0, 0, 0, 0, time.UTC), through: time.Date(last, 12, 31, 0, 0, 0, 0, time.UTC)}
	for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
		l = strings.TrimSpace(l)
		date, what, _ := strings.Cut(l, " ")
		d, err := time.Parse(time.DateOnly, date)
		if err != nil || d.Before(c.from) || d.After(c.through) {
			panic(fmt.Sprintf("calendar %s: bad holiday line %q", name, l))
		}
		c.holidays[d] = strings.TrimSpace(what)
	}
	return c
}

var all = []*Calendar{
	{Name: Default, Source: "Monday to Friday, no holidays"},
	xnys,
	xlon,
}

// Holidays returns the calendar's holidays between from and to (inclusive), sorted.
func (c *Calendar) Holidays(from, to time.Time) []time.Time {
	var out []time.Time
	for d := range c.holidays {
		if !d.Before(day(from)) && !d.After(day(to)) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}
