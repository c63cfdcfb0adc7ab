package simdata_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
)

// TestParserAgrees parses WriteReply's output with the pipeline's reader, plain and gzip, and
// checks it yields Observations' records row by row: the simulator and the tests that compare
// loaded rows with Observations rely on the two agreeing.
func TestParserAgrees(t *testing.T) {
	runDate := obs.MakeDate(2026, time.January, 5)
	secs := []string{"IBM US Equity", "BAD X Equity", "AAPL US Equity", "VG1 A:00_0_R Index"}
	tests := []struct {
		name string
		spec events.Spec
	}{
		{"getdata", events.Spec{Program: events.GetData, Securities: secs,
			Fields: []string{"PX_LAST", "PX_BID", "PX_ASK", "PX_VOLUME"}}},
		{"gethistory", events.Spec{Program: events.GetHistory, Securities: secs,
			Fields: []string{"PX_LAST", "PX_OPEN"}, Start: "2025-12-01", End: "2026-01-31"}},
		{"gethistory weekend only", events.Spec{Program: events.GetHistory, Securities: secs,
			Fields: []string{"PX_LAST"}, Start: "2026-01-03", End: "2026-01-04"}},
	}
	for _, tc := range tests {
		for _, gz := range []bool{false, true} {
			name := tc.name
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
				if err := simdata.WriteReply(w, tc.spec, runDate, 11); err != nil {
					t.Fatal(err)
				}
				if zw != nil {
					if err := zw.Close(); err != nil {
						t.Fatal(err)
					}
				}
				var want []obs.Observation
				if err := simdata.Observations(tc.spec, runDate, 11, func(o *obs.Observation) error {
					want = append(want, *o)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				r, err := dlformat.NewReader(&buf)
				if err != nil {
					t.Fatal(err)
				}
				i := 0
				for ; ; i++ {
					o, err := r.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						t.Fatalf("observation %d: %v", i, err)
					}
					if i >= len(want) {
						t.Fatalf("parser gives more than the %d observations of Observations: %+v", len(want), *o)
					}
					if !o.Equal(&want[i]) {
						t.Fatalf("observation %d: parser %+v, Observations %+v", i, *o, want[i])
					}
				}
				if i != len(want) {
					t.Fatalf("parser gives %d observations, Observations %d", i, len(want))
				}
				if st := r.Stats(); st.Rejects != 0 {
					t.Errorf("parser rejected %d lines of a simulated file", st.Rejects)
				}
			})
		}
	}
}
