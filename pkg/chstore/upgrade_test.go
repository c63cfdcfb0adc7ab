package chstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// schema1 is the first release's DDL, as it created databases.
var schema1 = []string{
	`CREATE TABLE {db}.observations (security String, field String, date Date, value_num Nullable(Float64),
		value_str String, value_kind UInt8, flag String, program String, job_id String, version UInt64,
		loaded_at DateTime) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(date) ORDER BY (security, field, date)`,
	`CREATE TABLE {db}.jobs (id String, name String, program String, generation Int64, state String, spec String,
		submitted_at DateTime, requested_at DateTime, ready_at DateTime, collected_at DateTime, transformed_at DateTime,
		loaded_at DateTime, failed_at DateTime, deadline DateTime, vendor_request_id String, vendor_account String,
		response_key String, file_key String, file_sha256 String, file_size Int64, polls Int64, batches Int64,
		rows_parsed Int64, rows_loaded Int64, rows_rejected Int64, error String, trace_id String, version UInt64,
		updated UInt64) ENGINE = ReplacingMergeTree(updated) ORDER BY id`,
	`CREATE TABLE {db}.rejects (job_id String, line UInt64, raw String, reason String, loaded_at DateTime)
		ENGINE = ReplacingMergeTree ORDER BY (job_id, line)`,
	`CREATE TABLE {db}.schema_migrations (version UInt32, name String, applied_at DateTime)
		ENGINE = ReplacingMergeTree ORDER BY version`,
}

