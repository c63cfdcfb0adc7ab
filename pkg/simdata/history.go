package simdata

import (
	"fmt"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
)

// HistoryFields are the ten numeric fields of History's specs.
var HistoryFields = []string{"PX_LAST", "PX_OPEN", "PX_HIGH", "PX_LOW", "PX_VOLUME",
	"PX_BID", "PX_ASK", "VOLUME", "EQY_SH_OUT", "CUR_MKT_CAP"}

// History returns a gethistory spec named name of n securities ("SEC00000 US Equity", ...) ×
// HistoryFields × days weekdays from 2025-01-01: the shape of the benchmarks' reference job
// (bench/cmd/mpbench), for benchmarks that want the rows the pipeline carries.
func History(name string, n, days int) events.Spec {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	end, count := start, 0
	for d := start; count < days; d = d.AddDate(0, 0, 1) {
		if wd := d.Weekday(); wd != time.Saturday && wd != time.Sunday {
			count++
			end = d
		}
	}
	s := events.Spec{Name: name, Program: events.GetHistory, Fields: HistoryFields,
		Start: start.Format(time.DateOnly), End: end.Format(time.DateOnly)}
	for i := range n {
		s.Securities = append(s.Securities, fmt.Sprintf("SEC%05d US Equity", i))
	}
	return s
}
