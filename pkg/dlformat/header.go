package dlformat

import (
	"strconv"
	"strings"
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
