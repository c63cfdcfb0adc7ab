package simdata

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
)

// HistoryFormat is how a gethistory reply lays out its rows.
type HistoryFormat uint8

const (
	// Vertical is gethistory's default: a START SECURITY/END SECURITY block per security and
	// field, rows "ID|DATE|VALUE|", the return code on the END line.
	Vertical HistoryFormat = iota
	// Horizontal is HIST_FORMAT=horizontal: "ID|RC|NFIELDS|DATE|v1|...|vN|", one row per
	// security and date; a security with a non-zero return code has one short row.
	Horizontal
	// REST is the HAPI output: "ID|RC|NFIELDS|PRICING_SOURCE|DATE|v1|...|vN|"; a security
	// without data (no dates in range, or a non-zero return code) has one row with a blank
	// source, date and values.
	REST
)

// Layout says how a reply file is written. Whatever the layout, the file holds the same
// observations: Observations does not take one.
type Layout struct {
	// Name identifies the layout (vendorsim's -layouts flag).
	Name string
	// Program is the program the layout is for (events.GetData, events.GetHistory or
	// GetActions), for
	// callers choosing among layouts; WriteReplyLayout writes any spec in any layout.
	Program string
	// History is the gethistory row layout (getdata and getactions files ignore it).
	History HistoryFormat
	// DateFormat is the DATEFORMAT header's value: "yyyymmdd" (20240715), "mmddyyyy" or ""
	// (no header; 07/15/2024), "ddmmyyyy" (15/07/2024). It sets how date cells, bulk dates and
	// the row dates of vertical blocks are written; horizontal and REST rows date themselves
	// yyyymmdd, as real files do.
	DateFormat string
	// Delimiter is the column separator; 0 means '|' with no DELIMITER header.
	Delimiter byte
	// ColumnHeader adds COLUMNHEADER=yes and the "SECURITIES|ERROR CODE|NUM FLDS|..." row
	// (not for vertical history nor getactions).
	ColumnHeader bool
	// SecDesLength, when positive, adds SECDESLENGTH=n, right-pads identifiers with spaces to n
	// characters and writes a space after every value cell ("N.A. |"), as some files do.
	SecDesLength int
	// CRLF ends lines with "\r\n".
	CRLF bool
	// Comments adds '#' comment lines in the header and the data section.
	Comments bool
	// Malformed adds MalformedLine at the start of the data section: a line the reader must
	// reject (it goes to the rejects table), which holds no observation.
	Malformed bool
	// Started is the time of day of the TIMESTARTED header on the run date; 0 means
	// DefaultStarted. A vendor stamps each file with when it made it, so two snapshots of one
	// day differ here.
	Started time.Duration
}

// DefaultStarted is the time of day of a reply file's TIMESTARTED unless Layout.Started says
// otherwise.
const DefaultStarted = 18 * time.Hour

// StartedFor is the time of day the simulator says it started the reply of the request with
// this identifier: DefaultStarted plus up to six hours, drawn from the identifier, so that two
// requests of one day (two snapshots) almost always differ and the same request always gives
// the same file.
func StartedFor(identifier string) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(identifier))
	return DefaultStarted + time.Duration(h.Sum64()%(6*3600))*time.Second
}

// MalformedLine is the line a Malformed layout adds: not a row in any layout.
const MalformedLine = "SIMULATED MALFORMED LINE: NOT A ROW"

// Rejects is the number of lines of a file in this layout that the reader rejects.
func (l Layout) Rejects() int {
	if l.Malformed {
		return 1
	}
	return 0
}

// The layouts vendorsim serves, by name. getdata and gethistory are the plain ones (and
// WriteReply's); the others exercise every option the reader supports.
var layouts = []Layout{
	{Name: "getdata", Program: events.GetData, DateFormat: "yyyymmdd"},
	{Name: "getdata-columnheader", Program: events.GetData, DateFormat: "mmddyyyy", ColumnHeader: true},
	{Name: "getdata-padded", Program: events.GetData, SecDesLength: 32, Comments: true, Malformed: true},
	{Name: "getdata-delimiter", Program: events.GetData, DateFormat: "ddmmyyyy", Delimiter: ',', CRLF: true},
	{Name: "gethistory", Program: events.GetHistory, History: Vertical},
	{Name: "gethistory-horizontal", Program: events.GetHistory, History: Horizontal, DateFormat: "yyyymmdd",
		ColumnHeader: true, Comments: true, Malformed: true},
	{Name: "gethistory-rest", Program: events.GetHistory, History: REST, SecDesLength: 24, CRLF: true},
}

