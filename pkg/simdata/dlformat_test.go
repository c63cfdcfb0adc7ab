package simdata_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
)

// Securities and fields that give every kind of cell: return codes 10, 11 and 995, an
// identifier with inner spaces and punctuation, numbers, text, times, dates, one- and
// two-dimensional bulk cells and an unknown mnemonic (FLD UNKNOWN).
var (
	richSecs = []string{"IBM US Equity", "BAD X Equity", "AAPL US Equity", "RC11 R Equity",
		"VG1 A:00_0_R Index", "RC995 Z Equity", "MSFT US Equity"}
	richFields = []string{"PX_LAST", "NAME", "PX_BID", "CRNCY", "DVD_EX_DT", "LAST_UPDATE_TIME",
		"INDX_MEMBERS", "DVD_SCHEDULE", "PEER_LIST", "NOSUCH_FIELD", "PX_VOLUME"}
	// actionSecs add the return codes getactions writes with 4 columns.
	actionSecs = append([]string{"RC300 N Equity", "RC400 M Equity"}, richSecs...)
)

// TestParserAgrees parses WriteReplyLayout's output in every layout with the pipeline's reader,
// plain and gzip, for getdata, gethistory and getactions specs, and checks it yields exactly Observations' records (in order for getdata and
// vertical files, whose order Observations follows; as a set for horizontal and REST files,
// which go date by date) and exactly the layout's rejects: the simulator and the tests that compare loaded rows
// with Observations rely on the two agreeing whatever the layout.
func TestParserAgrees(t *testing.T) {
	runDate := obs.MakeDate(2026, time.January, 5)
	specs := []struct {
		name string
		spec events.Spec
	}{
		{"getdata", events.Spec{Program: events.GetData, Securities: richSecs, Fields: richFields}},
		{"getdata plain fields", events.Spec{Program: events.GetData, Securities: richSecs,
			Fields: []string{"PX_LAST", "PX_BID", "PX_ASK", "PX_VOLUME"}}},
		{"gethistory", events.Spec{Program: events.GetHistory, Securities: richSecs,
			Fields: richFields, Start: "2025-11-01", End: "2026-01-31"}},
		{"gethistory weekend only", events.Spec{Program: events.GetHistory, Securities: richSecs,
			Fields: []string{"PX_LAST", "NAME"}, Start: "2026-01-03", End: "2026-01-04"}},
		{"gethistory one day one field", events.Spec{Program: events.GetHistory, Securities: richSecs,
			Fields: []string{"INDX_MEMBERS"}, Start: "2026-01-05", End: "2026-01-05"}},
		{"getactions", events.Spec{Program: simdata.GetActions, Securities: actionSecs,
			Start: "2025-01-01", End: "2026-01-31"}},
		{"getactions dividends and splits", events.Spec{Program: simdata.GetActions, Securities: actionSecs,
			Fields: []string{"DVD_CASH", "STOCK_SPLT"}, Start: "2025-10-01", End: "2026-01-31"}},
		{"getactions weekend only", events.Spec{Program: simdata.GetActions, Securities: actionSecs,
			Start: "2026-01-03", End: "2026-01-04"}},
	}
	for _, layout := range append(simdata.Layouts(), simdata.ActionLayouts()...) {
		for _, sc := range specs {
			for _, gz := range []bool{false, true} {
				name := layout.Name + "/" + sc.name
				if gz {
					name += " gzip"
				}
				t.Run(name, func(t *testing.T) {
					var buf bytes.Buffer
					w := io.Writer(&buf)
					var zw *gzip.Writer
					if gz {
						zw = gzip.NewWriter(&buf)
						w = zw
					}
					if err := simdata.WriteReplyLayout(w, sc.spec, runDate, 11, layout); err != nil {
						t.Fatal(err)
					}
					if zw != nil {
						if err := zw.Close(); err != nil {
							t.Fatal(err)
						}
					}
					want := collect(t, sc.spec, runDate, 11)
					var rejects []obs.Reject
					got := parse(t, &buf, func(r obs.Reject) error { rejects = append(rejects, r); return nil })
					if len(rejects) != layout.Rejects() {
						t.Errorf("parser rejected %d lines of a simulated file (%+v), want %d", len(rejects), rejects, layout.Rejects())
					}
					for _, rj := range rejects {
						if rj.Raw != simdata.MalformedLine {
							t.Errorf("parser rejected %+v, want only %q", rj, simdata.MalformedLine)
						}
					}
					inOrder := sc.spec.Program != events.GetHistory || layout.History == simdata.Vertical
					if !inOrder {
						slices.SortStableFunc(got, cmpKey)
						slices.SortStableFunc(want, cmpKey)
					}
					for i := range min(len(got), len(want)) {
						if !got[i].Equal(&want[i]) {
							t.Fatalf("observation %d: parser %+v, Observations %+v", i, got[i], want[i])
						}
					}
					if len(got) != len(want) {
						t.Fatalf("parser gives %d observations, Observations %d", len(got), len(want))
					}
				})
			}
		}
	}
}

