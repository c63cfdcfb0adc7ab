package dlformat

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

func allBlank(b []byte, d byte) bool {
	for _, c := range b {
		if c != ' ' && c != d && c != '\t' {
			return false
		}
	}
	return true
}

// row3 reads "ID|RC|NFIELDS|...": getdata, horizontal history and REST history rows.
func (r *Reader) row3(t []byte) (bool, error) {
	d := r.delim
	cells := countCells(t, d)
	if cells < 3 {
		return false, r.rejectLine(fmt.Sprintf("row has %d columns; want IDENTIFIER|RC|NFIELDS|values", cells))
	}
	c0, rest := Cut(t, d)
	c1, rest := Cut(rest, d)
	c2, rest := Cut(rest, d)
	if IsColumnHeader(c0, c1) {
		return false, r.columnHeader(rest)
	}
	if len(TrimRight(c0)) == 0 {
		return false, r.rejectLine("row without a security")
	}
	sec := r.security(c0)
	if code, ok := parseRC(c1); !ok {
		return false, r.rejectLine(fmt.Sprintf("return code %q is not a number", c1))
	} else if code != 0 {
		return r.returnCode(sec, c1)
	}
	n, f := cells-3, len(r.hdr.Fields)
	if nf, ok := atoiN(bytes.TrimSpace(c2)); !ok || nf != f {
		r.stats.NFieldsMismatch++
	}
	var (
		date  obs.Date
		ok    bool
		dated bool // history row: the date comes from the row
	)
	switch {
	case r.hist:
		switch n {
		case f + 1:
			dated = true
		case f + 2:
			_, rest = Cut(rest, d) // pricing source
			dated = true
		default:
			return false, r.rejectLine(fmt.Sprintf(
				"history row has %d columns after NFIELDS; want %d (date and %d values) or %d (pricing source, date and values)",
				n, f+1, f, f+2))
		}
	case r.snapProg || n == f:
		if f == 0 {
			if n == 0 {
				return false, nil
			}
			return false, r.rejectLine("values without field names: empty field list and no column-header row")
		}
		if n != f {
			return false, r.rejectLine(fmt.Sprintf("row has %d values for %d fields", n, f))
		}
	default: // no PROGRAMNAME: let the shape decide
		c3, after := Cut(rest, d)
		c4, _ := Cut(after, d)
		switch {
		case n == f+1 && isRowDate(c3, r.datefmt):
			dated = true
		case n == f+2 && (isRowDate(c4, r.datefmt) || len(bytes.TrimSpace(c4)) == 0):
			rest = after
			dated = true
		default:
			return false, r.rejectLine(fmt.Sprintf(
				"row has %d columns after NFIELDS for %d fields: neither values, date and values, nor pricing source, date and values", n, f))
		}
	}
	if dated {
		var dt []byte
		dt, rest = Cut(rest, d)
		if len(bytes.TrimSpace(dt)) == 0 {
			if allBlank(rest, d) {
				return false, nil // the REST form of "no data for this security"
			}
			return false, r.rejectLine("history row without a date")
		}
		date, ok = parseRowDate(dt, r.datefmt)
		if !ok {
			return false, r.rejectLine(fmt.Sprintf("date %q is not a date", dt))
		}
	} else {
		date, ok = r.fileDate()
		if !ok {
			return false, r.rejectLine(noFileDate)
		}
	}
	r.row = rowState{active: true, mode: rowCells, rest: rest, fields: r.hdr.Fields, sec: sec, date: date}
	return false, nil
}

func isRowDate(b []byte, df dateFormat) bool {
	_, ok := parseRowDate(b, df)
	return ok
}

// columnHeader reads "SECURITIES|ERROR CODE|NUM FLDS|names|": not data, but the field names of a
// file whose field list is empty.
func (r *Reader) columnHeader(rest []byte) error {
	if len(r.hdr.Fields) > 0 {
		return nil
	}
	for len(rest) > 0 && len(r.hdr.Fields) < maxFields {
		var c []byte
		c, rest = Cut(rest, r.delim)
		r.hdr.Fields = append(r.hdr.Fields, strings.TrimSpace(string(c)))
	}
	return nil
}
