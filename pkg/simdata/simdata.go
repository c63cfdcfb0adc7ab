// Package simdata generates deterministic, seeded Bloomberg Data License reply files and the
// normalized observations they hold.
//
// The vendor simulator (services/vendorsim) serves WriteReply's output as the vendor's file, and
// tests compare what the pipeline loaded with Observations: both are pure functions of the
// request, the run date and a seed, so any stage can recompute what a file must contain without
// storing it. Values depend only on (seed, security, field, date), so the same key carries the
// same value in a getdata and a gethistory file, and a replay sees the same numbers.
package simdata

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// BadPrefix marks a security the simulated vendor does not know: it comes back with return code
// BadRC and no values, like Bloomberg's RC 10 "unknown security".
const (
	BadPrefix = "BAD"
	BadRC     = 10
)

// Marker written for a value that is not available.
const NotAvailable = "N.A."

// ErrSpec is returned (wrapped) for a request that cannot be turned into a reply file.
var ErrSpec = errors.New("simdata: invalid spec")

// Value returns the value of field for security on date under seed, and false when the
// simulated vendor has no value for it (the cell is written as N.A.).
//
// The float64 is exactly float64(n)/10000 for an integer n, so its 4-decimal text form parses
// back to the same float64.
func Value(seed uint64, security, field string, date obs.Date) (float64, bool) {
	units, ok := cellUnits(pairHash(seed, hashString(security), hashString(field)), date)
	return float64(units) / 10000, ok
}

// IsBad reports whether security is one the simulated vendor rejects with BadRC.
func IsBad(security string) bool { return strings.HasPrefix(security, BadPrefix) }

// Dates returns the dates a reply for s holds: runDate for getdata, the weekdays (Monday to
// Friday) from Start to End inclusive for gethistory.
func Dates(s events.Spec, runDate obs.Date) ([]obs.Date, error) {
	p, err := compile(s, runDate)
	if err != nil {
		return nil, err
	}
	return p.dates, nil
}

// plan is a validated spec with everything the writers need precomputed once.
type plan struct {
	program    string
	securities []string // trimmed
	fields     []string
	runDate    obs.Date
	start, end obs.Date // gethistory only
	dates      []obs.Date
	secHash    []uint64
	fieldHash  []uint64
}

func compile(s events.Spec, runDate obs.Date) (*plan, error) {
	p := &plan{program: s.Program, runDate: runDate, fields: s.Fields}
	switch s.Program {
	case events.GetData:
		p.dates = []obs.Date{runDate}
	case events.GetHistory:
		var err error
		if p.start, err = obs.ParseDate(s.Start); err != nil {
			return nil, fmt.Errorf("%w: start: %v", ErrSpec, err)
		}
		if p.end, err = obs.ParseDate(s.End); err != nil {
			return nil, fmt.Errorf("%w: end: %v", ErrSpec, err)
		}
		if p.end < p.start {
			return nil, fmt.Errorf("%w: end %s before start %s", ErrSpec, s.End, s.Start)
		}
		p.dates = weekdays(p.start, p.end)
	default:
		return nil, fmt.Errorf("%w: unknown program %q (want %s or %s)", ErrSpec, s.Program,
			events.GetData, events.GetHistory)
	}
	p.securities = make([]string, len(s.Securities))
	p.secHash = make([]uint64, len(s.Securities))
	for i, sec := range s.Securities {
		sec = strings.TrimSpace(sec)
		if sec == "" || strings.ContainsAny(sec, "|\r\n") {
			return nil, fmt.Errorf("%w: security %q: empty or contains '|' or a line break", ErrSpec, sec)
		}
		p.securities[i] = sec
		p.secHash[i] = hashString(sec)
	}
	p.fieldHash = make([]uint64, len(s.Fields))
	for i, f := range s.Fields {
		if f == "" || strings.ContainsAny(f, "|\r\n ") {
			return nil, fmt.Errorf("%w: field %q: empty or contains '|', a space or a line break", ErrSpec, f)
		}
		p.fieldHash[i] = hashString(f)
	}
	return p, nil
}

// weekdays returns the Monday-to-Friday dates from start to end inclusive.
func weekdays(start, end obs.Date) []obs.Date {
	var ds []obs.Date
	for d := start; d <= end; d++ {
		if isWeekday(d) {
			ds = append(ds, d)
		}
	}
	return ds
}

// isWeekday works on the day count directly: 1970-01-01 (day 0) was a Thursday.
func isWeekday(d obs.Date) bool {
	wd := time.Weekday((int64(d)%7 + 7 + 4) % 7)
	return wd != time.Saturday && wd != time.Sunday
}

// Observations calls fn with each observation the reply file for s holds, normalized as
// DESIGN.md describes and in file order: security by security, then field by field, then date by
// date (the vertical gethistory layout's order, and getdata's, whose rows are per security). A
// security with a non-zero return code gives one record
// (Field "", Kind Null, Flag "RC=10", Date runDate), where its first row or block is.
//
// fn receives the same *obs.Observation each time, overwritten: it must copy what it keeps.
// An error from fn stops the walk and is returned as is.
func Observations(s events.Spec, runDate obs.Date, seed uint64, fn func(*obs.Observation) error) error {
	p, err := compile(s, runDate)
	if err != nil {
		return err
	}
	var o obs.Observation
	rcFlag := fmt.Sprintf("RC=%d", BadRC)
	for i, sec := range p.securities {
		if IsBad(sec) {
			// gethistory writes one empty block per field; with no fields there is nothing in
			// the file, so nothing to report.
			if p.program == events.GetHistory && len(p.fields) == 0 {
				continue
			}
			o = obs.Observation{Security: sec, Date: runDate, Kind: obs.Null, Flag: rcFlag}
			if err := fn(&o); err != nil {
				return err
			}
			continue
		}
		for j, f := range p.fields {
			base := pairHash(seed, p.secHash[i], p.fieldHash[j])
			for _, d := range p.dates {
				o = obs.Observation{Security: sec, Field: f, Date: d}
				if units, ok := cellUnits(base, d); ok {
					o.Kind, o.Num = obs.Number, float64(units)/10000
				} else {
					o.Kind, o.Flag = obs.Null, NotAvailable
				}
				if err := fn(&o); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Hashing: FNV-1a for strings, then splitmix64 finalizers to mix seed, security, field and date.
// The per-(security, field) part is computed once per block, leaving a multiply and a few shifts
// per cell.

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
	golden    = 0x9e3779b97f4a7c15
)

func hashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func mix(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	z ^= z >> 31
	return z
}

func pairHash(seed, sec, field uint64) uint64 {
	return mix(mix(seed^golden^sec) + field*golden)
}

// naOneIn is the share of N.A. cells: one in naOneIn.
const naOneIn = 37

// cellUnits returns the cell's value in units of 1/10000 (1.0000 to 9999.9999), or false for an
// N.A. cell.
func cellUnits(base uint64, d obs.Date) (int64, bool) {
	h := mix(base + uint64(uint32(d))*golden)
	if h%naOneIn == 0 {
		return 0, false
	}
	return int64((h>>16)%99_990_000) + 10_000, true
}
