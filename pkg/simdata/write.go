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
	startedAt  = 18 * time.Hour
	finishedAt = 18*time.Hour + 7*time.Second
)

// WriteReply writes the reply file for s, as the vendor would deliver it for runDate, to w. It
// streams through a small buffer, never holding the file, so files of any size cost the same
// memory. The same arguments always give the same bytes.
//
// getdata replies use DATEFORMAT=yyyymmdd and one row per security; gethistory replies use the
// default vertical layout (one START SECURITY/END SECURITY block per security and field, dates
// as mm/dd/yyyy). Errors are ErrSpec (wrapped) for an invalid s, or w's write error.
func WriteReply(w io.Writer, s events.Spec, runDate obs.Date, seed uint64) error {
	p, err := compile(s, runDate)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := p.writeHeader(bw); err != nil {
		return fmt.Errorf("write reply header: %w", err)
	}
	if p.program == events.GetData {
		err = p.writeGetData(bw, seed)
	} else {
		err = p.writeGetHistory(bw, seed)
	}
	if err != nil {
		return fmt.Errorf("write reply data: %w", err)
	}
	t := runDate.Time()
	bw.WriteString("END-OF-DATA\nTIMEFINISHED=" + t.Add(finishedAt).Format(unixDate) + "\nEND-OF-FILE\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write reply: %w", err)
	}
	return nil
}

func (p *plan) writeHeader(bw *bufio.Writer) error {
	bw.WriteString("START-OF-FILE\nRUNDATE=")
	bw.Write(appendYMD(nil, p.runDate))
	bw.WriteString("\nPROGRAMNAME=" + p.program + "\nPROGRAMFLAG=adhoc\nFIRMNAME=marketpipe-sim\n")
	if p.program == events.GetData {
		bw.WriteString("DATEFORMAT=yyyymmdd\n")
	} else {
		// No DATEFORMAT: history rows use the default mm/dd/yyyy, as real vertical replies do.
		bw.WriteString("DATERANGE=")
		bw.Write(appendYMD(nil, p.start))
		bw.WriteByte('|')
		bw.Write(appendYMD(nil, p.end))
		bw.WriteByte('\n')
	}
	bw.WriteString("\nSTART-OF-FIELDS\n")
	for _, f := range p.fields {
		bw.WriteString(f)
		bw.WriteByte('\n')
	}
	bw.WriteString("END-OF-FIELDS\n\nTIMESTARTED=")
	bw.WriteString(p.runDate.Time().Add(startedAt).Format(unixDate))
	_, err := bw.WriteString("\nSTART-OF-DATA\n")
	return err
}

func (p *plan) writeGetData(bw *bufio.Writer, seed uint64) error {
	buf := make([]byte, 0, 256)
	nfields := strconv.Itoa(len(p.fields))
	d := p.runDate
	for i, sec := range p.securities {
		buf = append(buf[:0], sec...)
		if IsBad(sec) {
			buf = append(buf, '|')
			buf = strconv.AppendInt(buf, BadRC, 10)
			buf = append(buf, '|')
			buf = append(buf, nfields...)
			buf = append(buf, "|\n"...)
		} else {
			buf = append(buf, "|0|"...)
			buf = append(buf, nfields...)
			buf = append(buf, '|')
			for j := range p.fields {
				buf = appendCell(buf, pairHash(seed, p.secHash[i], p.fieldHash[j]), d)
				buf = append(buf, '|')
			}
			buf = append(buf, '\n')
		}
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

func (p *plan) writeGetHistory(bw *bufio.Writer, seed uint64) error {
	// Every row of a block starts with "ID|mm/dd/yyyy|": format the dates once.
	dates := make([][10]byte, len(p.dates))
	for i, d := range p.dates {
		y, m, dd := d.Time().Date()
		b := dates[i][:0]
		b = append2(b, int(m))
		b = append(b, '/')
		b = append2(b, dd)
		b = append(b, '/')
		b = append4(b, y)
		copy(dates[i][:], b)
	}
	buf := make([]byte, 0, 64<<10)
	for i, sec := range p.securities {
		bad := IsBad(sec)
		for j, f := range p.fields {
			buf = append(buf, "START SECURITY|"...)
			buf = append(buf, sec...)
			buf = append(buf, '|')
			buf = append(buf, f...)
			buf = append(buf, "|\n"...)
			rc := 0
			if bad {
				rc = BadRC
			} else {
				base := pairHash(seed, p.secHash[i], p.fieldHash[j])
				for k, d := range p.dates {
					buf = append(buf, sec...)
					buf = append(buf, '|')
					buf = append(buf, dates[k][:]...)
					buf = append(buf, '|')
					buf = appendCell(buf, base, d)
					buf = append(buf, "|\n"...)
					if len(buf) > 60<<10 {
						if _, err := bw.Write(buf); err != nil {
							return err
						}
						buf = buf[:0]
					}
				}
			}
			buf = append(buf, "END SECURITY|"...)
			buf = append(buf, sec...)
			buf = append(buf, '|')
			buf = append(buf, f...)
			buf = append(buf, '|')
			buf = strconv.AppendInt(buf, int64(rc), 10)
			buf = append(buf, "|\n"...)
		}
		if _, err := bw.Write(buf); err != nil {
			return err
		}
		buf = buf[:0]
	}
	return nil
}

// appendCell appends the cell text: the value with exactly 4 decimals, or the N.A. marker.
// Formatting the integer units directly is exact and avoids float formatting in the hot loop.
func appendCell(b []byte, base uint64, d obs.Date) []byte {
	units, ok := cellUnits(base, d)
	if !ok {
		return append(b, NotAvailable...)
	}
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

func append2(b []byte, n int) []byte { return append(b, byte('0'+n/10%10), byte('0'+n%10)) }

func append4(b []byte, n int) []byte {
	return append(b, byte('0'+n/1000%10), byte('0'+n/100%10), byte('0'+n/10%10), byte('0'+n%10))
}
