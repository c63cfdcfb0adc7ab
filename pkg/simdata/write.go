package simdata

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// unixDate is the TIMESTARTED/TIMEFINISHED form: `date`'s output, single-digit days space-padded.
const unixDate = "Mon Jan _2 15:04:05 MST 2006"

// The file's times are derived from the run date, not the clock, so that writing the same reply
// twice gives the same bytes: the simulator hashes the file once and streams it again later.
const (
	finishedAt = 18*time.Hour + 7*time.Second
)

// PricingSource is the pricing-source column of REST history rows.
const PricingSource = "EX"

// flushAt is the size at which a writer hands its row buffer to the bufio.Writer.
const flushAt = 60 << 10

// WriteReply writes the reply file for s, as the vendor would deliver it for runDate, to w, in
// the program's plain layout: getdata replies use DATEFORMAT=yyyymmdd and one row per security;
// gethistory replies use the default vertical layout (one START SECURITY/END SECURITY block per
// security and field, dates as mm/dd/yyyy); getactions replies use DATEFORMAT=yyyymmdd. It is WriteReplyLayout with the layout named like
// the program.
func WriteReply(w io.Writer, s events.Spec, runDate obs.Date, seed uint64) error {
	return WriteReplyLayout(w, s, runDate, seed, defaultLayout(s.Program))
}

// WriteReplyLayout writes the reply file for s in layout l to w. It streams through a small
// buffer, never holding the file, so files of any size cost the same memory. The same arguments
// always give the same bytes, and the file holds exactly Observations' records whatever the
// layout. Errors are ErrSpec (wrapped) for an invalid s or l, or a spec the layout cannot carry
// (see Layout.CanWrite), or w's write error.
func WriteReplyLayout(w io.Writer, s events.Spec, runDate obs.Date, seed uint64, l Layout) error {
	if err := l.check(); err != nil {
		return err
	}
	p, err := compile(s, runDate)
	if err != nil {
		return err
	}
	if err := l.CanWrite(s); err != nil {
		return err
	}
	wr := newWriter(w, p, l, seed)
	if err := wr.header(); err != nil {
		return fmt.Errorf("write reply header: %w", err)
	}
	switch {
	case p.actions != nil:
		err = wr.actions()
	case p.program == events.GetData:
		err = wr.getData()
	case l.History == Vertical:
		err = wr.vertical()
	default:
		err = wr.rows()
	}
	if err != nil {
		return fmt.Errorf("write reply data: %w", err)
	}
	t := runDate.Time()
	wr.line("END-OF-DATA")
	wr.line("TIMEFINISHED=" + t.Add(finishedAt).Format(unixDate))
	wr.line("END-OF-FILE")
	if err := wr.bw.Flush(); err != nil {
		return fmt.Errorf("write reply: %w", err)
	}
	return nil
}

// replyWriter writes one file; rows are built in buf and handed to bw in large pieces.
type replyWriter struct {
	bw     *bufio.Writer
	p      *plan
	l      Layout
	seed   uint64
	d      byte
	nl     string
	df     string
	padEnd bool // a space after every value cell
	kinds  []cellKind
	bases  []uint64 // per field, of the current security
	nums   *numbers // the numeric fields' values of the current security
	buf    []byte
}

func newWriter(w io.Writer, p *plan, l Layout, seed uint64) *replyWriter {
	wr := &replyWriter{bw: bufio.NewWriterSize(w, 64<<10), p: p, l: l, seed: seed, d: l.delim(), nl: "\n",
		df: l.DateFormat, padEnd: l.SecDesLength > 0, buf: make([]byte, 0, flushAt+4<<10)}
	if l.CRLF {
		wr.nl = "\r\n"
	}
	wr.kinds = make([]cellKind, len(p.fields))
	for j, f := range p.fields {
		wr.kinds[j] = kindOf(f)
	}
	wr.bases = make([]uint64, len(p.fields))
	wr.nums = newNumbers(p.fields, wr.kinds, p.dates)
	wr.nums.opts = &p.opts
	return wr
}

