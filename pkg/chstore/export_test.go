package chstore

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// Observations calls fn for each stored observation of every run, committed or not (one per
// key and run, under FINAL), in key order: all of them, or only those loaded by jobID. It
// serves the tests, which check what was stored; readers see Query's. An error from fn stops
// the scan and is returned as is.
func (s *Store) Observations(ctx context.Context, jobID string, fn func(o obs.Observation, program, jobID string, version uint64) error) error {
	query := "SELECT security, field, date, value_num, value_str, value_kind, flag, program, job_id, version FROM " +
		s.table("observations") + " FINAL"
	var args []any
	if jobID != "" {
		query += " WHERE job_id = ?"
		args = append(args, jobID)
	}
	query += " ORDER BY security, field, date"
	// A condition on a non-key column must filter after FINAL has chosen the winning rows. In
	// PREWHERE it filters before (seen on 18.16: a superseded row of the job comes back), and
	// some servers' optimizer moves WHERE conditions there on its own; this integer setting
	// stops it, on old and new servers alike.
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"optimize_move_to_prewhere": 0}))
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("read observations: %w", err)
	}
	defer rows.Close()
	var (
		o        obs.Observation
		date     time.Time
		num      *float64
		kind     uint8
		program  string
		rowJobID string
		version  uint64
	)
	for rows.Next() {
		if err := rows.Scan(&o.Security, &o.Field, &date, &num, &o.Str, &kind, &o.Flag, &program, &rowJobID, &version); err != nil {
			return fmt.Errorf("read observations: %w", err)
		}
		o.Date = obs.DateOf(date)
		o.Kind = obs.Kind(kind)
		o.Num = 0
		if num != nil {
			o.Num = *num
		}
		if err := fn(o, program, rowJobID, version); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read observations: %w", err)
	}
	return nil
}

// TableEngines returns the engine of each table of the store's database.
func TableEngines(ctx context.Context, s *Store) (map[string]string, error) {
	rows, err := s.conn.Query(ctx, "SELECT name, engine FROM system.tables WHERE database = ?", s.cfg.Database)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	engines := map[string]string{}
	for rows.Next() {
		var name, engine string
		if err := rows.Scan(&name, &engine); err != nil {
			return nil, err
		}
		engines[name] = engine
	}
	return engines, rows.Err()
}

// CommitCount counts the committed runs.
func CommitCount(ctx context.Context, s *Store) (uint64, error) {
	var n uint64
	err := s.conn.QueryRow(ctx, "SELECT count() FROM (SELECT DISTINCT version FROM "+s.table("commits")+")").Scan(&n)
	return n, err
}

// CountSum counts a table's rows and sums their value_num.
func CountSum(ctx context.Context, s *Store, table string) (n uint64, sum float64, err error) {
	err = s.conn.QueryRow(ctx, "SELECT count(), sum(assumeNotNull(value_num)) FROM "+s.table(table)).Scan(&n, &sum)
	return n, sum, err
}

// ClusterDDL returns the statements Migrate runs for a new database under Config.Cluster.
func ClusterDDL(cluster, database string) []string {
	s := &Store{cfg: Config{Cluster: cluster, Database: database}, db: "`" + database + "`"}
	var out []string
	for _, stmt := range append(currentSchema[:len(currentSchema):len(currentSchema)], distributedView) {
		out = append(out, s.ddl(stmt))
	}
	return out
}
