package chstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// Filter selects the observations a query returns. Zero fields select everything.
type Filter struct {
	Securities, Fields []string
	From, To           time.Time // dates, inclusive; zero: open
	// AsOf, when set, answers as of that time: each key's value from the latest run committed
	// at or before it. Zero: as readers see the table now.
	AsOf time.Time
}

// currentSQL is the query behind observations_current and `marketpipe query`: per key, the
// value of the latest (highest-version) committed run, without FINAL and whatever merges have
// or have not done. The filter goes inside, next to the table, so that ClickHouse reads only
// the keys asked for (18.16 does not push a filter on a view into it).
//
// The values travel in one tuple through argMax: argMax on a Nullable column would skip the
// NULLs (a marker), and pick an older run's number instead.
func currentSQL(db string, f Filter) (string, []any) {
	var where []string
	var args []any
	commits := "SELECT version FROM " + db + ".commits"
	if !f.AsOf.IsZero() {
		commits += " WHERE committed_ns <= ?"
		args = append(args, uint64(f.AsOf.UnixNano()))
	}
	where = append(where, "version IN ("+commits+")")
	// One placeholder per value: the driver would bind a slice as an array, which IN refuses.
	in := func(col string, vals []string) {
		if len(vals) == 0 {
			return
		}
		where = append(where, col+" IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(vals)), ", ")+")")
		for _, v := range vals {
			args = append(args, v)
		}
	}
	in("security", f.Securities)
	in("field", f.Fields)
	if !f.From.IsZero() {
		where = append(where, "date >= toDate(?)")
		args = append(args, f.From.Format(time.DateOnly))
	}
	if !f.To.IsZero() {
		where = append(where, "date <= toDate(?)")
		args = append(args, f.To.Format(time.DateOnly))
	}
	q := "SELECT " + obsKey + ", tupleElement(v, 1) AS value_num, tupleElement(v, 2) AS value_str, " +
		"tupleElement(v, 3) AS value_kind, tupleElement(v, 4) AS flag, tupleElement(v, 5) AS job_id, " +
		"tupleElement(v, 6) AS loaded_at, ver AS version FROM (" +
		"SELECT " + obsKey + ", argMax(tuple(value_num, value_str, value_kind, flag, job_id, loaded_at), version) AS v, " +
		"max(version) AS ver FROM " + db + ".observations WHERE " + strings.Join(where, " AND ") +
		" GROUP BY " + obsKey + ")"
	return q, args
}

// CurrentSQL returns the query of observations_current for database db (quoted as SQL needs),
// with the filter's values as ? placeholders and the values to bind to them: what people
// querying ClickHouse directly can use (README, "Querying").
func CurrentSQL(db string, f Filter) string {
	q, _ := currentSQL(db, f)
	return q
}

// Row is one observation as readers see it.
type Row struct {
	obs.Observation
	Program    string
	SnapshotAt time.Time // zero for history
	JobID      string
	Version    uint64
	LoadedAt   time.Time
}

// Query calls fn with each observation the filter selects, as readers see them now or as of
// f.AsOf, in key order. fn may keep the *Row only until it returns.
func (s *Store) Query(ctx context.Context, f Filter, fn func(*Row) error) error {
	q, args := currentSQL(s.db, f)
	rows, err := s.conn.Query(ctx, q+" ORDER BY "+obsKey, args...)
	if err != nil {
		return fmt.Errorf("query observations: %w", err)
	}
	defer rows.Close()
	var (
		r                 Row
		date, snap, loadT time.Time
		num               *float64
		kind              uint8
	)
	for rows.Next() {
		if err := rows.Scan(&r.Security, &r.Field, &date, &r.Program, &snap, &num, &r.Str, &kind, &r.Flag,
			&r.JobID, &loadT, &r.Version); err != nil {
			return fmt.Errorf("query observations: %w", err)
		}
		r.Date = obs.DateOf(date)
		r.SnapshotAt = fromDateTime(snap)
		r.LoadedAt = fromDateTime(loadT)
		r.Kind = obs.Kind(kind)
		r.Num = 0
		if num != nil {
			r.Num = *num
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query observations: %w", err)
	}
	return nil
}

// Commit makes a run's rows visible to readers: call it once every row of the run is
// inserted. Committing a run twice is harmless.
func (s *Store) Commit(ctx context.Context, jobID string, version uint64, at time.Time) error {
	ctx, done := s.quorumInsert(ctx, "commits")
	defer done()
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table("commits")+" (job_id, version, committed_at, committed_ns)")
	if err != nil {
		return fmt.Errorf("commit run %s: %w", jobID, err)
	}
	defer batch.Close()
	if err := batch.Append(jobID, version, toDateTime(at), uint64(at.UnixNano())); err != nil {
		batch.Abort()
		return fmt.Errorf("commit run %s: %w", jobID, err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("commit run %s: %w", jobID, err)
	}
	return nil
}

// Committed reports whether the run of this version is committed.
func (s *Store) Committed(ctx context.Context, version uint64) (bool, error) {
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.table("commits")+" WHERE version = ?", version).Scan(&n); err != nil {
		return false, fmt.Errorf("read commits: %w", err)
	}
	return n > 0, nil
}
