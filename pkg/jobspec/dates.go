package jobspec

import (
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
	"gopkg.in/yaml.v3"
)

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
	parse := func(field string, v *yaml.Node) (string, time.Time, bool) {
		if v == nil {
			if prog == events.GetHistory {
				p.errorf(nil, field, "missing (gethistory needs start and end)")
			}
			return "", time.Time{}, false
		}
		s, ok := p.scalar(field, v)
		if !ok {
			return "", time.Time{}, false
		}
		if !dateRE.MatchString(s) {
			p.errorf(v, field, "%s is not a date (YYYY-MM-DD)", show(s))
			return "", time.Time{}, false
		}
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			p.errorf(v, field, "%s is not a real date", s)
			return "", time.Time{}, false
		}
		return s, t, true
	}
	s, st, okS := parse("start", start)
	e, et, okE := parse("end", end)
	if okS && okE && st.After(et) {
		p.errorf(start, "start", "%s is after end %s", s, e)
		return
	}
	if okS && okE && prog == events.GetHistory {
		p.f.Start, p.f.End = s, e
	}
}
