// Package coverage keeps what committed history runs have loaded, so that an incremental run
// (a job file's incremental: true) asks the vendor only for what is missing.
//
// Coverage is kept per dataset (events.Spec.Dataset: the program and the options that change
// what its values mean), security and field, as merged ranges of the dates the runs *asked
// for*, not of the dates that came back: a holiday or a day a security did not trade has no
// row, and would otherwise be missing for ever. It lives in the key-value bucket
// events.CoverageBucket, one key per dataset and security (Key), which the loader's complete
// stage extends when it commits a gethistory run (Store.Record) and the requester reads for an
// incremental job (Store.Read, then Missing and Groups).
package coverage

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// Range is the dates From to To, both included.
type Range struct{ From, To obs.Date }

// Days is how many calendar days r holds.
func (r Range) Days() int { return int(r.To-r.From) + 1 }

func (r Range) String() string { return r.From.String() + ".." + r.To.String() }

// MarshalJSON writes r as ["2025-01-01","2025-06-30"], readable with `nats kv get`.
func (r Range) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]string{r.From.String(), r.To.String()})
}

// UnmarshalJSON reads MarshalJSON's form.
func (r *Range) UnmarshalJSON(b []byte) error {
	var s [2]string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("date range: %w", err)
	}
	from, err := obs.ParseDate(s[0])
	if err != nil {
		return err
	}
	to, err := obs.ParseDate(s[1])
	if err != nil {
		return err
	}
	if to < from {
		return fmt.Errorf("date range %s..%s ends before it starts", s[0], s[1])
	}
	*r = Range{from, to}
	return nil
}

// ParseRange reads a job's start and end (YYYY-MM-DD).
func ParseRange(start, end string) (Range, error) {
	from, err := obs.ParseDate(start)
	if err != nil {
		return Range{}, err
	}
	to, err := obs.ParseDate(end)
	if err != nil {
		return Range{}, err
	}
	if to < from {
		return Range{}, fmt.Errorf("date range %s..%s ends before it starts", start, end)
	}
	return Range{from, to}, nil
}

// Ranges are sorted, disjoint and not adjacent ranges: the normal form Add and Union keep.
type Ranges []Range

// Add returns rs with r added, merged with the ranges it overlaps or touches. rs is not changed.
func (rs Ranges) Add(r Range) Ranges {
	out := make(Ranges, 0, len(rs)+1)
	i := 0
	for ; i < len(rs) && rs[i].To+1 < r.From; i++ {
		out = append(out, rs[i])
	}
	for ; i < len(rs) && rs[i].From <= r.To+1; i++ {
		r.From, r.To = min(r.From, rs[i].From), max(r.To, rs[i].To)
	}
	out = append(out, r)
	return append(out, rs[i:]...)
}

// Union returns the dates in rs or in o.
func (rs Ranges) Union(o Ranges) Ranges {
	out := slices.Clone(rs)
	for _, r := range o {
		out = out.Add(r)
	}
	return out
}

// Normal returns rs in normal form (sorted, merged), whatever order its ranges came in.
func (rs Ranges) Normal() Ranges { return Ranges(nil).Union(rs) }

// Contains reports whether every date of r is in rs.
func (rs Ranges) Contains(r Range) bool { return len(rs.Missing(r)) == 0 }

// Missing returns the dates of r that rs does not hold.
func (rs Ranges) Missing(r Range) Ranges {
	var out Ranges
	from := r.From
	for _, c := range rs {
		if c.To < from {
			continue
		}
		if c.From > r.To {
			break
		}
		if c.From > from {
			out = append(out, Range{from, c.From - 1})
		}
		from = c.To + 1
		if from > r.To {
			return out
		}
	}
	return append(out, Range{from, r.To})
}

// Upto returns the dates of rs up to last, included.
func (rs Ranges) Upto(last obs.Date) Ranges {
	var out Ranges
	for _, r := range rs {
		if r.From > last {
			break
		}
		r.To = min(r.To, last)
		out = append(out, r)
	}
	return out
}

// Dates counts the dates a history request for r asks the vendor for at periodicity (daily
// when empty): vendor.HistoryDates, the count every data point is counted in.
func Dates(r Range, periodicity string) int64 {
	return int64(vendor.HistoryDates(r.From.String(), r.To.String(), periodicity))
}
