package jobspec_test

import (
	"fmt"
	"time"

	"github.com/marketpipe/marketpipe/pkg/jobspec"
)

func Example() {
	f, err := jobspec.Load("testdata/eod-prices.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	spec, _ := f.SpecAt(time.Now())
	fmt.Println(spec.Name, spec.Program, len(spec.Securities), spec.Fields, spec.Start, spec.End)
	next, _ := f.NextRun(time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC))
	fmt.Println("next run:", next.UTC().Format(time.RFC3339), "deadline:", f.Deadline)

	// An invalid file is refused with every problem and its line.
	_, err = jobspec.Load("testdata/bad.yaml")
	fmt.Println(err)
	// Output:
	// eod-prices gethistory 3 [PX_LAST PX_VOLUME] 2026-01-02 2026-01-31
	// next run: 2026-01-02T22:00:00Z deadline: 2h0m0s
	// testdata/bad.yaml:1: name: eod prices is not a job name (letters, digits and '-', starting with a letter or digit, at most 63)
	// testdata/bad.yaml:5: securities: IBM US Equity repeated (first at line 4)
	// testdata/bad.yaml:6: fields: PX LAST is not a field mnemonic (upper-case letters, digits and '_')
	// testdata/bad.yaml:7: start: 2026-01-31 is after end 2026-01-02
	// testdata/bad.yaml:9: unknown key colour (known: name, program, securities, securities_file, fields, start, end, schedule, tz, calendar, deadline, strict, identifier_type, overrides, pricing_source, pricing_source_exclusive, periodicity, currency, incremental)
}

func ExampleNewJobID() {
	at := time.Date(2026, 11, 25, 4, 57, 24, 0, time.UTC)
	id := jobspec.NewJobID("eod-prices", at)
	fmt.Println(id[:len(id)-4]) // the last 4 characters are random
	fmt.Println(len(jobspec.VendorRequestID(id, 0)))
	// Output:
	// eod-prices-20261125t045724z-
	// 21
}

// Relative dates resolve on the day of the run, in the job's tz, on its calendar.
func ExampleFile_SpecAt() {
	f, err := jobspec.Parse([]byte(`name: last-week
program: gethistory
securities: [IBM US Equity]
fields: [PX_LAST]
start: -5b
end: -1b
schedule: "30 18 * * 1-5"
tz: America/New_York
calendar: XNYS
`), "last-week.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	// Monday 30 November 2026, 18:30 in New York (23:30 UTC): Thanksgiving (the 26th) is not a
	// business day.
	spec, err := f.SpecAt(time.Date(2026, 11, 30, 23, 30, 0, 0, time.UTC))
	fmt.Println(spec.Start, spec.End, err)
	// Output:
	// 2026-11-20 2026-11-27 <nil>
}
