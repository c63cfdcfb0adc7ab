package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser reads the server's cron dialect: six fields (seconds first) or a descriptor. The
// server's parser (nats-server's cron.go) derives from the same robfig/cron code, so both
// agree on every firing time.
var parser = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// serverCron turns a job file's schedule (five fields, minute first, or a descriptor such as
// @daily) into the server's: six fields, firing at second 0. A six-field expression is kept.
func serverCron(expr string) string {
	if strings.HasPrefix(expr, "@") || len(strings.Fields(expr)) == 6 {
		return expr
	}
	return "0 " + expr
}

// timing is a schedule's cron in its zone.
type timing struct {
	sched cron.Schedule
	loc   *time.Location
}

func newTiming(expr, tz string) (timing, error) {
	loc := time.UTC
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			return timing{}, fmt.Errorf("tz %q: %w", tz, err)
		}
		loc = l
	}
	s, err := parser.Parse(serverCron(expr))
	if err != nil {
		return timing{}, fmt.Errorf("schedule %q: %w", expr, err)
	}
	return timing{s, loc}, nil
}

// next is the first firing strictly after t.
func (c timing) next(t time.Time) time.Time { return c.sched.Next(t.In(c.loc)) }

// previous is the last firing strictly before t, or the zero time when there is none in the
// four years before it. The server says when a firing's schedule fires next
// (Nats-Schedule-Next), not which time it fired for: that is the firing before the next, also
// when the firing was late (after an outage the server fires once, for the latest missed time,
// and computes the next from now).
func (c timing) previous(t time.Time) time.Time {
	for back := time.Minute; back <= 4*366*24*time.Hour; back *= 2 {
		f := c.next(t.Add(-back))
		if f.IsZero() || !f.Before(t) {
			continue
		}
		for {
			n := c.next(f)
			if n.IsZero() || !n.Before(t) {
				return f
			}
			f = n
		}
	}
	return time.Time{}
}

// between counts the firings strictly between a and b, at most limit.
func (c timing) between(a, b time.Time, limit int) int {
	n := 0
	for f := c.next(a); !f.IsZero() && f.Before(b) && n < limit; f = c.next(f) {
		n++
	}
	return n
}
