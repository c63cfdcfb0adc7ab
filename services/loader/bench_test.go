package loader

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
)

// BenchmarkDecodeInsert is the loader's side of an INSERT: one million observations (1,000
// securities × 10 fields × 100 days, mostly numbers, some strings and markers) in encoded row
// batches, decoded one at a time and written in one INSERT. "columns" is what the loader does
// (decodingSource: rowcodec.DecodeColumns, written from the columns); "rows" decodes each batch
// into observations first (rowcodec.Decode) and writes those. client-cpu-ns/row is this
// process's CPU per row (the server's is not in it).
//
//	go test ./services/loader -run '^$' -bench BenchmarkDecodeInsert -benchtime 3x
func BenchmarkDecodeInsert(b *testing.B) {
	const securities, fields, days = 1000, 10, 100
	bl := rowcodec.NewBuilder("bench-job", "gethistory", 0, 1)
	var items []*pendingBatch
	flush := func() {
		batch, data, err := bl.Flush()
		if err != nil {
			b.Fatal(err)
		}
		items = append(items, &pendingBatch{hdr: rowcodec.Header{JobID: batch.JobID, Seq: batch.Seq, Observations: len(batch.Obs)},
			data: data, done: make(chan error, 1)})
	}
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
				if err := bl.Add(&o); err != nil {
					b.Fatal(err)
				}
				if bl.Full() {
					flush()
				}
			}
		}
	}
	for bl.Len() > 0 {
		flush()
	}
	st := openStore(b)
	for _, v := range []struct {
		name string
		src  func() chstore.BatchSource
	}{
		{"columns", func() chstore.BatchSource { return &decodingSource{items: items} }},
		{"rows", func() chstore.BatchSource { return &rowsSource{b: b, items: items} }},
	} {
		b.Run(v.name, func(b *testing.B) {
			ctx := context.Background()
			begin, cpu0 := time.Now(), processCPU(b)
			for range b.N {
				n, err := st.InsertFrom(ctx, v.src())
				if err != nil || n != securities*fields*days {
					b.Fatalf("InsertFrom = %d, %v", n, err)
				}
			}
			rows := float64(b.N * securities * fields * days)
			b.ReportMetric(rows/time.Since(begin).Seconds(), "rows/s")
			b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/rows, "client-cpu-ns/row")
		})
	}
}

// rowsSource decodes the batches into observations (rowcodec.Decode), one at a time.
type rowsSource struct {
	b     testing.TB
	items []*pendingBatch
	i     int
	rb    rowcodec.Batch
	cb    chstore.Batch
}

func (s *rowsSource) Next() *chstore.Batch {
	if s.i == len(s.items) {
		return nil
	}
	if err := rowcodec.Decode(s.items[s.i].data, &s.rb); err != nil {
		s.b.Fatal(err)
	}
	s.i++
	s.cb = chstore.Batch{JobID: s.rb.JobID, Program: s.rb.Program, Version: s.rb.Version, Obs: s.rb.Obs, Rejects: s.rb.Rejects}
	return &s.cb
}

// processCPU returns the CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
