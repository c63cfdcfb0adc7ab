package dlformat

import (
	"bytes"
	"fmt"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

func (r *Reader) startBlock(rest []byte) error {
	var sec, field []byte
	sec, rest = Cut(rest, r.delim)
	field, _ = Cut(rest, r.delim)
	field = bytes.TrimSpace(field)
	var err error
	if r.inBlock {
		err = r.rejectLine(fmt.Sprintf("START SECURITY inside the block of %s %s started on line %d (no END SECURITY)",
			r.blockSec, r.blockField, r.blockLine))
	}
	if len(TrimRight(sec)) == 0 || len(field) == 0 {
		r.inBlock = false
		if err != nil {
			return err
		}
		return r.rejectLine("START SECURITY without a security and a field")
	}
	r.inBlock = true
	r.blockSec = r.security(sec)
	r.blockField = r.fieldName(field)
	r.blockLine = r.lineNo
	return err
}

// fieldName returns name as a string, taken from the field list when it is there so that each
// vertical block does not allocate its field's name again.
func (r *Reader) fieldName(name []byte) string {
	if string(name) == r.blockField {
		return r.blockField
	}
	if fs := r.hdr.Fields; len(fs) <= 512 {
		for _, f := range fs {
			if f == string(name) {
				return f
			}
		}
	}
	return string(name)
}

func (r *Reader) endBlock(rest []byte) (bool, error) {
	var sec, field, rc []byte
	sec, rest = Cut(rest, r.delim)
	field, rest = Cut(rest, r.delim)
	rc, _ = Cut(rest, r.delim)
	secS := string(TrimRight(sec))
	wasOpen := r.inBlock
	r.inBlock = false
	if !wasOpen {
		if err := r.rejectLine("END SECURITY without START SECURITY"); err != nil {
			return false, err
		}
	} else if secS != r.blockSec || string(bytes.TrimSpace(field)) != r.blockField {
		if err := r.rejectLine(fmt.Sprintf("END SECURITY does not match START SECURITY|%s|%s| on line %d",
			r.blockSec, r.blockField, r.blockLine)); err != nil {
			return false, err
		}
	}
	if len(secS) == 0 {
		return false, nil
	}
	return r.returnCode(r.security(sec), rc)
}

// verticalRow reads "ID|DATE|VALUE|" inside a START/END SECURITY block.
func (r *Reader) verticalRow(t []byte) (bool, error) {
	d := r.delim
	if n := countCells(t, d); n != 3 {
		return false, r.rejectLine(fmt.Sprintf("history row has %d columns; want 3 (security|date|value) inside the block of %s %s",
			n, r.blockSec, r.blockField))
	}
	sec, rest := Cut(t, d)
	dt, rest := Cut(rest, d)
	val, _ := Cut(rest, d)
	if string(TrimRight(sec)) != r.blockSec {
		return false, r.rejectLine(fmt.Sprintf("row security differs from its block's %q", r.blockSec))
	}
	date, ok := parseRowDate(dt, r.datefmt)
	if !ok {
		return false, r.rejectLine(fmt.Sprintf("date %q is not a date", dt))
	}
	r.o = obs.Observation{Security: r.blockSec, Field: r.blockField, Date: date}
	if err := r.setValue(val); err != nil {
		return false, err
	}
	if r.o.Field == "" { // the value was rejected
		return false, nil
	}
	return true, nil
}
