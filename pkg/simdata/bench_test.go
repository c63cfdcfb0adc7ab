package simdata

import (
	"strconv"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// bigHistory is 500 securities × 4 fields × 2500 weekdays ≈ 5 million observations.
func bigHistory() events.Spec {
	s := events.Spec{Program: events.GetHistory, Fields: []string{"PX_LAST", "PX_OPEN", "PX_HIGH", "PX_LOW"},
		Start: "2016-01-01", End: "2025-07-31"}
	for i := range 500 {
		s.Securities = append(s.Securities, "SEC"+strconv.Itoa(i)+" US Equity")
	}
	return s
}

// countingDiscard counts bytes so the benchmark can report MB/s.
type countingDiscard struct{ n int64 }

func (c *countingDiscard) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkWriteReply5M writes a gethistory reply of about 5 million observations:
// go test -run '^$' -bench . -benchmem ./pkg/simdata/
func BenchmarkWriteReply5M(b *testing.B) {
	s := bigHistory()
	ds, _ := Dates(s, jan5)
	nobs := len(s.Securities) * len(s.Fields) * len(ds)
	b.ReportAllocs()
	for b.Loop() {
		var w countingDiscard
		if err := WriteReply(&w, s, jan5, 1); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(w.n)
	}
	b.ReportMetric(float64(nobs), "obs/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(nobs), "ns/obs")
}

func BenchmarkObservations5M(b *testing.B) {
	s := bigHistory()
	var n int
	for b.Loop() {
		n = 0
		if err := Observations(s, jan5, 1, func(*obs.Observation) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "obs/op")
}

// BenchmarkWriteReplyLayouts writes about a million observations of every kind of cell in each
// layout: go test -run '^$' -bench Layouts ./pkg/simdata/
func BenchmarkWriteReplyLayouts(b *testing.B) {
	fields := []string{"PX_LAST", "NAME", "DVD_EX_DT", "LAST_UPDATE_TIME", "INDX_MEMBERS", "PEER_LIST", "NOSUCH_FIELD", "PX_VOLUME"}
	var secs []string
	for i := range 500 {
		secs = append(secs, "SEC"+strconv.Itoa(i)+" US Equity")
	}
	for _, l := range Layouts() {
		s := events.Spec{Program: l.Program, Securities: secs, Fields: fields}
		if l.Program == events.GetHistory {
			s.Start, s.End = "2025-01-01", "2025-12-31" // 261 weekdays: 1.04 million observations
		} else {
			for i := range 250 * 500 {
				s.Securities = append(s.Securities, "D"+strconv.Itoa(i)+" US Equity")
			}
		}
		ds, _ := Dates(s, jan5)
		nobs := len(s.Securities) * len(s.Fields) * len(ds)
		b.Run(l.Name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var w countingDiscard
				if err := WriteReplyLayout(&w, s, jan5, 1, l); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(w.n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(nobs), "ns/obs")
		})
	}
}
