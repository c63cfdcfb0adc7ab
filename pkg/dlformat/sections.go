package dlformat

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// Limits on what a header may hold, so that a corrupt header cannot take memory without bound.
const (
	maxHeaderPairs = 10000
	maxFields      = 100000
)

type section uint8

const (
	secPreamble section = iota // before START-OF-FILE
	secHeader                  // KEY=VALUE lines, before or after the field list
	secFields                  // between START-OF-FIELDS and END-OF-FIELDS
	secData                    // between START-OF-DATA and END-OF-DATA
	secTrailer                 // after END-OF-DATA
	secDone                    // after END-OF-FILE
)

// handleLine processes one line; it reports true when it has set r.o to an observation (or
// queued some), and sets up r.row for rows that give several.
func (r *Reader) handleLine(line []byte) (bool, error) {
	r.lineRaw = line
	if IsComment(line) {
		return false, nil
	}
	t := TrimRight(line)
	switch r.state {
	case secPreamble:
		switch string(t) {
		case StartOfFile:
			r.state = secHeader
		case StartOfFields:
			r.state = secFields
		case StartOfData:
			r.startData()
		}
		return false, nil // text before START-OF-FILE is not ours to judge
	case secHeader, secTrailer:
		switch string(t) {
		case "":
			return false, nil
		case StartOfFields:
			if r.state == secHeader {
				r.state = secFields
				return false, nil
			}
		case StartOfData:
			r.startData()
			return false, nil
		case EndOfFile:
			r.state = secDone
			return false, nil
		}
		return false, r.headerLine(t)
	case secFields:
		switch string(t) {
		case "":
			return false, nil
		case EndOfFields:
			r.state = secHeader
			return false, nil
		case StartOfData: // END-OF-FIELDS missing
			r.startData()
			return false, nil
		}
		if len(r.hdr.Fields) >= maxFields {
			return false, r.rejectLine(fmt.Sprintf("more than %d fields", maxFields))
		}
		r.hdr.Fields = append(r.hdr.Fields, strings.TrimSpace(string(t)))
		return false, nil
	case secData:
		if len(t) == 0 {
			return false, nil
		}
		if string(t) == EndOfData {
			r.state = secTrailer
			if r.inBlock {
				r.inBlock = false
				return false, r.reject(r.lineNo, r.lineRaw, fmt.Sprintf(
					"END-OF-DATA inside the block of %s %s started on line %d (no END SECURITY)",
					r.blockSec, r.blockField, r.blockLine))
			}
			return false, nil
		}
		return r.dataLine(t)
	case secDone:
		if len(bytes.TrimSpace(t)) == 0 {
			return false, nil
		}
		return false, r.rejectLine("text after END-OF-FILE")
	}
	return false, nil
}

func (r *Reader) startData() {
	r.state = secData
	r.sawData = true
}

// headerLine records a KEY=VALUE line and acts on the keys that change how rows are read.
func (r *Reader) headerLine(t []byte) error {
	k, v, ok := HeaderPair(t)
	if !ok {
		return r.rejectLine("header line is not KEY=VALUE")
	}
	if len(r.hdr.Pairs) >= maxHeaderPairs {
		return r.rejectLine(fmt.Sprintf("more than %d header lines", maxHeaderPairs))
	}
	key, val := string(k), string(v)
	r.hdr.Pairs = append(r.hdr.Pairs, Pair{Key: key, Value: val})
	switch strings.ToUpper(key) {
	case "PROGRAMNAME":
		r.program = val
		p := strings.ToLower(val)
		r.actions = p == "getactions"
		if p == "gethistory" {
			r.hist = true
		}
		r.snapProg = !r.hist && !r.actions && p != ""
	case "HIST_FORMAT":
		if strings.EqualFold(val, "horizontal") {
			r.hist = true
			r.snapProg = false
		}
	case "DELIMITER":
		d, ok := Delimiter(v)
		if !ok {
			return &Error{Line: r.lineNo, Reason: fmt.Sprintf("DELIMITER=%q: want one character", val)}
		}
		r.delim = d
	case "DATEFORMAT":
		df, ok := parseDateFormat(val)
		r.datefmt = df
		if !ok {
			return r.rejectLine(fmt.Sprintf("DATEFORMAT=%q unknown: reading dates as mm/dd/yyyy", val))
		}
	case "RUNDATE":
		y, m, d, ok := parseYMD8([]byte(val))
		if !ok {
			return r.rejectLine(fmt.Sprintf("RUNDATE=%q: want yyyymmdd", val))
		}
		r.runDate, r.hasRun = daysFromCivil(y, m, d), true
	case "TIMESTARTED":
		if r.sawStart {
			return nil // a repeat (seen after the data): the first one dates the data
		}
		r.sawStart = true
		d, ok := parseUnixDate(val)
		if !ok {
			return r.rejectLine(fmt.Sprintf("TIMESTARTED=%q: not a date such as \"Wed Dec 17 11:19:10 EST 2025\"", val))
		}
		r.started, r.hasStart = d, true
	}
	return nil
}

// fileDate is the date of snapshot values and return-code records.
func (r *Reader) fileDate() (obs.Date, bool) {
	if r.hasRun {
		return r.runDate, true
	}
	return r.started, r.hasStart
}

const noFileDate = "no RUNDATE or TIMESTARTED in the header to date this row by"
