package dlformat

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/marketpipe/marketpipe/pkg/bounds"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// DefaultMaxLineBytes is the longest line a Reader accepts unless told otherwise: the bound every
// reader of vendor bytes keeps (pkg/bounds). It keeps a corrupt file without newlines from
// taking memory without bound.
const DefaultMaxLineBytes = bounds.MaxLineBytes

// Limits on what a header may hold, for the same reason.
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

// Reader reads the observations of one reply file. It is not safe for concurrent use.
type Reader struct {
	// OnReject, if not nil, is called for every line (or bulk cell) that cannot be turned into
	// observations; reading goes on after it. If it returns an error, Next stops and returns
	// that error (wrapped). Rejects are counted in Stats either way.
	OnReject func(obs.Reject) error
	// MaxLineBytes caps a line's length (DefaultMaxLineBytes when 0): a longer line ends the
	// file with an *Error (matching bounds.ErrExceeded) before more of it is held in memory.
	// Set it before the first Next.
	MaxLineBytes int

	br    *bufio.Reader
	long  []byte // holds a line longer than br's buffer
	state section
	err   error // sticky: once set, Next returns it

	hdr      Header
	program  string
	delim    byte
	datefmt  dateFormat
	hist     bool // gethistory or HIST_FORMAT=horizontal: rows carry dates
	actions  bool // getactions
	snapProg bool // a PROGRAMNAME that is neither history nor actions: getdata-like rows
	runDate  obs.Date
	hasRun   bool
	started  obs.Date
	hasStart bool
	sawStart bool // a TIMESTARTED was seen (the first one counts)
	sawData  bool

	// Vertical history block.
	inBlock    bool
	blockSec   string
	blockField string
	blockLine  int64

	// The row being emitted cell by cell.
	row rowState

	// A few observations queued by a single line (getactions heads).
	queue  []obs.Observation
	queued int

	// Small caches that keep allocations off the hot path.
	lastSec  string
	lastRC   string // "security\x00code" of the last RC record, to fold repeats
	rcFlag   string
	rcCode   string
	lineNo   int64
	lineRaw  []byte
	scratch  []byte
	o        obs.Observation
	stats    Stats
	prefixes map[string]string // getactions "<ACTION>.<FIELD>" names
}

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

// NewReader returns a Reader of the reply file in r, decompressing it if it starts with the gzip
// magic bytes (and failing it, with an *Error, once it inflates past pkg/bounds' ratio). It
// fails, with an *Error, only if r is gzip but its header cannot be read.
func NewReader(r io.Reader) (*Reader, error) {
	var g bounds.InflateGuard
	br := bufio.NewReaderSize(g.Compressed(r), 64<<10)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, &Error{Line: 0, Reason: "read: " + err.Error(), Err: err}
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, &Error{Line: 0, Reason: "gzip: " + err.Error(), Err: err}
		}
		br = bufio.NewReaderSize(g.Plain(zr), 64<<10)
	}
	return &Reader{br: br, delim: DefaultDelimiter}, nil
}

// Header returns the file's header lines and field list as read so far: complete for the part
// before the data once Next has been called, the lines after the data once Next returned io.EOF.
func (r *Reader) Header() Header { return r.hdr }

// Program returns the file's PROGRAMNAME (getdata, gethistory, ...), "" if it has none.
func (r *Reader) Program() string { return r.program }

// Stats returns the counts so far.
func (r *Reader) Stats() Stats { return r.stats }

// Next returns the next observation, or io.EOF after the last one. The observation is valid until
// the next call (copy it to keep it; its strings may be kept). Malformed lines go to OnReject and
// reading goes on; a file that cannot be read at all gives an *Error naming the line.
func (r *Reader) Next() (*obs.Observation, error) {
	if r.err != nil {
		return nil, r.err
	}
	for {
		if r.queued < len(r.queue) {
			r.o = r.queue[r.queued]
			r.queued++
			return r.emit()
		}
		if r.row.active {
			ok, err := r.nextCell()
			if err != nil {
				r.err = err
				return nil, err
			}
			if ok {
				return r.emit()
			}
			continue
		}
		line, err := r.readLine()
		if err != nil {
			if err == io.EOF {
				err = r.atEOF()
			}
			r.err = err
			return nil, err
		}
		ok, err := r.handleLine(line)
		if err != nil {
			r.err = err
			return nil, err
		}
		if ok {
			return r.emit()
		}
	}
}

func (r *Reader) emit() (*obs.Observation, error) {
	r.stats.Observations++
	return &r.o, nil
}

// atEOF decides whether the end of input is a normal end or a file cut short.
func (r *Reader) atEOF() error {
	switch r.state {
	case secTrailer, secDone:
		return io.EOF
	case secData:
		return &Error{Line: r.lineNo, Reason: "input ends inside the data section (no END-OF-DATA): file truncated"}
	case secPreamble:
		return &Error{Line: r.lineNo, Reason: "no START-OF-FILE, START-OF-FIELDS or START-OF-DATA: not a Data License reply file"}
	}
	return &Error{Line: r.lineNo, Reason: "input ends before START-OF-DATA"}
}