// actionLayouts are the getactions layouts, kept apart from Layouts: the pipeline's stages
// request only getdata and gethistory, and callers that make one job per layout use Layouts.
var actionLayouts = []Layout{
	{Name: "getactions", Program: GetActions, DateFormat: "yyyymmdd"},
	{Name: "getactions-padded", Program: GetActions, SecDesLength: 28, Comments: true, CRLF: true, Malformed: true},
	{Name: "getactions-delimiter", Program: GetActions, DateFormat: "ddmmyyyy", Delimiter: ','},
}

// DefaultLayouts names WriteReply's layouts, one per program.
const DefaultLayouts = "getdata,gethistory,getactions"

// Layouts returns every named getdata and gethistory layout (the programs the pipeline
// requests); ActionLayouts has the getactions ones.
func Layouts() []Layout { return slices.Clone(layouts) }

// ActionLayouts returns the getactions layouts.
func ActionLayouts() []Layout { return slices.Clone(actionLayouts) }

// allLayouts is Layouts then ActionLayouts.
func allLayouts() []Layout { return slices.Concat(layouts, actionLayouts) }

// LayoutNames returns the names of every layout, Layouts' then ActionLayouts'.
func LayoutNames() []string {
	var names []string
	for _, l := range allLayouts() {
		names = append(names, l.Name)
	}
	return names
}

// LookupLayout returns the layout called name (in Layouts or ActionLayouts).
func LookupLayout(name string) (Layout, bool) {
	for _, l := range allLayouts() {
		if l.Name == name {
			return l, true
		}
	}
	return Layout{}, false
}

// ParseLayouts reads a comma-separated list of layout names; "all" stands for every layout,
// getactions ones included.
func ParseLayouts(list string) ([]Layout, error) {
	var out []Layout
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if name == "all" {
			out = append(out, allLayouts()...)
			continue
		}
		l, ok := LookupLayout(name)
		if !ok {
			return nil, fmt.Errorf("unknown layout %q (want some of %s, or all)", name, strings.Join(LayoutNames(), ", "))
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no layout in %q", list)
	}
	return out, nil
}

// defaultLayout is WriteReply's layout for a program.
func defaultLayout(program string) Layout {
	if l, ok := LookupLayout(program); ok {
		return l
	}
	return layouts[0]
}

// CanWrite reports why a spec cannot be written in the layout (nil if it can): a security or
// field containing the layout's delimiter would break its rows.
func (l Layout) CanWrite(s events.Spec) error {
	d := l.delim()
	if d == '|' {
		return nil
	}
	for _, sec := range s.Securities {
		if strings.IndexByte(sec, d) >= 0 {
			return fmt.Errorf("%w: security %q contains the delimiter %q of layout %s", ErrSpec, sec, d, l.Name)
		}
	}
	for _, f := range s.Fields {
		if strings.IndexByte(f, d) >= 0 {
			return fmt.Errorf("%w: field %q contains the delimiter %q of layout %s", ErrSpec, f, d, l.Name)
		}
	}
	return nil
}

func (l Layout) delim() byte {
	if l.Delimiter == 0 {
		return '|'
	}
	return l.Delimiter
}

// check refuses layouts the writer cannot honour.
func (l Layout) check() error {
	switch l.DateFormat {
	case "", "yyyymmdd", "mmddyyyy", "ddmmyyyy":
	default:
		return fmt.Errorf("%w: layout %s: DATEFORMAT %q (want yyyymmdd, mmddyyyy, ddmmyyyy or empty)", ErrSpec, l.Name, l.DateFormat)
	}
	switch d := l.delim(); {
	case d == ';', d == ' ', d == '\t', d == '\r', d == '\n', d == '.', d == '/', d == ':', d == '-', d == '=', d == '#',
		d == '&', d == '\'', d >= 0x80, '0' <= d && d <= '9', 'A' <= d && d <= 'Z', 'a' <= d && d <= 'z':
		return fmt.Errorf("%w: layout %s: delimiter %q occurs in cells", ErrSpec, l.Name, d)
	}
	if l.History > REST {
		return fmt.Errorf("%w: layout %s: unknown history format %d", ErrSpec, l.Name, l.History)
	}
	return nil
}