// line writes a header or trailer line (errors surface at the final Flush).
func (w *replyWriter) line(s string) {
	w.bw.WriteString(s)
	w.bw.WriteString(w.nl)
}

func (w *replyWriter) header() error {
	p, l := w.p, w.l
	w.line("START-OF-FILE")
	if l.Comments {
		w.line("# marketpipe simulated reply, layout " + l.Name)
	}
	w.line("RUNDATE=" + string(appendYMD(nil, p.runDate)))
	w.line("PROGRAMNAME=" + p.program)
	w.line("PROGRAMFLAG=adhoc")
	w.line("FIRMNAME=marketpipe-sim")
	if l.Delimiter != 0 {
		w.line("DELIMITER=" + string(l.Delimiter))
	}
	if l.DateFormat != "" {
		w.line("DATEFORMAT=" + l.DateFormat)
	}
	if p.program == events.GetHistory && l.History == Horizontal {
		w.line("HIST_FORMAT=horizontal")
	}
	if w.columnHeader() {
		w.line("COLUMNHEADER=yes")
	}
	if l.SecDesLength > 0 {
		w.line("SECDESLENGTH=" + strconv.Itoa(l.SecDesLength))
	}
	if p.program == events.GetHistory || p.program == GetActions {
		w.line("DATERANGE=" + string(appendYMD(nil, p.start)) + "|" + string(appendYMD(nil, p.end)))
	}
	w.line("")
	w.line("START-OF-FIELDS")
	for _, f := range p.fields {
		w.line(f)
	}
	w.line("END-OF-FIELDS")
	w.line("")
	started := DefaultStarted
	if l.Started > 0 {
		started = l.Started
	}
	w.line("TIMESTARTED=" + p.runDate.Time().Add(started).Format(unixDate))
	w.line("START-OF-DATA")
	if l.Comments {
		w.line("# data rows follow")
	}
	if l.Malformed {
		w.line(MalformedLine)
	}
	if w.columnHeader() && len(p.fields) > 0 {
		b := append(w.buf[:0], "SECURITIES"...)
		b = append(b, w.d)
		b = append(b, "ERROR CODE"...)
		b = append(b, w.d)
		b = append(b, "NUM FLDS"...)
		b = append(b, w.d)
		for _, f := range p.fields {
			b = append(b, f...)
			b = append(b, w.d)
		}
		b = append(b, w.nl...)
		w.buf = b
		if err := w.flush(); err != nil {
			return err
		}
	}
	_, err := w.bw.WriteString("") // surfaces an earlier write error
	return err
}

// columnHeader reports whether the file has a column-header row (never in vertical blocks or
// getactions files, whose rows have no fixed field list).
func (w *replyWriter) columnHeader() bool {
	return w.l.ColumnHeader && (w.p.program == events.GetData || w.p.program == events.GetHistory && w.l.History != Vertical)
}