// readLine returns the next line without its line ending, valid until the next call.
func (r *Reader) readLine() ([]byte, error) {
	b, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		b, err = r.readLong(b)
	} else if len(b) > r.maxLine() {
		err = errLineTooLong // a cap below the buffer's size
	}
	if err == errLineTooLong {
		r.long = nil
		err := bounds.LineTooLong(r.lineNo+1, r.maxLine())
		return nil, &Error{Line: r.lineNo + 1, Reason: "longer than " + bounds.Size(int64(r.maxLine())), Err: err}
	}
	if err != nil && !(err == io.EOF && len(b) > 0) {
		if err == io.EOF {
			return nil, io.EOF
		}
		if errors.Is(err, bounds.ErrExceeded) {
			return nil, &Error{Line: r.lineNo + 1, Reason: err.Error(), Err: err}
		}
		return nil, &Error{Line: r.lineNo + 1, Reason: "read: " + err.Error(), Err: err}
	}
	r.lineNo++
	r.stats.Lines++
	b = TrimLineEnd(b)
	if r.lineNo == 1 {
		b = TrimBOM(b)
	}
	return b, nil
}

var errLineTooLong = errors.New("line too long")

func (r *Reader) maxLine() int {
	if r.MaxLineBytes > 0 {
		return r.MaxLineBytes
	}
	return DefaultMaxLineBytes
}

// readLong gathers a line longer than the bufio buffer into r.long. Past the cap it stops
// reading and returns errLineTooLong.
func (r *Reader) readLong(first []byte) ([]byte, error) {
	r.long = append(r.long[:0], first...)
	for {
		if len(r.long) > r.maxLine() {
			return nil, errLineTooLong
		}
		b, err := r.br.ReadSlice('\n')
		if len(r.long)+len(b) > r.maxLine() {
			return nil, errLineTooLong
		}
		r.long = append(r.long, b...)
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == nil || err == io.EOF:
			return r.long, nil
		default:
			return nil, err
		}
	}
}

// reject reports a line that could not be turned into observations.
func (r *Reader) reject(line int64, raw []byte, reason string) error {
	r.stats.Rejects++
	if r.OnReject == nil {
		return nil
	}
	if err := r.OnReject(obs.Reject{Line: line, Raw: string(raw), Reason: reason}); err != nil {
		return fmt.Errorf("line %d: reject handler: %w", line, err)
	}
	return nil
}

func (r *Reader) rejectLine(reason string) error { return r.reject(r.lineNo, r.lineRaw, reason) }

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

// Column positions of a getactions row.
const (
	actRC        = 3
	actID        = 4
	actMnemonic  = 5
	actFlag      = 6
	actAnnounce  = 13
	actEffective = 14
	actNFields   = 20
	actFixed     = 21
)

// actionsRow reads a getactions row: 21 fixed columns then FIELD|VALUE pairs (4 columns when the
// return code is 300 or 400).
func (r *Reader) actionsRow(t []byte) (bool, error) {
	d := r.delim
	cells := countCells(t, d)
	if cells < 4 {
		return false, r.rejectLine(fmt.Sprintf("corporate action row has %d columns; want at least 4", cells))
	}
	var col [actFixed][]byte
	rest := t
	for i := 0; i < actFixed && rest != nil; i++ {
		col[i], rest = Cut(rest, d)
	}
	if len(TrimRight(col[0])) == 0 {
		return false, r.rejectLine("row without a security")
	}
	sec := r.security(col[0])
	if code, ok := parseRC(col[actRC]); !ok {
		return false, r.rejectLine(fmt.Sprintf("return code %q is not a number", col[actRC]))
	} else if code != 0 {
		return r.returnCode(sec, col[actRC])
	}
	if cells < actFixed {
		return false, r.rejectLine(fmt.Sprintf("corporate action row has %d columns; want %d fixed columns and FIELD|VALUE pairs", cells, actFixed))
	}
	if (cells-actFixed)%2 != 0 {
		return false, r.rejectLine("corporate action row has an odd number of FIELD|VALUE columns")
	}
	if nf, ok := atoiN(bytes.TrimSpace(col[actNFields])); !ok || nf != (cells-actFixed)/2 {
		r.stats.NFieldsMismatch++
	}
	mn := bytes.TrimSpace(col[actMnemonic])
	if len(mn) == 0 {
		return false, r.rejectLine("corporate action row without an action mnemonic")
	}
	date, ok := parseRowDate(col[actEffective], r.datefmt)
	if !ok {
		date, ok = parseRowDate(col[actAnnounce], r.datefmt)
	}
	if !ok {
		if date, ok = r.fileDate(); !ok {
			return false, r.rejectLine(noFileDate)
		}
	}
	prefix := string(mn)
	r.queue = append(r.queue[:0],
		obs.Observation{Security: sec, Field: r.actionField(prefix, []byte("ACTION_ID")), Date: date,
			Kind: obs.String, Str: string(TrimRight(col[actID]))},
		obs.Observation{Security: sec, Field: r.actionField(prefix, []byte("FLAG")), Date: date,
			Kind: obs.String, Str: string(TrimRight(col[actFlag]))})
	r.queued = 0
	r.row = rowState{active: true, mode: rowPairs, rest: rest, sec: sec, date: date, prefix: prefix}
	if rest == nil {
		r.row.active = false
	}
	return false, nil
}

// actionField returns "<ACTION>.<FIELD>", interned: action files repeat a few dozen names.
func (r *Reader) actionField(prefix string, name []byte) string {
	if r.prefixes == nil {
		r.prefixes = make(map[string]string)
	}
	r.scratch = append(append(append(r.scratch[:0], prefix...), '.'), name...)
	if s, ok := r.prefixes[string(r.scratch)]; ok {
		return s
	}
	s := string(r.scratch)
	if len(r.prefixes) < 10000 {
		r.prefixes[s] = s
	}
	return s
}

// String describes the reader's position, for debugging.
func (r *Reader) String() string {
	return "dlformat.Reader{line " + strconv.FormatInt(r.lineNo, 10) + ", program " + strconv.Quote(r.program) + "}"
}
