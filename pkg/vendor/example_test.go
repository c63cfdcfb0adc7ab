package vendor_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"time"

	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// Example shows the request, poll, download flow against the simulator.
func Example() {
	vs := vendorsim.NewServer(vendorsim.Options{RunDate: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)})
	defer vs.Close() // removes the files it prepared
	sim := httptest.NewServer(vs)
	defer sim.Close()
	c, err := vendor.New(vendor.Config{BaseURL: sim.URL + "/eap"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	req := vendor.Request{Identifier: "eodPx20260105a", Program: vendor.ProgramGetData,
		Securities: []string{"IBM US Equity"}, Fields: []string{"PX_LAST"}}
	if err := c.Submit(ctx, req); err != nil {
		fmt.Println(err)
		return
	}
	out, err := c.Output(ctx, req.Identifier) // nil until ready: a poller retries later
	if err != nil || out == nil {
		fmt.Println("not ready", err)
		return
	}
	rc, err := c.Download(ctx, out.Key, out.Digest, out.ContentLength)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc) // a digest mismatch would be err here
	fmt.Println(out.Key, n == out.ContentLength, err)
	// Output: eodPx20260105a.20260105.bbg true <nil>
}
