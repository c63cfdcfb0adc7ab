package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
)

// The query leg's table: querySecs securities × the 10 history fields × 10 years of business
// days, loaded by queryRuns committed runs, each a revision of the data (a vendor correction
// of every value): 20 M observations at BENCH_SCALE=1.
const (
	querySecs  = 200
	queryYears = 10
	queryRuns  = 4
	queryTimes = 20 // queries timed of each kind
)

// legQuery fills a table of every committed run of a 10-year history, then times
// `marketpipe query` of one security's 10 fields over the 10 years, as readers see it now and
// as of a time between two runs (queryTimes each, p50), and reports the storage the runs take.
func (b *bench) legQuery(ctx context.Context) error {
	const db = "bench_query"
	st, err := b.openStore(ctx, db)
	if err != nil {
		return err
	}
	defer st.Close()
	spec := events.Spec{Name: "bench-query", Program: events.GetHistory, Fields: simdata.HistoryFields,
		Start: runDate.Time().AddDate(-queryYears, 0, 1).Format(time.DateOnly), End: runDate.String()}
	for i := range max(1, int(float64(querySecs)*b.scale+0.5)) {
		spec.Securities = append(spec.Securities, fmt.Sprintf("SEC%05d US Equity", i))
	}
	var asOf time.Time
	var total int64
	start := time.Now()
	for run := range queryRuns {
		n, err := insertRun(ctx, st, spec, fmt.Sprintf("bench-query-%d", run), uint64(run+1), simdata.RevisedSeed(simSeed, uint64(run)))
		if err != nil {
			return err
		}
		total += n
		if run == queryRuns/2 {
			asOf = time.Now() // between run queryRuns/2 and the next
		}
	}
	b.res.QueryTableObs = total
	log.Printf("query: %d runs of %d securities × %d fields × %d years committed: %d observations in %.1fs",
		queryRuns, len(spec.Securities), len(spec.Fields), queryYears, total, time.Since(start).Seconds())

	// The storage of keeping every run, after the merges a quiet table gets.
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{b.ch.Addr()}, DialTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "OPTIMIZE TABLE "+db+".observations FINAL"); err != nil {
		return fmt.Errorf("optimize: %w", err)
	}
	var rows, bytes uint64
	if err := conn.QueryRow(ctx, "SELECT sum(rows), sum(bytes_on_disk) FROM system.parts WHERE active AND database = ? AND table = 'observations'", db).
		Scan(&rows, &bytes); err != nil {
		return fmt.Errorf("system.parts: %w", err)
	}
	b.res.QueryBytesPerObs = round(float64(bytes)/float64(rows), 2)
	log.Printf("query: observations keeps %d rows (%d runs) in %.1f MB on disk: %.2f bytes per observation per run",
		rows, queryRuns, float64(bytes)/1e6, b.res.QueryBytesPerObs)

	bin := filepath.Join(b.tmp, "marketpipe")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/marketpipe")
	cmd.Dir = b.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/marketpipe: %v\n%s", err, out)
	}
	args := []string{"query", "--security", spec.Securities[len(spec.Securities)/2], "--format", "csv"}
	for _, f := range spec.Fields {
		args = append(args, "--field", f)
	}
	for _, q := range []struct {
		name string
		args []string
		p50  *float64
	}{
		{"current", args, &b.res.QueryCurrentP50MS},
		{"as of", append(slices.Clone(args), "--as-of", asOf.UTC().Format(time.RFC3339Nano)), &b.res.QueryAsOfP50MS},
	} {
		var took []time.Duration
		var lines int
		for range queryTimes {
			cmd := exec.CommandContext(ctx, bin, q.args...)
			cmd.Env = append(os.Environ(), "CLICKHOUSE_ADDR="+b.ch.Addr(), "CLICKHOUSE_DATABASE="+db)
			t0 := time.Now()
			out, err := cmd.Output()
			took = append(took, time.Since(t0))
			if err != nil {
				return fmt.Errorf("marketpipe %v: %w", q.args, err)
			}
			lines = countLines(out) - 1
		}
		slices.Sort(took)
		*q.p50 = round(float64(took[len(took)/2].Microseconds())/1000, 1)
		log.Printf("query %s: %d observations per query; p50 %.1f ms, min %.1f, max %.1f (of %d, the whole process)",
			q.name, lines, *q.p50, float64(took[0].Microseconds())/1000, float64(took[len(took)-1].Microseconds())/1000, len(took))
	}
	return nil
}

// insertRun inserts the simulator's data of spec for seed as one committed run.
func insertRun(ctx context.Context, st *chstore.Store, spec events.Spec, jobID string, version, seed uint64) (int64, error) {
	const batchRows = 500_000
	var n int64
	var rows []obs.Observation
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		batch := chstore.Batch{JobID: jobID, Program: spec.Program, Version: version, Cols: obs.ColumnsOf(rows)}
		if _, err := st.Insert(ctx, []chstore.Batch{batch}); err != nil {
			return err
		}
		rows = rows[:0]
		return nil
	}
	err := simdata.Observations(spec, runDate, seed, func(o *obs.Observation) error {
		rows = append(rows, *o)
		n++
		if len(rows) == batchRows {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return n, fmt.Errorf("insert run %s: %w", jobID, err)
	}
	return n, st.Commit(ctx, jobID, version, time.Now())
}

func countLines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}
