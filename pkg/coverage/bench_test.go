package coverage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/coverage"
	"github.com/marketpipe/marketpipe/pkg/natstest"
)

// BenchmarkUniverse records, then reads, the coverage of a universe of 20,000 securities × 5
// fields in an in-process NATS server's bucket: what the loader's commit of such a history run
// adds, and what the requester reads for an incremental job of it.
func BenchmarkUniverse(b *testing.B) {
	const n = 20_000
	env := natstest.NewEnv(b)
	st := coverage.Store{KV: env.Streams.Coverage}
	secs := make([]string, n)
	for i := range secs {
		secs[i] = fmt.Sprintf("SEC%06d US Equity", i)
	}
	fields := []string{"PX_LAST", "PX_OPEN", "PX_HIGH", "PX_LOW", "PX_VOLUME"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ResetTimer()
	for i := range b.N {
		ds := fmt.Sprint("gethistory-", i)
		t0 := time.Now()
		if err := st.Add(ctx, ds, secs, fields, r("2025-01-01", "2025-06-30")); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := st.Add(ctx, ds, secs, fields, r("2025-07-01", "2025-12-31")); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		got, err := st.Read(ctx, ds, secs)
		if err != nil || len(got) != n {
			b.Fatalf("read %d of %d: %v", len(got), n, err)
		}
		t3 := time.Now()
		b.ReportMetric(float64(t1.Sub(t0).Milliseconds()), "ms-create")
		b.ReportMetric(float64(t2.Sub(t1).Milliseconds()), "ms-extend")
		b.ReportMetric(float64(t3.Sub(t2).Milliseconds()), "ms-read")
	}
}
