package loader

import (
	"context"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
	"github.com/marketpipe/marketpipe/pkg/simdata"
)

// BenchmarkDecodeInsert is the loader's side of an INSERT: the simulator's gethistory of 400
// securities × 10 fields × 250 days (one million observations) in encoded row batches, decoded
// one at a time and written in one INSERT. "columns" is what the loader does (decodingSource:
// rowcodec.DecodeColumns, written from the columns); "rows" decodes each batch into
// observations first (rowcodec.Decode) and writes those. client-cpu-ns/row is this process's
// CPU per row (the server's is not in it).
//
//	go test ./services/loader -run '^$' -bench BenchmarkDecodeInsert -benchtime 3x
func BenchmarkDecodeInsert(b *testing.B) {
	spec := simdata.History("bench", 400, 250)
	bl := rowcodec.NewBuilder("bench-job", "gethistory", 0, 1)
	var items []*pendingBatch
	flush := func() error {
		batch, data, err := bl.Flush()
		items = append(items, &pendingBatch{hdr: rowcodec.Header{JobID: "bench-job", Seq: len(items),
			Observations: batch.Cols.Len()}, data: data, done: make(chan error, 1)})
		return err
	}
	nobs := 0
	err := simdata.Observations(spec, obs.MakeDate(2026, 11, 20), 7, func(o *obs.Observation) error {
		nobs++
		if err := bl.Add(o); err != nil || !bl.Full() {
			return err
		}
		return flush()
	})
	for err == nil && bl.Len() > 0 {
		err = flush()
	}
	if err != nil {
		b.Fatal(err)
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
			begin, cpu0 := time.Now(), chtest.ProcessCPU(b)
			for range b.N {
				n, err := st.InsertFrom(ctx, v.src())
				if err != nil || n != nobs {
					b.Fatalf("InsertFrom = %d, %v", n, err)
				}
			}
			rows := float64(b.N * nobs)
			b.ReportMetric(rows/time.Since(begin).Seconds(), "rows/s")
			b.ReportMetric(float64((chtest.ProcessCPU(b)-cpu0).Nanoseconds())/rows, "client-cpu-ns/row")
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
	s.cb = chstore.Batch{JobID: s.rb.JobID, Program: s.rb.Program, Version: s.rb.Version, SnapshotAt: s.rb.SnapshotAt, Cols: obs.ColumnsOf(s.rb.Obs), Rejects: s.rb.Rejects}
	return &s.cb
}
