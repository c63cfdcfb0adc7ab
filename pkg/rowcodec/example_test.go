package rowcodec_test

import (
	"fmt"

	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
)

// The transformer cuts a job's observations into batches; the loader decodes them.
func Example() {
	bl := rowcodec.NewBuilder("eod-prices-20261125t045724z-k3qa", "gethistory", 0, 1)
	var messages [][]byte
	publish := func(b *rowcodec.ColumnBatch, data []byte, err error) {
		if err != nil {
			panic(err) // in the transformer: fail the message
		}
		messages = append(messages, data) // in the transformer: publish to mp.rows.<job id>
	}
	start := obs.MakeDate(2025, 1, 2)
	for i := range 300_000 {
		o := obs.Observation{Security: fmt.Sprintf("S%d US Equity", i/1000), Field: "PX_LAST",
			Date: start + obs.Date(i%1000), Kind: obs.Number, Num: float64(i%5000) / 100}
		if err := bl.Add(&o); err != nil {
			panic(err)
		}
		if bl.Full() {
			publish(bl.Flush())
		}
	}
	bl.AddReject(&obs.Reject{Line: 42, Raw: "IBM US Equity|0|x", Reason: "field count"})
	for bl.Len() > 0 {
		publish(bl.Flush())
	}

	var b rowcodec.Batch
	rows, rejects, largest := 0, 0, 0
	for _, m := range messages {
		if err := rowcodec.Decode(m, &b); err != nil {
			panic(err)
		}
		rows += len(b.Obs)
		rejects += len(b.Rejects)
		largest = max(largest, len(m))
	}
	fmt.Println("batches:", bl.Seq(), "observations:", rows, "rejects:", rejects)
	fmt.Println("within the bound:", largest <= rowcodec.MaxMessageBytes)
	fmt.Println("last:", b.Seq, b.Obs[len(b.Obs)-1].Security, b.Obs[len(b.Obs)-1].Date, b.Obs[len(b.Obs)-1].Num)
	// Output:
	// batches: 4 observations: 300000 rejects: 1
	// within the bound: true
	// last: 3 S299 US Equity 2027-09-28 49.99
}