// TestRichDataCoversEveryCell checks that the rich spec's observations hold every marker, every
// kind of value and every return code, so that TestParserAgrees covers them all.
func TestRichDataCoversEveryCell(t *testing.T) {
	spec := events.Spec{Program: events.GetHistory, Securities: richSecs, Fields: richFields,
		Start: "2025-11-01", End: "2026-01-31"}
	seen := map[string]int{}
	for _, o := range collect(t, spec, obs.MakeDate(2026, 1, 5), 11) {
		switch {
		case o.Flag != "":
			seen["flag "+o.Flag]++
		case o.Kind == obs.Bulk && o.Str == "[]":
			seen["empty bulk"]++
		case o.Kind == obs.Bulk && strings.Contains(o.Str, "null"):
			seen["bulk with a null element"]++
		case o.Kind == obs.Bulk && strings.Contains(o.Str, `",`):
			seen["bulk with several columns"]++
		case o.Kind == obs.Bulk:
			seen["bulk"]++
		case o.Kind == obs.String && len(o.Str) == 10 && o.Str[4] == '-':
			seen["date"]++
		case o.Kind == obs.String && len(o.Str) == 8 && o.Str[2] == ':':
			seen["time"]++
		case o.Kind == obs.String:
			seen["text"]++
		case o.Kind == obs.Number:
			seen["number"]++
		}
	}
	for _, want := range []string{"flag N.A.", "flag N.S.", "flag N.D.", "flag BLANK", "flag FLD UNKNOWN",
		"flag RC=10", "flag RC=11", "flag RC=995", "empty bulk", "bulk with a null element",
		"bulk with several columns", "bulk", "date", "time", "text", "number"} {
		if seen[want] == 0 {
			t.Errorf("no %s in the rich spec's observations (saw %v)", want, seen)
		}
	}
}

func collect(t *testing.T, s events.Spec, runDate obs.Date, seed uint64) []obs.Observation {
	t.Helper()
	var out []obs.Observation
	if err := simdata.Observations(s, runDate, seed, func(o *obs.Observation) error {
		out = append(out, *o)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func parse(t *testing.T, r io.Reader, onReject func(obs.Reject) error) []obs.Observation {
	t.Helper()
	dr, err := dlformat.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	dr.OnReject = onReject
	var out []obs.Observation
	for {
		o, err := dr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("observation %d: %v", len(out), err)
		}
		out = append(out, *o)
	}
}

func cmpKey(a, b obs.Observation) int {
	if c := strings.Compare(a.Security, b.Security); c != 0 {
		return c
	}
	if c := strings.Compare(a.Field, b.Field); c != 0 {
		return c
	}
	return int(a.Date - b.Date)
}