// TestUpgradeFromSchema1 loads data into a database as the first release made it (two runs of
// one key, a duplicate, a job), migrates it in place, and checks that readers see exactly what
// FINAL showed before, once, and that the job is kept.
func TestUpgradeFromSchema1(t *testing.T) {
	ctx := context.Background()
	srv := chtest.Start(t)
	db := chtest.NewDatabase(t, srv)
	conn, err := chtest.Conn(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range schema1 {
		if err := conn.Exec(ctx, replaceDB(q, db)); err != nil {
			t.Fatal(err)
		}
	}
	// Exec of INSERT ... VALUES hangs on 18.16: rows go in through batches.
	send := func(query string, row ...any) {
		t.Helper()
		b, err := conn.PrepareBatch(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Append(row...); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
	send("INSERT INTO `"+db+"`.schema_migrations (version, name, applied_at)", uint32(1), "observations, jobs, rejects", time.Now())
	// Run 1 loaded S and T; run 2 reloaded S (superseding it) and was inserted twice.
	insert := func(job string, version uint64, sec string, base float64) {
		t.Helper()
		b, err := conn.PrepareBatch(ctx, "INSERT INTO `"+db+"`.observations (security, field, date, value_num, value_str, value_kind, flag, program, job_id, version, loaded_at)")
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range history(sec, 40, base) {
			v := o.Num
			if err := b.Append(o.Security, o.Field, o.Date.Time(), &v, "", uint8(o.Kind), "", "gethistory", job, version,
				time.Date(2026, 1, 5, 12, 0, i, 0, time.UTC)); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
	insert("run1", 1, "S", 100)
	insert("run1", 1, "T", 500)
	insert("run2", 2, "S", 200)
	insert("run2", 2, "S", 200)
	send("INSERT INTO `"+db+"`.jobs (id, name, program, generation, state, version, updated)",
		"run2", "eod", "gethistory", int64(0), "loaded", uint64(2), uint64(7))
	var before []string
	rows, err := conn.Query(ctx, "SELECT security, field, toString(date), value_num, job_id FROM `"+db+"`.observations FINAL ORDER BY security, field, date")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var sec, field, date, job string
		var v *float64
		if err := rows.Scan(&sec, &field, &date, &v, &job); err != nil {
			t.Fatal(err)
		}
		before = append(before, fmt.Sprintf("%s %s %s %v %s", sec, field, date, *v, job))
	}
	rows.Close()
	if len(before) != 80 {
		t.Fatalf("schema 1 FINAL gave %d rows, want 80", len(before))
	}

	s := open(t, srv, db)
	if err := s.MigrateAtStart(ctx); !errors.Is(err, chstore.ErrManualMigration) {
		t.Fatalf("MigrateAtStart on schema 1: %v, want ErrManualMigration", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil { // again: nothing to do
		t.Fatal(err)
	}
	var after []string
	err = s.Query(ctx, chstore.Filter{}, func(r *chstore.Row) error {
		after = append(after, fmt.Sprintf("%s %s %s %v %s", r.Security, r.Field, r.Date, r.Num, r.JobID))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(after, before) {
		t.Errorf("after the upgrade readers see\n%q\nbefore they saw\n%q", after, before)
	}
	if n, err := s.CountObservations(ctx, false); err != nil || n != 80 {
		t.Errorf("observations after the upgrade: %d rows, %v; want 80 (no duplicate)", n, err)
	}
	j, ok, err := s.Job(ctx, "run2")
	if err != nil || !ok || j.State != "loaded" || j.Version != 2 {
		t.Errorf("job after the upgrade: %+v %v %v", j, ok, err)
	}
	if v, err := s.AppliedSchemaVersion(ctx); err != nil || v != chstore.SchemaVersion() {
		t.Errorf("schema version %d, %v", v, err)
	}
	// New runs load and commit as usual on the upgraded tables.
	b := chstore.Batch{JobID: "run3", Program: "gethistory", Version: 3, Cols: obs.ColumnsOf(history("T", 40, 900))}
	if _, err := s.Insert(ctx, []chstore.Batch{b}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "run3", 3, time.Now()); err != nil {
		t.Fatal(err)
	}
	n := 0
	err = s.Query(ctx, chstore.Filter{Securities: []string{"T"}}, func(r *chstore.Row) error {
		if r.JobID != "run3" {
			return fmt.Errorf("T from %s after run3 committed", r.JobID)
		}
		n++
		return nil
	})
	if err != nil || n != 40 {
		t.Errorf("after run3: %d rows, %v", n, err)
	}
}

func replaceDB(q, db string) string {
	out := []byte{}
	for i := 0; i < len(q); i++ {
		if i+4 <= len(q) && q[i:i+4] == "{db}" {
			out = append(out, "`"+db+"`"...)
			i += 3
			continue
		}
		out = append(out, q[i])
	}
	return string(out)
}

// TestUpgradeFromSchema2 takes a database as schema 2 left it (jobs without the schedule,
// cancel and points columns) to the current schema at a service's start, with no manual step.
func TestUpgradeFromSchema2(t *testing.T) {
	ctx := context.Background()
	srv := chtest.Start(t)
	db := chtest.NewDatabase(t, srv)
	s := open(t, srv, db)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := chtest.Conn(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{
		"ALTER TABLE `" + db + "`.jobs DROP COLUMN schedule, DROP COLUMN scheduled_for, DROP COLUMN cancelled_at, DROP COLUMN cancelled_by, DROP COLUMN points_requested",
		"DROP TABLE `" + db + "`.schema_migrations",
		"CREATE TABLE `" + db + "`.schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = ReplacingMergeTree ORDER BY version",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []uint32{1, 2} {
		b, err := conn.PrepareBatch(ctx, "INSERT INTO `"+db+"`.schema_migrations (version, name, applied_at)")
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Append(v, "", time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MigrateAtStart(ctx); err != nil {
		t.Fatalf("MigrateAtStart on schema 2: %v", err)
	}
	if v, err := s.AppliedSchemaVersion(ctx); err != nil || v != chstore.SchemaVersion() {
		t.Errorf("schema version %d, %v", v, err)
	}
	at := time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)
	j := events.NewRun("eod-20261201t220000z", events.Spec{Name: "eod", Program: events.GetData}, at, time.Hour)
	j.Schedule, j.ScheduledFor = "eod", at
	j = j.Cancel("ops@host", at.Add(time.Minute))
	j.PointsRequested = 1234
	if err := s.RecordJob(ctx, j, 1); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Job(ctx, j.ID)
	if err != nil || !ok || got.Schedule != "eod" || !got.ScheduledFor.Equal(at) || got.State != events.Cancelled ||
		got.CancelledBy != "ops@host" || !got.CancelledAt.Equal(at.Add(time.Minute)) || got.PointsRequested != 1234 {
		t.Errorf("job after the upgrade: %+v %v %v", got, ok, err)
	}
}
