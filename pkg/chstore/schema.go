package chstore

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// migration is one numbered schema change. Its statements must be idempotent (IF NOT EXISTS,
// and the like): ClickHouse has no transactions or locks to stop two processes migrating at
// once, so both may run the same statements, and then both record the version, which the
// ReplacingMergeTree of schema_migrations collapses into one row.
//
// DDL here must be valid for ClickHouse 18.16 and current releases alike: no LowCardinality,
// no DateTime64, no table SETTINGS that 18.16 lacks. A later migration that needs a newer
// server must check Store.version and skip itself (without recording) on older ones.
type migration struct {
	version uint32
	name    string
	stmts   []string // {db} is replaced by the quoted database name
}

var migrations = []migration{
	{1, "observations, jobs, rejects", []string{
		// One row per security, field and date; the highest version (the latest run) wins
		// under FINAL and in background merges, which stay within a year's partition.
		//
		// By year, not month: an INSERT writes one part per partition its rows fall in, and
		// ClickHouse's cost of a part (a buffer of about a megabyte per column file, the page
		// faults of filling them, the merges after) dominated its CPU on history jobs. For the
		// reference job of bench/cmd/mpbench (5 M observations over 250 days, ten 500,000-row
		// INSERTs) monthly partitions made 121 parts and 3 M merged rows per run; yearly ones
		// one part per INSERT (its dates fall in one year), and the server used 3.0 to 3.3 s
		// of CPU per run instead of 5.9 to 7.0.
		// A daily job writes one part either way. Tables created by earlier versions keep
		// their monthly partitions, which work the same.
		`CREATE TABLE IF NOT EXISTS {db}.observations (
			security   String,
			field      String,
			date       Date,
			value_num  Nullable(Float64),
			value_str  String,
			value_kind UInt8,
			flag       String,
			program    String,
			job_id     String,
			version    UInt64,
			loaded_at  DateTime
		) ENGINE = ReplacingMergeTree(version)
		PARTITION BY toYear(date)
		ORDER BY (security, field, date)`,
		// One row per job run, rewritten by every stage with the whole state; the row with the
		// highest updated (the job event's stream sequence) is the current state.
		`CREATE TABLE IF NOT EXISTS {db}.jobs (
			id                String,
			name              String,
			program           String,
			generation        Int64,
			state             String,
			spec              String,
			submitted_at      DateTime,
			requested_at      DateTime,
			ready_at          DateTime,
			collected_at      DateTime,
			transformed_at    DateTime,
			loaded_at         DateTime,
			failed_at         DateTime,
			deadline          DateTime,
			vendor_request_id String,
			vendor_account    String,
			response_key      String,
			file_key          String,
			file_sha256       String,
			file_size         Int64,
			polls             Int64,
			batches           Int64,
			rows_parsed       Int64,
			rows_loaded       Int64,
			rows_rejected     Int64,
			error             String,
			trace_id          String,
			version           UInt64,
			updated           UInt64
		) ENGINE = ReplacingMergeTree(updated)
		ORDER BY id`,
		// A reject is identified by its job and line, so a redelivered batch's rejects
		// collapse too.
		`CREATE TABLE IF NOT EXISTS {db}.rejects (
			job_id    String,
			line      UInt64,
			raw       String,
			reason    String,
			loaded_at DateTime
		) ENGINE = ReplacingMergeTree
		ORDER BY (job_id, line)`,
	}},
}

// SchemaVersion is the schema version this package migrates to.
func SchemaVersion() uint32 { return migrations[len(migrations)-1].version }

// Migrate creates the database and tables, or upgrades them to SchemaVersion. It is
// idempotent and safe to run from several processes at once.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.exec(ctx, "CREATE DATABASE IF NOT EXISTS "+s.db, codeDatabaseAlreadyExists); err != nil {
		return fmt.Errorf("migrate: create database %s: %w", s.cfg.Database, err)
	}
	if err := s.exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.table("schema_migrations")+` (
			version    UInt32,
			name       String,
			applied_at DateTime
		) ENGINE = ReplacingMergeTree
		ORDER BY version`, codeTableAlreadyExists); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	applied, err := s.appliedMigrations(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range migrations {
		if applied[m.version] {
			continue
		}
		for _, stmt := range m.stmts {
			if err := s.exec(ctx, strings.ReplaceAll(stmt, "{db}", s.db), codeTableAlreadyExists); err != nil {
				return fmt.Errorf("migrate: version %d (%s): %w", m.version, m.name, err)
			}
		}
		batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table("schema_migrations")+" (version, name, applied_at)")
		if err != nil {
			return fmt.Errorf("migrate: record version %d: %w", m.version, err)
		}
		if err := batch.Append(m.version, m.name, time.Now().UTC().Truncate(time.Second)); err != nil {
			batch.Abort()
			return fmt.Errorf("migrate: record version %d: %w", m.version, err)
		}
		if err := batch.Send(); err != nil {
			return fmt.Errorf("migrate: record version %d: %w", m.version, err)
		}
	}
	return nil
}

// AppliedSchemaVersion returns the highest schema version recorded in the database, 0 if none.
func (s *Store) AppliedSchemaVersion(ctx context.Context) (uint32, error) {
	applied, err := s.appliedMigrations(ctx)
	if err != nil {
		return 0, err
	}
	var top uint32
	for v := range applied {
		top = max(top, v)
	}
	return top, nil
}

func (s *Store) appliedMigrations(ctx context.Context) (map[uint32]bool, error) {
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT version FROM "+s.table("schema_migrations"))
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	applied := map[uint32]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return applied, nil
}

// exec runs DDL, treating the given exception codes as success: concurrent CREATE ... IF NOT
// EXISTS can still lose the race on 18.16 and report that the object exists.
func (s *Store) exec(ctx context.Context, query string, okCodes ...int32) error {
	err := s.conn.Exec(ctx, query)
	if err != nil && isException(err, okCodes...) {
		return nil
	}
	return err
}
