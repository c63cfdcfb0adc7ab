package dlformat

import (
	"bytes"
	"fmt"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

type rowMode uint8

const (
	rowCells rowMode = iota // values paired with fields
	rowPairs                // getactions FIELD|VALUE pairs
)

type rowState struct {
	active bool
	mode   rowMode
	rest   []byte // cells not yet emitted (ends with the delimiter or the last cell)
	fields []string
	fi     int
	sec    string
	date   obs.Date
	prefix string // getactions: the action mnemonic
}

// countCells counts the cells of a row, not counting the empty one after a trailing delimiter.
func countCells(b []byte, d byte) int {
	n := bytes.Count(b, []byte{d})
	if len(b) == 0 || b[len(b)-1] != d {
		n++
	}
	return n
}

// security returns the trimmed identifier as a string, reusing the previous one when equal
// (history rows repeat it line after line).
func (r *Reader) security(b []byte) string {
	b = TrimRight(b)
	if string(b) != r.lastSec {
		r.lastSec = string(b)
	}
	return r.lastSec
}

// dataLine reads one line of the data section.
func (r *Reader) dataLine(t []byte) (bool, error) {
	d := r.delim
	switch {
	case HasMarker(t, StartSecurity, d):
		return false, r.startBlock(t[len(StartSecurity)+1:])
	case HasMarker(t, EndSecurity, d):
		return r.endBlock(t[len(EndSecurity)+1:])
	case r.inBlock:
		return r.verticalRow(t)
	case r.actions:
		return r.actionsRow(t)
	}
	return r.row3(t)
}

// returnCode handles a security's return code: nothing for 0, else one RC record (consecutive
// repeats folded). It reports whether r.o holds a record.
func (r *Reader) returnCode(sec string, rc []byte) (bool, error) {
	code, ok := parseRC(rc)
	if !ok {
		return false, r.rejectLine(fmt.Sprintf("return code %q is not a number", rc))
	}
	rc = bytes.TrimSpace(rc)
	if code == 0 {
		return false, nil
	}
	if string(rc) != r.rcCode {
		r.rcCode = string(rc)
		r.rcFlag = "RC=" + r.rcCode
	}
	key := sec + "\x00" + r.rcCode
	if key == r.lastRC {
		return false, nil
	}
	date, ok := r.fileDate()
	if !ok {
		return false, r.rejectLine(noFileDate)
	}
	r.lastRC = key
	r.o = obs.Observation{Security: sec, Date: date, Kind: obs.Null, Flag: r.rcFlag}
	return true, nil
}

// parseRC reads a return code cell.
func parseRC(b []byte) (int, bool) {
	b = bytes.TrimSpace(b)
	if len(b) > 9 {
		return 0, false
	}
	return atoiN(b)
}

// setValue classifies a cell into r.o's Kind/Num/Str/Flag. A bad bulk cell is rejected and r.o's
// Field cleared, so callers know to skip it.
func (r *Reader) setValue(cell []byte) error {
	v := TrimRight(cell)
	if f := marker(v); f != "" {
		r.o.Kind, r.o.Flag = obs.Null, f
		return nil
	}
	// Dates first: 20240715 has the shape of a number too.
	if y, m, d, ok := cellDate(v, r.datefmt); ok {
		r.scratch = appendISODate(r.scratch[:0], y, m, d)
		r.o.Kind, r.o.Str = obs.String, string(r.scratch)
		return nil
	}
	if n, ok := parseNumber(v, true); ok {
		r.o.Kind, r.o.Num = obs.Number, n
		return nil
	}
	if looksBulk(v) {
		var err error
		r.scratch, err = appendBulk(r.scratch[:0], v, r.datefmt)
		if err != nil {
			field := r.o.Field
			r.o.Field = ""
			return r.rejectLine(fmt.Sprintf("field %s: %v", field, err))
		}
		r.o.Kind, r.o.Str = obs.Bulk, string(r.scratch)
		return nil
	}
	r.o.Kind, r.o.Str = obs.String, string(v)
	return nil
}

// nextCell emits the next value of the current row into r.o.
func (r *Reader) nextCell() (bool, error) {
	rs := &r.row
	for {
		if rs.rest == nil || (rs.mode == rowCells && rs.fi >= len(rs.fields)) {
			rs.active = false
			return false, nil
		}
		if rs.mode == rowPairs && len(rs.rest) == 0 {
			rs.active = false
			return false, nil
		}
		var cell []byte
		var field string
		if rs.mode == rowCells {
			cell, rs.rest = Cut(rs.rest, r.delim)
			field = rs.fields[rs.fi]
			rs.fi++
		} else {
			var name []byte
			name, rs.rest = Cut(rs.rest, r.delim)
			cell, rs.rest = Cut(rs.rest, r.delim)
			field = r.actionField(rs.prefix, bytes.TrimSpace(name))
		}
		r.o = obs.Observation{Security: rs.sec, Field: field, Date: rs.date}
		if err := r.setValue(cell); err != nil {
			return false, err
		}
		if r.o.Field == "" {
			continue // bulk cell rejected
		}
		return true, nil
	}
}
