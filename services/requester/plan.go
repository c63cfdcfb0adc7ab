package requester

import (
	"fmt"

	"github.com/marketpipe/marketpipe/pkg/coverage"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// Group is securities asked over the same dates.
type Group struct {
	Securities []string
	Start, End string // YYYY-MM-DD; empty for a snapshot
}

// maxAskGroups bounds the groups of an incremental run: past it, securities missing different
// ranges are asked in one group over the span of them all, since a vendor request per range
// would cost more in requests than the dates it saves.
const maxAskGroups = 16

// Ask returns the groups a run of s over securities asks the vendor for. For most jobs that is
// one group: the securities over the job's dates. For an incremental gethistory job, given
// what committed runs of its dataset loaded (cov, from coverage.Store's Read), it is only what
// they have not (coverage.Missing): the securities with anything missing, grouped by their
// missing range (coverage.Groups); more than maxAskGroups become one group over their span
// (coverage.Span). None when nothing is missing. `submit --dry-run` shows the same.
func Ask(s *events.Spec, securities []string, cov map[string]coverage.Covered) []Group {
	all := []Group{{Securities: securities, Start: s.Start, End: s.End}}
	// Dates that do not parse are the vendor client's to refuse (the job fails with why).
	dates, bad := coverage.ParseRange(s.Start, s.End)
	if !Incremental(s) || bad != nil {
		return all
	}
	groups := coverage.Groups(coverage.Missing(cov, securities, s.Fields, dates), securities)
	if len(groups) > maxAskGroups {
		missing, span, _ := coverage.Span(groups, securities)
		return []Group{{Securities: missing, Start: span.From.String(), End: span.To.String()}}
	}
	out := make([]Group, len(groups))
	for i, g := range groups {
		out[i] = Group{Securities: g.Securities, Start: g.From.String(), End: g.To.String()}
	}
	return out
}

// Incremental reports whether a run of s asks only for what committed runs have not loaded.
func Incremental(s *events.Spec) bool { return s.Incremental && s.Program == events.GetHistory }

// Plan is the vendor requests of a run: its parts, each a range of Asked (the groups'
// securities one after another: for a job of one group, its resolved universe).
type Plan struct {
	Parts []vendor.PlannedPart
	Asked []string
}

// PlanRequests plans the vendor requests of groups (vendor.Plan of each within maxPoints data
// points a request), numbered across the groups. More than vendor.MaxParts in all, or a group
// that cannot be split, is an error wrapping vendor.ErrUnsplittable.
func PlanRequests(s *events.Spec, groups []Group, maxPoints int64) (Plan, error) {
	var p Plan
	for _, g := range groups {
		pp, err := vendor.Plan(vendor.Shape{Program: s.Program, Securities: len(g.Securities), Fields: len(s.Fields),
			Start: g.Start, End: g.End, Periodicity: s.Periodicity,
			Overrides: len(s.Overrides) > 0 || len(s.SecurityOverrides) > 0}, maxPoints)
		if err != nil {
			return Plan{}, err
		}
		for _, part := range pp {
			part.SecFrom, part.SecTo = part.SecFrom+len(p.Asked), part.SecTo+len(p.Asked)
			p.Parts = append(p.Parts, part)
		}
		p.Asked = append(p.Asked, g.Securities...)
	}
	if len(p.Parts) > vendor.MaxParts {
		return Plan{}, fmt.Errorf("%w: %d vendor requests, more than %d", vendor.ErrUnsplittable, len(p.Parts), vendor.MaxParts)
	}
	return p, nil
}

// Points is the data points the plan asks for in all.
func (p Plan) Points() int64 {
	var n int64
	for _, part := range p.Parts {
		n += part.Points
	}
	return n
}

// Request is part i's vendor request (without its identifier): its securities, fields and
// dates, and the job's options.
func (p Plan) Request(s *events.Spec, i int) vendor.Request {
	part := p.Parts[i]
	return vendor.Request{Title: s.Name, Program: s.Program,
		Securities: p.Asked[part.SecFrom:part.SecTo], Fields: s.Fields[part.FieldFrom:part.FieldTo], Start: part.Start, End: part.End,
		Overrides: s.Overrides, SecurityOverrides: s.SecurityOverrides,
		PricingSource: s.PricingSource, PricingSourceExclusive: s.PricingSourceExclusive,
		Periodicity: s.Periodicity, Currency: s.Currency}
}
