package simdata

import (
	"strconv"
	"strings"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// What a cell holds is decided by the field's mnemonic, so that tests choose the kinds of data
// they get by naming fields, and by a hash of (seed, security, field, date), so that the values
// do not depend on the layout the file is written in:
//
//   - a mnemonic starting with UnknownFieldPrefix is not a field the vendor knows: every cell is
//     the FLD UNKNOWN marker (the return code stays 0);
//   - ending in _LIST: a one-dimensional bulk cell of text elements (";1;ROWS;4;x;...;");
//   - ending in _MEMBERS, _SCHEDULE or _BULK: a two-dimensional bulk cell of ROWS × 3 elements,
//     text (type 4), number (type 2, sometimes empty) and date (type 5), 0 to 3 rows;
//   - ending in _DT or DATE: a date, written in the layout's DATEFORMAT, read as "YYYY-MM-DD";
//   - ending in _TIME: a time of day "HH:MM:SS" (text);
//   - ending in NAME, _DES, CRNCY or TICKER: text such as "NORTH RIVER O'NEIL & CO";
//   - anything else: a number with four decimals. Market data (Observations, WriteReply) follow
//     the random walks of prices.go (consistent open, high, low and close, plausible volumes);
//     the numbers of corporate actions are drawn uniformly from 1.0000 to 9999.9999.
//
// Whatever the kind, about one cell in 37 is a marker instead: N.A. (five times in eight),
// N.S., N.D. or a blank cell (once in eight each).
type cellKind uint8

const (
	kindNumber cellKind = iota
	kindText
	kindTime
	kindDate
	kindBulk1
	kindBulk2
	kindUnknown
)

// UnknownFieldPrefix starts the mnemonics the simulated vendor does not know: their cells are
// all FLD UNKNOWN.
const UnknownFieldPrefix = "NOSUCH"

// Markers, as written in reply files and as dlformat flags them (with NotAvailable).
const (
	NotSupplied     = "N.S."
	NotDownloadable = "N.D."
	FieldUnknown    = "FLD UNKNOWN"
	BlankFlag       = "BLANK" // the flag of a blank cell, which is written empty (or as a space)
)

// Marker draws: of markerCount, indexes below markerNS are N.A.
const (
	noMarker    = -1
	markerNA    = 0
	markerNS    = 5
	markerND    = 6
	markerBlank = 7
	markerCount = 8
)

// Value ranges.
const (
	bulkMaxRows      = 4     // bulk cells have 0 to bulkMaxRows-1 rows
	bulkDateBase     = 14000 // bulk dates: 2008-05-01 ...
	bulkDateSpan     = 9000  // ... to about 2033
	cellDateBaseDays = -3650 // date cells: 1960-01-03 ...
	cellDateSpanDays = 36500 // ... to about 2060
)

func kindOf(field string) cellKind {
	switch {
	case strings.HasPrefix(field, UnknownFieldPrefix):
		return kindUnknown
	case strings.HasSuffix(field, "_LIST"):
		return kindBulk1
	case strings.HasSuffix(field, "_MEMBERS"), strings.HasSuffix(field, "_SCHEDULE"), strings.HasSuffix(field, "_BULK"):
		return kindBulk2
	case strings.HasSuffix(field, "_DT"), strings.HasSuffix(field, "DATE"):
		return kindDate
	case strings.HasSuffix(field, "_TIME"):
		return kindTime
	case strings.HasSuffix(field, "NAME"), strings.HasSuffix(field, "_DES"), strings.HasSuffix(field, "CRNCY"),
		strings.HasSuffix(field, "TICKER"):
		return kindText
	}
	return kindNumber
}

// ReturnCode is the return code the simulated vendor gives security: BadRC (10, unknown
// security) for a security starting with BadPrefix; the number n for a security whose first
// word is "RC<n>" (e.g. "RC11 X Equity" gives 11, restricted, and "RC995 X Equity" gives 995);
// else 0.
func ReturnCode(security string) int {
	if IsBad(security) {
		return BadRC
	}
	if !strings.HasPrefix(security, "RC") {
		return 0
	}
	word, _, _ := strings.Cut(security[2:], " ")
	n, err := strconv.Atoi(word)
	if err != nil || n < 0 || n > 99999 || word[0] == '+' {
		return 0
	}
	return n
}

// cellHash is the per-cell hash every value is drawn from.
func cellHash(base uint64, d obs.Date) uint64 { return mix(base + uint64(uint32(d))*golden) }

// cellMarker returns the marker index of a cell, or noMarker.
func cellMarker(h uint64) int {
	if h%naOneIn != 0 {
		return noMarker
	}
	m := int((h / naOneIn) % markerCount)
	if m < markerNS {
		return markerNA
	}
	return m
}

var markerText = [markerCount]string{markerNA: NotAvailable, markerNS: NotSupplied, markerND: NotDownloadable,
	markerBlank: ""}

func markerFlag(m int) string {
	if m == markerBlank {
		return BlankFlag
	}
	return markerText[m]
}

// Words of text cells: no delimiter of any layout (| , ;), no leading or trailing space, never a
// number, date or marker. The apostrophe and the ampersand keep quoting honest downstream.
var (
	textWords   = [...]string{"NORTH", "RIVER", "ATLAS", "O'NEIL", "GLOBAL", "PACIFIC", "STERLING", "ORION", "BAY", "SUMMIT", "HARBOR", "VALLEY", "Zürich"}
	textSuffix  = [...]string{"CORP", "INC", "PLC", "& CO", "AG", "SA", "LTD", "HOLDINGS"}
	memberWords = [...]string{"AAPL US Equity", "MSFT US Equity", "CTZ17 Index", "IBM US Equity", "VOD LN Equity", "7203 JT Equity"}
)

// appendText appends a text cell's value.
func appendText(b []byte, h uint64) []byte {
	b = append(b, textWords[(h>>16)%uint64(len(textWords))]...)
	b = append(b, ' ')
	b = append(b, textWords[(h>>24)%uint64(len(textWords))]...)
	b = append(b, ' ')
	return append(b, textSuffix[(h>>32)%uint64(len(textSuffix))]...)
}

// appendTime appends "HH:MM:SS".
func appendTime(b []byte, h uint64) []byte {
	s := int((h >> 16) % 86400)
	b = append2(b, s/3600)
	b = append(b, ':')
	b = append2(b, s/60%60)
	b = append(b, ':')
	return append2(b, s%60)
}

func cellDate(h uint64) obs.Date {
	return obs.Date(cellDateBaseDays + int64((h>>16)%cellDateSpanDays))
}

// appendISO appends YYYY-MM-DD.
func appendISO(b []byte, d obs.Date) []byte {
	y, m, dd := d.Time().Date()
	b = append4(b, y)
	b = append(b, '-')
	b = append2(b, int(m))
	b = append(b, '-')
	return append2(b, dd)
}

// bulkRow is one row of a two-dimensional bulk cell: a member, an amount (units of 1/100, or
// none) and a date.
type bulkRow struct {
	member string
	cents  int64
	hasNum bool
	date   obs.Date
}

func bulkRows(h uint64) int { return int((h >> 16) % bulkMaxRows) }

func makeBulkRow(h uint64, r int) bulkRow {
	x := mix(h + uint64(r+1)*golden)
	return bulkRow{
		member: memberWords[x%uint64(len(memberWords))],
		cents:  int64((x >> 8) % 1_000_000),
		hasNum: (x>>40)%7 != 0,
		date:   obs.Date(bulkDateBase + int64((x>>20)%bulkDateSpan)),
	}
}

// appendCents appends n/100 with two decimals, as the file writes it ("12.50", "0.05").
func appendCents(b []byte, n int64) []byte {
	b = strconv.AppendInt(b, n/100, 10)
	return append2(append(b, '.'), int(n%100))
}

// appendCentsJSON appends n/100 as dlformat's canonical JSON number ("12.5", "0.05", "3").
func appendCentsJSON(b []byte, n int64) []byte {
	b = strconv.AppendInt(b, n/100, 10)
	switch f := n % 100; {
	case f == 0:
		return b
	case f%10 == 0:
		return append(b, '.', byte('0'+f/10))
	default:
		return append2(append(b, '.'), int(f))
	}
}

// observe sets o's value for the cell of kind k with hash h, as dlformat normalizes it.
// scratch is a reusable buffer; the result may alias it until the next call only for Str, which
// is copied here.
func observe(o *obs.Observation, k cellKind, h uint64, scratch []byte) []byte {
	if k == kindUnknown {
		o.Kind, o.Flag = obs.Null, FieldUnknown
		return scratch
	}
	if m := cellMarker(h); m != noMarker {
		o.Kind, o.Flag = obs.Null, markerFlag(m)
		return scratch
	}
	b := scratch[:0]
	switch k {
	case kindNumber:
		o.Kind, o.Num = obs.Number, float64(numberUnits(h))/10000
		return scratch
	case kindText:
		b = appendText(b, h)
		o.Kind = obs.String
	case kindTime:
		b = appendTime(b, h)
		o.Kind = obs.String
	case kindDate:
		b = appendISO(b, cellDate(h))
		o.Kind = obs.String
	case kindBulk1:
		b = append(b, '[')
		for r := range bulkRows(h) {
			if r > 0 {
				b = append(b, ',')
			}
			b = append(b, `["`...)
			b = append(b, makeBulkRow(h, r).member...)
			b = append(b, `"]`...)
		}
		b = append(b, ']')
		o.Kind = obs.Bulk
	case kindBulk2:
		b = append(b, '[')
		for r := range bulkRows(h) {
			if r > 0 {
				b = append(b, ',')
			}
			row := makeBulkRow(h, r)
			b = append(b, `["`...)
			b = append(b, row.member...)
			b = append(b, `",`...)
			if row.hasNum {
				b = appendCentsJSON(b, row.cents)
			} else {
				b = append(b, "null"...)
			}
			b = append(b, `,"`...)
			b = appendISO(b, row.date)
			b = append(b, `"]`...)
		}
		b = append(b, ']')
		o.Kind = obs.Bulk
	}
	o.Str = string(b)
	return b
}

// numberUnits is a numeric cell's value in units of 1/10000 (1.0000 to 9999.9999).
func numberUnits(h uint64) int64 { return int64((h>>16)%99_990_000) + 10_000 }
