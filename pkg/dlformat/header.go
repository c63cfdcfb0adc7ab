package dlformat

import (
	"strconv"
	"strings"
	"time"
)

// Error is returned by NewReader and Reader.Next when a file cannot be read at all: an I/O or
// gzip error, no data section, a data section cut short, an unusable DELIMITER. Lines that are
// merely malformed are rejects, not errors.
type Error struct {
	Line   int64  // 1-based line the problem was found at (0 before the first line)
	Reason string // what is wrong, for people
	Err    error  // the underlying I/O error, if any
}

func (e *Error) Error() string { return "line " + strconv.FormatInt(e.Line, 10) + ": " + e.Reason }

// Unwrap returns the underlying I/O error, so errors.Is(err, gzip.ErrChecksum) and the like work.
func (e *Error) Unwrap() error { return e.Err }

// Pair is one KEY=VALUE header line.
type Pair struct {
	Key, Value string
}

// Header is what a reply file says about itself: its KEY=VALUE lines (those after the data, such
// as TIMEFINISHED, included once read) and its field list.
type Header struct {
	// Pairs are the KEY=VALUE lines in file order, repeats kept. Keys and values have their
	// surrounding spaces trimmed.
	Pairs []Pair
	// Fields are the START-OF-FIELDS mnemonics in request order; when that list is empty they
	// are the names of the column-header row, if the file has one.
	Fields []string
}

// Get returns the value of the first KEY=VALUE line with this key (compared without regard to
// case). The first one, because a repeated TIMESTARTED after the data is not when the data
// started.
func (h Header) Get(key string) (string, bool) {
	for _, p := range h.Pairs {
		if strings.EqualFold(p.Key, key) {
			return p.Value, true
		}
	}
	return "", false
}

// Stats counts what a Reader has done so far.
type Stats struct {
	Lines           int64 // lines read
	Observations    int64 // observations returned by Next
	Rejects         int64 // rejects reported (a line can give several: one per bad bulk cell)
	NFieldsMismatch int64 // rows loaded by the field list although their NFIELDS disagreed
}

// zoneOffsets are the UTC offsets, in hours, of the zone abbreviations reply files write in
// TIMESTARTED. An abbreviation not listed is read as UTC.
var zoneOffsets = map[string]int{
	"UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "BST": 1, "IST": 1, "CET": 1, "CEST": 2, "EET": 2, "EEST": 3,
	"EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
	"JST": 9, "HKT": 8, "SGT": 8, "AEST": 10, "AEDT": 11,
}

// SnapshotTime returns when a snapshot file's data was taken: its first TIMESTARTED (such as
// "Wed Dec 17 11:19:10 EST 2025") in UTC, or, without a readable one, midnight UTC of its
// RUNDATE. It reports false when the header has neither. Two snapshots of one day differ by
// it, so it is part of a snapshot observation's key.
func (h Header) SnapshotTime() (time.Time, bool) {
	if v, ok := h.Get("TIMESTARTED"); ok {
		if t, ok := parseUnixTime(v); ok {
			return t, true
		}
	}
	if v, ok := h.Get("RUNDATE"); ok {
		if t, err := time.Parse("20060102", v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// parseUnixTime reads a TIMESTARTED value: weekday, month name, day, hh:mm:ss, zone
// (optional), year.
func parseUnixTime(v string) (time.Time, bool) {
	f := strings.Fields(v)
	if len(f) < 5 {
		return time.Time{}, false
	}
	d, ok := parseUnixDate(v)
	if !ok {
		return time.Time{}, false
	}
	clock, err := time.Parse("15:04:05", f[3])
	if err != nil {
		return time.Time{}, false
	}
	t := d.Time().Add(time.Duration(clock.Hour())*time.Hour + time.Duration(clock.Minute())*time.Minute +
		time.Duration(clock.Second())*time.Second)
	if len(f) >= 6 {
		t = t.Add(-time.Duration(zoneOffsets[strings.ToUpper(f[4])]) * time.Hour)
	}
	return t, true
}
