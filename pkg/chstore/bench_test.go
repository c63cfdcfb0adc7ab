package chstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// BenchmarkInsert measures Insert of one million observations (1,000 securities × 10 fields ×
// 100 days, mostly numbers, some strings and markers) given as ten batches of 100,000 rows in
// one call: through pkg/chinsert's blocks, and through clickhouse-go's batches with and without
// LZ4 compression. client-cpu-ns/row is this process's CPU per row (the server's is not in it).
//
//	go test ./pkg/chstore -run '^$' -bench BenchmarkInsert -benchtime 3x
func BenchmarkInsert(b *testing.B) {
	const securities, fields, days, perBatch = 1000, 10, 100, 100_000
	all := make([]obs.Observation, 0, securities*fields*days)
	for s := range securities {
		for f := range fields {
			for d := range days {
				o := obs.Observation{Security: fmt.Sprintf("SEC%04d US Equity", s), Field: fmt.Sprintf("FIELD_%02d", f),
					Date: obs.MakeDate(2025, 1, 1) + obs.Date(d), Kind: obs.Number, Num: float64(s*d) / 7}
				switch {
				case f == 8:
					o.Kind, o.Num, o.Str = obs.String, 0, "INTERNATIONAL BUSINESS MACHINES CORP"
				case f == 9 && d%10 == 0:
					o.Kind, o.Num, o.Flag = obs.Null, 0, "N.A."
				}
				all = append(all, o)
			}
		}
	}
	var batches []chstore.Batch
	for i := 0; i < len(all); i += perBatch {
		batches = append(batches, chstore.Batch{JobID: "bench-job", Program: events.GetHistory, Version: 1, Cols: obs.ColumnsOf(all[i:min(i+perBatch, len(all))])})
	}
	for _, w := range []struct {
		name string
		cfg  chstore.Config
	}{
		{"blocks", chstore.Config{}},
		{"driver/lz4=true", chstore.Config{DriverInserts: true}},
		{"driver/lz4=false", chstore.Config{DriverInserts: true, NoCompression: true}},
	} {
		b.Run(w.name, func(b *testing.B) {
			srv := chtest.Start(b)
			cfg := w.cfg
			cfg.Addr, cfg.Database = srv.Addr(), chtest.NewDatabase(b, srv)
			s, err := chstore.Open(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			if err := s.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			begin, cpu0 := time.Now(), chtest.ProcessCPU(b)
			for range b.N {
				n, err := s.Insert(ctx, batches)
				if err != nil || n != len(all) {
					b.Fatalf("Insert = %d, %v", n, err)
				}
			}
			rows := float64(b.N * len(all))
			b.ReportMetric(rows/time.Since(begin).Seconds(), "rows/s")
			b.ReportMetric(float64((chtest.ProcessCPU(b)-cpu0).Nanoseconds())/rows, "client-cpu-ns/row")
		})
	}
}

// BenchmarkObservations measures reading 250,000 observations back under FINAL.
//
//	go test ./pkg/chstore -run '^$' -bench BenchmarkObservations -benchtime 3x
func BenchmarkObservations(b *testing.B) {
	s := migrated(b)
	ctx := context.Background()
	var batches []chstore.Batch
	for i := range 250 {
		batches = append(batches, chstore.Batch{JobID: "j", Version: 1, Cols: obs.ColumnsOf(history(fmt.Sprintf("S%03d", i), 1000, float64(i)))})
	}
	if _, err := s.Insert(ctx, batches); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	begin := time.Now()
	rows := 0
	for range b.N {
		if err := s.Observations(ctx, "", func(obs.Observation, string, string, uint64) error { rows++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows)/time.Since(begin).Seconds(), "rows/s")
}
