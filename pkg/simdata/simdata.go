// Package simdata generates deterministic, seeded Bloomberg Data License reply files and the
// normalized observations they hold.
//
// The vendor simulator (services/vendorsim) serves WriteReply's output as the vendor's file, and
// tests compare what the pipeline loaded with Observations: both are pure functions of the
// request, the run date and a seed, so any stage can recompute what a file must contain without
// storing it. Values depend only on (seed, security, field, date), so the same key carries the
// same value in a getdata and a gethistory file, and a replay sees the same numbers.
//
// WriteReplyLayout writes the same data in every layout the reader supports (Layout: getdata
// with COLUMNHEADER, SECDESLENGTH padding, another DELIMITER, each DATEFORMAT; gethistory
// vertical, horizontal and REST with a pricing source; CRLF and comment lines), and the layout
// never changes the observations. Field mnemonics choose the kind of cells (numbers, text, times,
// dates, bulk cells, FLD UNKNOWN: see cells.go), a share of cells are markers (N.A., N.S., N.D.,
// blank), and ReturnCode gives the securities that come back with a non-zero return code.
//
// Corporate actions (program GetActions, an events.Spec with Program "getactions" and a date
// range) are written in the getactions layout: 21 fixed columns then FIELD|VALUE pairs, 4
// columns for return codes 300 and 400. See GetActions for what an actions spec asks and what
// the simulated vendor answers.
package simdata

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// BadPrefix marks a security the simulated vendor does not know: it comes back with return code
// BadRC and no values, like Bloomberg's RC 10 "unknown security". See ReturnCode for others.
const (
	BadPrefix = "BAD"
	BadRC     = 10
)

// Marker written for a value that is not available.
const NotAvailable = "N.A."

// ErrSpec is returned (wrapped) for a request that cannot be turned into a reply file.
var ErrSpec = errors.New("simdata: invalid spec")

// Value returns the value of a numeric field for security on date under seed, and false when
// the cell is not a number: a marker (N.A., N.S., N.D., blank), or a field whose mnemonic
// makes it text, a date, a bulk cell or an unknown field (see ReturnCode and the package's field
// kinds). Observations gives every cell's normalized value.
//
// The float64 is exactly float64(n)/10000 for an integer n, so its 4-decimal text form parses
// back to the same float64.
func Value(seed uint64, security, field string, date obs.Date) (float64, bool) {
	if kindOf(field) != kindNumber {
		return 0, false
	}
	sh, fh := hashString(security), hashString(field)
	h := cellHash(pairHash(seed, sh, fh), date)
	if cellMarker(h) != noMarker {
		return 0, false
	}
	n := newNumbers([]string{field}, []cellKind{kindNumber}, nil)
	n.setSecurity(seed, security, sh, []uint64{fh})
	return float64(n.units(0, date)) / 10000, true
}

// IsBad reports whether security is one the simulated vendor rejects with BadRC.
func IsBad(security string) bool { return strings.HasPrefix(security, BadPrefix) }

// Dates returns the dates a reply for s holds: runDate for getdata, the weekdays (Monday to
// Friday) from Start to End inclusive for gethistory and the dates actions may have for
// getactions (GetActions).
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
	start, end obs.Date // gethistory and getactions only
	dates      []obs.Date
	actions    *actionPlan // getactions only
	secHash    []uint64
	fieldHash  []uint64
	opts       events.Options // what the request asked besides securities, fields and dates
}

func compile(s events.Spec, runDate obs.Date) (*plan, error) {
	p := &plan{program: s.Program, runDate: runDate, fields: s.Fields, opts: s.Options}
	switch s.Program {
	case events.GetData:
		p.dates = []obs.Date{runDate}
	case events.GetHistory, GetActions:
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
		p.dates = periodEnds(weekdays(p.start, p.end), s.Periodicity)
	default:
		return nil, fmt.Errorf("%w: unknown program %q (want %s, %s or %s)", ErrSpec, s.Program,
			events.GetData, events.GetHistory, GetActions)
	}
	if s.Program == GetActions {
		p.actions = newActionPlan(s.Fields)
	}
	p.securities = make([]string, len(s.Securities))
	p.secHash = make([]uint64, len(s.Securities))
	for i, sec := range s.Securities {
		sec = strings.TrimSpace(sec)
		if sec == "" || strings.ContainsAny(sec, "|\r\n") || sec[0] == '#' {
			// A row starting with '#' would be a comment line to every reader.
			return nil, fmt.Errorf("%w: security %q: empty, starts with '#', or contains '|' or a line break", ErrSpec, sec)
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

// RevisedSeed returns the seed of revision rev of the data seed selects: revision 0 is seed
// itself, and every other revision changes every value, as a vendor's correction would.
func RevisedSeed(seed, rev uint64) uint64 {
	if rev == 0 {
		return seed
	}
	return seed ^ rev*0x9e3779b97f4a7c15
}

// Observations calls fn with each observation the reply file for s holds, normalized as
// pkg/dlformat reads them (obs.Observation), security by security, then field by
// field, then date by date: the order of getdata and vertical gethistory files. Horizontal and
// REST files hold the same observations, security by security, then date by date: the layout
// changes the order, never the records. A security with a non-zero return code (ReturnCode)
// gives one record (Field "", Kind Null, Flag "RC=<code>", Date runDate), where its first row or
// block is; in a gethistory reply without fields it gives nothing.
//
// For a getactions spec (GetActions) they are, security by security and action by action in
// date order, "<MNEMONIC>.ACTION_ID" and "<MNEMONIC>.FLAG" (text), then one "<MNEMONIC>.<FIELD>"
// record per FIELD|VALUE pair, dated by the action's date; a security with a non-zero return
// code gives its one RC record.
//
// fn receives the same *obs.Observation each time, overwritten: it must copy what it keeps.
// An error from fn stops the walk and is returned as is.
func Observations(s events.Spec, runDate obs.Date, seed uint64, fn func(*obs.Observation) error) error {
	p, err := compile(s, runDate)
	if err != nil {
		return err
	}
	if p.actions != nil {
		return actionObservations(p, seed, fn)
	}
	kinds := make([]cellKind, len(p.fields))
	for j, f := range p.fields {
		kinds[j] = kindOf(f)
	}
	var (
		o       obs.Observation
		scratch = make([]byte, 0, 256)
		nums    = newNumbers(p.fields, kinds, p.dates)
	)
	nums.opts = &p.opts
	for i, sec := range p.securities {
		if rc := ReturnCode(sec); rc != 0 {
			// gethistory writes one empty block (or row) per field; with no fields there is
			// nothing in the file, so nothing to report.
			if p.program == events.GetHistory && len(p.fields) == 0 {
				continue
			}
			o = obs.Observation{Security: sec, Date: runDate, Kind: obs.Null, Flag: "RC=" + strconv.Itoa(rc)}
			if err := fn(&o); err != nil {
				return err
			}
			continue
		}
		nums.setSecurity(seed, sec, p.secHash[i], p.fieldHash)
		for j, f := range p.fields {
			base := pairHash(seed, p.secHash[i], p.fieldHash[j])
			k := kinds[j]
			for _, d := range p.dates {
				o = obs.Observation{Security: sec, Field: f, Date: d}
				if h := cellHash(base, d); k == kindNumber && cellMarker(h) == noMarker {
					o.Kind, o.Num = obs.Number, float64(nums.units(j, d))/10000
				} else {
					scratch = observe(&o, k, h, scratch)
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

// naOneIn sets the share of marker cells: one in naOneIn.
const naOneIn = 37
