package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// ---- 1. direct ----

// directRows is how many observations go into one INSERT of the direct leg (the loader's
// default LOADER_MAX_INSERT_ROWS).
var directRows = 500_000

func (b *bench) legDirect(ctx context.Context) error {
	if v := os.Getenv("BENCH_DIRECT_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("BENCH_DIRECT_ROWS=%q: want a positive integer", v)
		}
		directRows = n
	}
	// Parse alone first: the parser's share, and the file is in the page cache for all runs.
	t0 := time.Now()
	n, err := parseOnly(b.refPath)
	if err != nil {
		return err
	}
	b.res.DirectParseS = round(time.Since(t0).Seconds(), 3)
	log.Printf("direct: parse only: %d observations in %.2fs (%.0f obs/s, %.0f MB/s)", n, b.res.DirectParseS,
		float64(n)/b.res.DirectParseS, float64(b.refBytes)/1e6/b.res.DirectParseS)

	stop, err := b.selfProfile("direct")
	if err != nil {
		return err
	}
	defer stop()
	// One INSERT at a time, then two concurrent ones; the best is the direct figure.
	for _, workers := range []int{1, 2} {
		if _, err := b.directRun(ctx, "direct", fmt.Sprintf("bench_direct%d", workers), workers); err != nil {
			return err
		}
	}
	return nil
}

// directStore waits for ClickHouse to be idle and opens a fresh database db for a direct run.
func (b *bench) directStore(ctx context.Context, db string) (*chstore.Store, error) {
	b.settle(ctx)
	return b.openStore(ctx, db)
}

// directRun parses the reference file and inserts it into a fresh database db with workers
// INSERTs at a time, once ClickHouse is idle, and logs it under label; the result counts
// towards direct_s if it is the best so far.
func (b *bench) directRun(ctx context.Context, label, db string, workers int) (time.Duration, error) {
	st, err := b.directStore(ctx, db)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	f, err := os.Open(b.refPath)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	t0, self0, ch0 := time.Now(), selfCPU(), b.chCPU()
	rows, err := directLoad(ctx, st, f, "bench-direct-"+runID, uint64(time.Now().UnixNano()), workers)
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	// The CPU of this process (parse and blocks) and of the server, against the run's time:
	// how much of the two cores the direct run leaves idle.
	self, ch := selfCPU()-self0, b.chCPU()-ch0
	log.Printf("%s: parse + insert (%d-row INSERTs, %d at a time, overlapping the parse): %d observations in %.2fs = %.0f obs/s; CPU: this process %.2f s, clickhouse-server %.2f s (%.2f cores)",
		label, directRows, workers, rows, d.Seconds(), float64(rows)/d.Seconds(), self.Seconds(), ch.Seconds(), (self+ch).Seconds()/d.Seconds())
	if cnt, err := st.CountObservations(ctx, false); err != nil || cnt != uint64(b.refObs) {
		return 0, fmt.Errorf("direct: %d rows in %s.observations (%v), want %d", cnt, db, err, b.refObs)
	}
	if b.res.DirectS == 0 || d.Seconds() < b.res.DirectS {
		b.res.DirectS = round(d.Seconds(), 3)
		b.res.DirectRowsPerS = round(float64(rows)/d.Seconds(), 0)
		b.res.DirectWorkers = workers
	}
	return d, nil
}

// directDownloadRun is the direct run as a script that fetches the file from the vendor runs
// it: this process downloads the reference job's reply from a simulator of its own through
// pkg/vendor (gzip, the SHA-512 checked), parses it as it arrives and inserts it, two INSERTs
// at a time, into a fresh database db. It is timed from the download's start, as the pipeline
// is from "ready"; the simulator prepares the file before, when it is first listed.
func (b *bench) directDownloadRun(ctx context.Context, label, db string) (time.Duration, error) {
	st, err := b.directStore(ctx, db)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	sim := vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount, Seed: simSeed, RunDate: runDate.Time()})
	defer sim.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	vc, err := vendor.New(vendor.Config{BaseURL: "http://" + ln.Addr().String() + vendorsim.Prefix})
	if err != nil {
		return 0, err
	}
	s := b.refSpec
	id := fmt.Sprintf("benchdl%s%d", runID, time.Now().UnixNano()%1e6) // HAPI: 1 to 21 letters or digits
	if err := vc.Submit(ctx, vendor.Request{Identifier: id, Title: s.Name, Program: s.Program,
		Securities: s.Securities, Fields: s.Fields, Start: s.Start, End: s.End}); err != nil {
		return 0, fmt.Errorf("%s: submit: %w", label, err)
	}
	var out *vendor.Output
	for out == nil {
		if out, err = vc.Output(ctx, id); err != nil {
			return 0, fmt.Errorf("%s: output: %w", label, err)
		}
		if out == nil {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	t0 := time.Now()
	body, err := vc.Download(ctx, out.Key, out.Digest, out.ContentLength)
	if err != nil {
		return 0, fmt.Errorf("%s: download: %w", label, err)
	}
	rows, err := directLoad(ctx, st, body, "bench-direct-dl-"+runID, uint64(time.Now().UnixNano()), 2)
	if err == nil {
		// The parser stops at the file's last line; the digest is checked at the body's end.
		_, err = io.Copy(io.Discard, body)
	}
	body.Close()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", label, err)
	}
	log.Printf("%s: download, parse + insert (%d-row INSERTs, 2 at a time, overlapping the download): %d observations in %.2fs = %.0f obs/s",
		label, directRows, rows, d.Seconds(), float64(rows)/d.Seconds())
	if cnt, err := st.CountObservations(ctx, false); err != nil || cnt != uint64(b.refObs) {
		return 0, fmt.Errorf("%s: %d rows in %s.observations (%v), want %d", label, cnt, db, err, b.refObs)
	}
	if b.res.DirectDownloadS == 0 || d.Seconds() < b.res.DirectDownloadS {
		b.res.DirectDownloadS = round(d.Seconds(), 3)
	}
	return d, nil
}

func parseOnly(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rd, err := dlformat.NewReader(f)
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		_, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

// directLoad parses the reply file r gives and inserts its observations in INSERTs of
// directRows rows, the parse of the next INSERT overlapping the current one.
func directLoad(ctx context.Context, st *chstore.Store, r io.Reader, jobID string, version uint64, workers int) (int64, error) {
	rd, err := dlformat.NewReader(r)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan []obs.Observation, 1)
	done := make(chan error, workers)
	program := rd.Program()
	for range workers {
		go func() {
			var err error
			for batch := range work {
				if err == nil {
					_, err = st.Insert(ctx, []chstore.Batch{{JobID: jobID, Program: program, Version: version, Cols: obs.ColumnsOf(batch)}})
					if err != nil {
						cancel()
					}
				}
			}
			done <- err
		}()
	}
	var n int64
	buf := make([]obs.Observation, 0, directRows)
	var perr error
	for {
		o, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			perr = err
			break
		}
		buf = append(buf, *o)
		n++
		if len(buf) == directRows {
			select {
			case work <- buf:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			buf = make([]obs.Observation, 0, directRows)
		}
	}
	if len(buf) > 0 && perr == nil && ctx.Err() == nil {
		work <- buf
	}
	close(work)
	var ierr error
	for range workers {
		if err := <-done; err != nil && ierr == nil {
			ierr = err
		}
	}
	if ierr != nil {
		return n, ierr
	}
	if perr != nil {
		return n, perr
	}
	return n, ctx.Err()
}
