package jobspec

import (
	"errors"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"
)

// NextRun returns the first scheduled time strictly after after, in the schedule's time zone.
// It reports false when the job has no schedule (or one that no longer parses, for a File not
// built by Parse) or the schedule never fires again.
func (f *File) NextRun(after time.Time) (time.Time, bool) {
	if f.Schedule == "" {
		return time.Time{}, false
	}
	sched, err := cron.ParseStandard(f.Schedule)
	if err != nil {
		return time.Time{}, false
	}
	loc, err := location(f.TZ)
	if err != nil {
		return time.Time{}, false
	}
	next := sched.Next(after.In(loc))
	if next.IsZero() {
		return time.Time{}, false
	}
	return next, true
}

// location loads an IANA zone; empty means UTC. "Local" is refused: a schedule must not change
// meaning with the host it runs on.
func location(name string) (*time.Location, error) {
	switch name {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, errors.New("Local depends on the host; name the zone")
	}
	return time.LoadLocation(name)
}

func (p *parser) schedule(sv, tv *yaml.Node) {
	loc := time.UTC
	if tv != nil {
		s, ok := p.scalar("tz", tv)
		if ok {
			l, err := location(s)
			if err != nil {
				p.errorf(tv, "tz", "%s is not a time zone (an IANA name such as Europe/London)", show(s))
			} else {
				loc = l
				p.f.TZ = s
			}
		}
		if sv == nil && !p.f.Start.Relative() && !p.f.End.Relative() {
			p.errorf(p.keys["tz"], "tz", "only used with schedule or relative dates (today, -Nd, -Nb)")
		}
	}
	if sv == nil {
		return
	}
	s, ok := p.scalar("schedule", sv)
	if !ok {
		return
	}
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		p.errorf(sv, "schedule", "give the time zone with tz:, not in the schedule")
		return
	}
	if strings.HasPrefix(s, "@every") {
		p.errorf(sv, "schedule", "%s: use a cron expression or @hourly, @daily, @weekly, @monthly (an interval has no time zone)", show(s))
		return
	}
	sched, err := cron.ParseStandard(s)
	if err != nil {
		p.errorf(sv, "schedule", "%s is not a cron schedule (minute hour day-of-month month day-of-week): %v", show(s), err)
		return
	}
	if sched.Next(time.Now().In(loc)).IsZero() {
		p.errorf(sv, "schedule", "%s never fires", show(s))
		return
	}
	p.f.Schedule = s
}

// show prints s bare when that is unambiguous, quoted otherwise.