func (w *replyWriter) flush() error {
	_, err := w.bw.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// appendID appends the identifier, right-padded to SECDESLENGTH, and the delimiter.
func (w *replyWriter) appendID(b []byte, sec string) []byte {
	b = append(b, sec...)
	for n := len(sec); n < w.l.SecDesLength; n++ {
		b = append(b, ' ')
	}
	return append(b, w.d)
}

// appendHead appends "ID|RC|NFIELDS|".
func (w *replyWriter) appendHead(b []byte, sec string, rc int) []byte {
	b = w.appendID(b, sec)
	b = strconv.AppendInt(b, int64(rc), 10)
	b = append(b, w.d)
	b = strconv.AppendInt(b, int64(len(w.p.fields)), 10)
	return append(b, w.d)
}

// setBases computes the per-field hashes and the price model of security i.
func (w *replyWriter) setBases(i int) {
	for j := range w.bases {
		w.bases[j] = pairHash(w.seed, w.p.secHash[i], w.p.fieldHash[j])
	}
	w.nums.setSecurity(w.seed, w.p.securities[i], w.p.secHash[i], w.p.fieldHash)
}

// appendCells appends every field's cell for date d.
func (w *replyWriter) appendCells(b []byte, d obs.Date) []byte {
	for j, k := range w.kinds {
		b = w.appendCell(b, k, w.bases[j], j, d)
	}
	return b
}

// appendBlank appends n blank cells.
func (w *replyWriter) appendBlank(b []byte, n int) []byte {
	for range n {
		b = append(b, ' ', w.d)
	}
	return b
}

func (w *replyWriter) getData() error {
	d := w.p.runDate
	for i, sec := range w.p.securities {
		if rc := ReturnCode(sec); rc != 0 {
			w.buf = w.appendHead(w.buf, sec, rc)
		} else {
			w.setBases(i)
			w.buf = w.appendCells(w.appendHead(w.buf, sec, 0), d)
		}
		w.buf = append(w.buf, w.nl...)
		if len(w.buf) > flushAt {
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	return w.flush()
}

// rows writes horizontal and REST history rows: one per security and date.
func (w *replyWriter) rows() error {
	rest := w.l.History == REST
	dates := make([][8]byte, len(w.p.dates)) // yyyymmdd, formatted once
	for k, d := range w.p.dates {
		copy(dates[k][:], appendYMD(nil, d))
	}
	nf := len(w.p.fields)
	for i, sec := range w.p.securities {
		rc := ReturnCode(sec)
		switch {
		case rc != 0 && nf == 0:
			continue // as vertical blocks: nothing to say about no fields
		case rc != 0 && rest:
			w.buf = w.appendBlank(w.appendHead(w.buf, sec, rc), nf+2)
			w.buf = append(w.buf, w.nl...)
		case rc != 0:
			w.buf = append(w.appendHead(w.buf, sec, rc), w.nl...)
		case len(dates) == 0 && rest:
			w.buf = w.appendBlank(w.appendHead(w.buf, sec, 0), nf+2)
			w.buf = append(w.buf, w.nl...)
		default:
			w.setBases(i)
			for k, d := range w.p.dates {
				b := w.appendHead(w.buf, sec, 0)
				if rest {
					b = append(b, PricingSource...)
					b = append(b, w.d)
				}
				b = append(b, dates[k][:]...)
				b = append(b, w.d)
				w.buf = append(w.appendCells(b, d), w.nl...)
				if len(w.buf) > flushAt {
					if err := w.flush(); err != nil {
						return err
					}
				}
			}
		}
		if len(w.buf) > flushAt {
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	return w.flush()
}

// vertical writes START SECURITY/END SECURITY blocks, rows "ID|DATE|VALUE|" with the date in
// the layout's DATEFORMAT (mm/dd/yyyy without one).
func (w *replyWriter) vertical() error {
	dates := make([][]byte, len(w.p.dates))
	for k, d := range w.p.dates {
		dates[k] = w.appendDate(nil, d)
	}
	d := w.d
	for i, sec := range w.p.securities {
		rc := ReturnCode(sec)
		if rc == 0 {
			w.setBases(i)
		}
		for j, f := range w.p.fields {
			b := append(w.buf, "START SECURITY"...)
			b = append(b, d)
			b = w.appendID(b, sec)
			b = append(b, f...)
			b = append(b, d)
			b = append(b, w.nl...)
			if rc == 0 {
				k, base := w.kinds[j], w.bases[j]
				for x, dt := range w.p.dates {
					b = w.appendID(b, sec)
					b = append(b, dates[x]...)
					b = append(b, d)
					b = w.appendCell(b, k, base, j, dt)
					b = append(b, w.nl...)
					if len(b) > flushAt {
						w.buf = b
						if err := w.flush(); err != nil {
							return err
						}
						b = w.buf
					}
				}
			}
			b = append(b, "END SECURITY"...)
			b = append(b, d)
			b = w.appendID(b, sec)
			b = append(b, f...)
			b = append(b, d)
			b = strconv.AppendInt(b, int64(rc), 10)
			b = append(b, d)
			w.buf = append(b, w.nl...)
		}
		if len(w.buf) > flushAt {
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	return w.flush()
}

// appendCell appends a value cell as the layout writes it, and the delimiter: field j's of the
// current security (w.nums), or, for j < 0, an action's field with a uniform number. Formatting
// the integer units directly is exact and avoids float formatting in the hot loop.
func (w *replyWriter) appendCell(b []byte, k cellKind, base uint64, j int, d obs.Date) []byte {
	if k == kindUnknown {
		b = append(b, FieldUnknown...)
	} else if h := cellHash(base, d); cellMarker(h) != noMarker {
		b = append(b, markerText[cellMarker(h)]...)
	} else {
		switch k {
		case kindNumber:
			if j >= 0 {
				b = appendUnits(b, w.nums.units(j, d))
			} else {
				b = appendUnits(b, numberUnits(h))
			}
		case kindText:
			b = appendText(b, h)
		case kindTime:
			b = appendTime(b, h)
		case kindDate:
			b = w.appendDate(b, cellDate(h))
		case kindBulk1:
			n := bulkRows(h)
			b = append(b, ";1;"...)
			b = strconv.AppendInt(b, int64(n), 10)
			b = append(b, ';')
			for r := range n {
				b = append(b, "4;"...)
				b = append(b, makeBulkRow(h, r).member...)
				b = append(b, ';')
			}
		case kindBulk2:
			n := bulkRows(h)
			b = append(b, ";2;"...)
			b = strconv.AppendInt(b, int64(n), 10)
			b = append(b, ";3;"...)
			for r := range n {
				row := makeBulkRow(h, r)
				b = append(b, "4;"...)
				b = append(b, row.member...)
				b = append(b, ";2;"...)
				if row.hasNum {
					b = appendCents(b, row.cents)
				}
				b = append(b, ";5;"...)
				b = w.appendDate(b, row.date)
				b = append(b, ';')
			}
		}
	}
	if w.padEnd {
		b = append(b, ' ')
	}
	return append(b, w.d)
}

// appendDate appends a date in the layout's DATEFORMAT.
func (w *replyWriter) appendDate(b []byte, d obs.Date) []byte {
	switch w.df {
	case "yyyymmdd":
		return appendYMD(b, d)
	case "ddmmyyyy":
		y, m, dd := d.Time().Date()
		b = append2(b, dd)
		b = append(b, '/')
		b = append2(b, int(m))
		b = append(b, '/')
		return append4(b, y)
	}
	return appendMDY(b, d, '/')
}

// appendUnits appends units/10000 with exactly 4 decimals.
func appendUnits(b []byte, units int64) []byte {
	b = strconv.AppendInt(b, units/10000, 10)
	frac := int(units % 10000)
	return append(b, '.', byte('0'+frac/1000), byte('0'+frac/100%10), byte('0'+frac/10%10), byte('0'+frac%10))
}

func appendYMD(b []byte, d obs.Date) []byte {
	y, m, dd := d.Time().Date()
	b = append4(b, y)
	b = append2(b, int(m))
	return append2(b, dd)
}

func appendMDY(b []byte, d obs.Date, sep byte) []byte {
	y, m, dd := d.Time().Date()
	b = append2(b, int(m))
	b = append(b, sep)
	b = append2(b, dd)
	b = append(b, sep)
	return append4(b, y)
}

func append2(b []byte, n int) []byte { return append(b, byte('0'+n/10%10), byte('0'+n%10)) }

func append4(b []byte, n int) []byte {
	return append(b, byte('0'+n/1000%10), byte('0'+n/100%10), byte('0'+n/10%10), byte('0'+n%10))
}
