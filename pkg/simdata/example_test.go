package simdata_test

import (
	"fmt"
	"os"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
)

func ExampleWriteReply() {
	spec := events.Spec{Program: events.GetData, Securities: []string{"IBM US Equity", "BAD X Equity"},
		Fields: []string{"PX_LAST", "PX_BID"}}
	if err := simdata.WriteReply(os.Stdout, spec, obs.MakeDate(2026, 1, 5), 1); err != nil {
		fmt.Println(err)
	}
	// Output:
	// START-OF-FILE
	// RUNDATE=20260105
	// PROGRAMNAME=getdata
	// PROGRAMFLAG=adhoc
	// FIRMNAME=marketpipe-sim
	// DATEFORMAT=yyyymmdd
	//
	// START-OF-FIELDS
	// PX_LAST
	// PX_BID
	// END-OF-FIELDS
	//
	// TIMESTARTED=Mon Jan  5 18:00:00 UTC 2026
	// START-OF-DATA
	// IBM US Equity|0|2|25.8834|25.8791|
	// BAD X Equity|10|2|
	// END-OF-DATA
	// TIMEFINISHED=Mon Jan  5 18:00:07 UTC 2026
	// END-OF-FILE
}

func ExampleObservations() {
	spec := events.Spec{Program: events.GetHistory, Securities: []string{"IBM US Equity"},
		Fields: []string{"PX_LAST"}, Start: "2026-01-02", End: "2026-01-05"}
	simdata.Observations(spec, obs.MakeDate(2026, 1, 5), 1, func(o *obs.Observation) error {
		fmt.Printf("%s %s %s %v %q\n", o.Security, o.Field, o.Date, o.Value(), o.Flag)
		return nil
	})
	// Output:
	// IBM US Equity PX_LAST 2026-01-02 25.7128 ""
	// IBM US Equity PX_LAST 2026-01-05 25.8834 ""
}
