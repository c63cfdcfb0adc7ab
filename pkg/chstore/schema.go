package chstore

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// The schema has two parts: currentSchema, which a new database gets in one step, and
// migrations, which upgrade a database made by an earlier release in place. Both must give the
// same tables.
//
// DDL here must be valid for ClickHouse 18.16 and current releases alike: no LowCardinality,
// no DateTime64, no table SETTINGS that 18.16 lacks. {db} is replaced by the quoted database
// name.

// obsKey is the key of an observation as readers see it: one value per key per run. A getdata
// snapshot (program getdata, snapshot_at its file's time) and a gethistory row (snapshot_at 0)
// never share one.
const obsKey = "security, field, date, program, snapshot_at"

// Every run's rows stay: version is in the sorting key, so merges collapse only the duplicate
// rows of one run (a batch inserted twice) and never an earlier run's rows, which "as of" queries
// still read. Readers see only committed runs (commits; observations_current).
//
// By year, not month: an INSERT writes one part per partition its rows fall in, and
// ClickHouse's cost of a part dominated its CPU on history jobs (docs/performance.md).
const createObservations = `CREATE TABLE IF NOT EXISTS {db}.%s (
	security    String,
	field       String,
	date        Date,
	value_num   Nullable(Float64),
	value_str   String,
	value_kind  UInt8,
	flag        String,
	program     String,
	snapshot_at DateTime,
	job_id      String,
	version     UInt64,
	loaded_at   DateTime
) ENGINE = ReplacingMergeTree
PARTITION BY toYear(date)
ORDER BY (` + obsKey + `, version)`

// One row per job run (generation), rewritten by every stage with the run's whole state; the
// row with the highest updated (the job event's stream sequence) is the run's state, and an
// event of one generation never touches another's row.
const createJobs = `CREATE TABLE IF NOT EXISTS {db}.%s (
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
	updated           UInt64,
	warnings          String,
	schedule          String,
	scheduled_for     DateTime,
	cancelled_at      DateTime,
	cancelled_by      String,
	points_requested  Int64
) ENGINE = ReplacingMergeTree(updated)
ORDER BY (id, generation)`

// A reject is identified by its job and line, so a redelivered batch's rejects collapse too.
const createRejects = `CREATE TABLE IF NOT EXISTS {db}.rejects (
	job_id    String,
	line      UInt64,
	raw       String,
	reason    String,
	loaded_at DateTime
) ENGINE = ReplacingMergeTree
ORDER BY (job_id, line)`

// A run's rows become visible when its one row here is written, after all of them are
// inserted: a single-row INSERT is atomic, which is all the atomicity a reader needs.
// committed_ns is the commit time to the nanosecond, for "as of" queries; writing a commit
// twice (a redelivery) is harmless.
const createCommits = `CREATE TABLE IF NOT EXISTS {db}.commits (
	job_id       String,
	version      UInt64,
	committed_at DateTime,
	committed_ns UInt64
) ENGINE = ReplacingMergeTree
ORDER BY version`

// currentSchema is what a new database gets.
var currentSchema = []string{
	fmt.Sprintf(createObservations, "observations"),
	fmt.Sprintf(createJobs, "jobs"),
	createRejects,
	createCommits,
	"CREATE VIEW IF NOT EXISTS {db}.observations_current AS " + CurrentSQL("{db}", Filter{}),
}

// distributedView is what a replicated database (Config.Cluster) has besides currentSchema:
// observations_distributed, a Distributed table over every server's observations_current that
// readers of any server of the cluster may query, one replica of each shard answering. The
// loader writes only to the shard of the server it connects to, so a cluster of one shard is
// what this is for; there it gives the same rows as observations_current on a replica that is
// not behind. {cluster} and {database} are filled by ddl.
const distributedView = "CREATE TABLE IF NOT EXISTS {db}.observations_distributed AS {db}.observations_current " +
	"ENGINE = Distributed({cluster}, {database}, observations_current)"

// migration is one numbered upgrade of a database made by an earlier release. Its steps must be
// safe to run again after a failure halfway. ClickHouse has no transactions or locks to stop two
// processes migrating at once: a migration that copies tables (manual) runs only from
// `marketpipe migrate`, never from a service at start.
type migration struct {
	version uint32
	name    string
	manual  bool
	run     func(ctx context.Context, s *Store) error
}

var migrations = []migration{
	// Schema 1, the first release's tables, is what currentSchema replaced; a database made by
	// that release has it recorded.
	{1, "observations, jobs, rejects", false, nil},
	{2, "every run kept and committed atomically: observations by run, commits, observations_current, jobs by generation",
		true, upgradeToRuns},
	{3, "jobs: schedule, scheduled_for, cancelled_at, cancelled_by", false, addJobColumns(jobColumns3)},
	{4, "jobs: points_requested", false, addJobColumns(jobColumns4)},
}

// jobColumns3 are the columns schema 3 adds to jobs, with their types.
var jobColumns3 = [][2]string{{"schedule", "String"}, {"scheduled_for", "DateTime"},
	{"cancelled_at", "DateTime"}, {"cancelled_by", "String"}}

// jobColumns4 are the columns schema 4 adds to jobs: the data points a run asked the vendor for.
var jobColumns4 = [][2]string{{"points_requested", "Int64"}}

// addJobColumns returns the step that adds columns to jobs, those it lacks: a step safe to run
// again, and from several services at once (a second ADD COLUMN of one column is refused and
// skipped).
func addJobColumns(columns [][2]string) func(ctx context.Context, s *Store) error {
	return func(ctx context.Context, s *Store) error { return s.addJobColumns(ctx, columns) }
}

func (s *Store) addJobColumns(ctx context.Context, columns [][2]string) error {
	for _, c := range columns {
		var n uint64
		if err := s.conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = 'jobs' AND name = ?",
			s.cfg.Database, c[0]).Scan(&n); err != nil {
			return fmt.Errorf("look for jobs.%s: %w", c[0], err)
		}
		if n > 0 {
			continue
		}
		if err := s.exec(ctx, s.ddl("ALTER TABLE {db}.jobs ADD COLUMN "+c[0]+" "+c[1]), codeDuplicateColumn); err != nil {
			return fmt.Errorf("add jobs.%s: %w", c[0], err)
		}
	}
	return nil
}

// SchemaVersion is the schema version this package migrates to.
func SchemaVersion() uint32 { return migrations[len(migrations)-1].version }

// ErrManualMigration is returned (wrapped) by MigrateAtStart when the database needs a
// migration that only `marketpipe migrate` runs.
var ErrManualMigration = errors.New("the database needs `marketpipe migrate`")

// Migrate creates the database and tables, or upgrades them to SchemaVersion, copying tables
// where an upgrade needs it. It is idempotent. Run it from one process at a time
// (`marketpipe migrate`); services use MigrateAtStart.
func (s *Store) Migrate(ctx context.Context) error { return s.migrate(ctx, true) }

// MigrateAtStart is Migrate for a service starting: it creates a new database's tables, which
// is safe from several processes at once, and applies the upgrades that are, but returns
// ErrManualMigration instead of copying tables.
func (s *Store) MigrateAtStart(ctx context.Context) error { return s.migrate(ctx, false) }

func (s *Store) migrate(ctx context.Context, manual bool) error {
	if err := s.exec(ctx, s.ddl("CREATE DATABASE IF NOT EXISTS {db}"), codeDatabaseAlreadyExists); err != nil {
		return fmt.Errorf("migrate: create database %s: %w", s.cfg.Database, err)
	}
	if err := s.exec(ctx, s.ddl(`CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
			version    UInt32,
			name       String,
			applied_at DateTime
		) ENGINE = ReplacingMergeTree
		ORDER BY version`), codeTableAlreadyExists); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	applied, err := s.appliedMigrations(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if len(applied) == 0 {
		// No record: a new database (perhaps being created by another process right now), or
		// schema 1's tables from before it recorded itself, told apart by the sorting key.
		legacy := false
		if exists, err := s.tableExists(ctx, "observations"); err != nil {
			return fmt.Errorf("migrate: %w", err)
		} else if exists {
			key, err := s.sortingKey(ctx, "observations")
			if err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			legacy = key == schema1ObsKey
		}
		if !legacy {
			// A new database: the current schema in one step.
			schema := currentSchema
			if s.cfg.Cluster != "" {
				schema = append(schema[:len(schema):len(schema)], distributedView)
			}
			for _, stmt := range schema {
				if err := s.exec(ctx, s.ddl(stmt), codeTableAlreadyExists); err != nil {
					return fmt.Errorf("migrate: create schema: %w", err)
				}
			}
			for _, m := range migrations {
				if err := s.recordMigration(ctx, m); err != nil {
					return err
				}
			}
			return nil
		}
		// Tables without a record: made by schema 1 before it recorded itself.
		if s.cfg.Cluster != "" {
			return errors.New("migrate: the observations table is schema 1's, from before replication; upgrade it without CLICKHOUSE_CLUSTER first")
		}
		applied[1] = true
	}
	for _, m := range migrations {
		if applied[m.version] {
			continue
		}
		if m.manual && s.cfg.Cluster != "" {
			return fmt.Errorf("migrate: schema %d (%s) copies tables, which is not done ON CLUSTER: upgrade without CLICKHOUSE_CLUSTER first", m.version, m.name)
		}
		if m.manual && !manual {
			return fmt.Errorf("migrate: schema %d (%s): %w", m.version, m.name, ErrManualMigration)
		}
		if m.run != nil {
			if err := m.run(ctx, s); err != nil {
				return fmt.Errorf("migrate: version %d (%s): %w", m.version, m.name, err)
			}
		}
		if err := s.recordMigration(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) recordMigration(ctx context.Context, m migration) error {
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
	return nil
}

// schema1ObsKey is the sorting key of schema 1's observations table.
const schema1ObsKey = "security, field, date"

// upgradeToRuns turns a schema 1 database into schema 2 in place. Every row readers saw stays
// visible as it was: observations are copied as FINAL showed them (one row per key, the
// latest version) into the new layout, and each (job, version) found becomes a committed run.
// jobs rows are copied into the table keyed by generation. Each copy is checked by counting
// before the old table is dropped; a failure leaves the old table in place, and running the
// migration again starts the copy over.
func upgradeToRuns(ctx context.Context, s *Store) error {
	if err := s.exec(ctx, strings.ReplaceAll(createCommits, "{db}", s.db), codeTableAlreadyExists); err != nil {
		return fmt.Errorf("create commits: %w", err)
	}
	obsCols := "security, field, date, value_num, value_str, value_kind, flag, program, snapshot_at, job_id, version, loaded_at"
	if err := s.copyTable(ctx, "observations", schema1ObsKey, createObservations, obsCols,
		"SELECT security, field, date, value_num, value_str, value_kind, flag, program, toDateTime(0), job_id, version, loaded_at FROM {src} FINAL",
		"SELECT count() FROM {src} FINAL",
		// Every run whose rows readers saw is a committed run, committed when its last row was loaded.
		"INSERT INTO {db}.commits (job_id, version, committed_at, committed_ns) "+
			"SELECT job_id, version, max(loaded_at), toUInt64(max(loaded_at)) * 1000000000 FROM {dst} GROUP BY job_id, version",
	); err != nil {
		return err
	}
	jobCols := jobColumns + ", warnings"
	if err := s.copyTable(ctx, "jobs", "id", createJobs, jobCols,
		"SELECT "+jobColumns+", '' FROM {src}", "SELECT count() FROM {src}", ""); err != nil {
		return err
	}
	view := "CREATE VIEW IF NOT EXISTS {db}.observations_current AS " + CurrentSQL("{db}", Filter{})
	if err := s.exec(ctx, strings.ReplaceAll(view, "{db}", s.db), codeTableAlreadyExists); err != nil {
		return fmt.Errorf("create observations_current: %w", err)
	}
	return nil
}

// copyTable rebuilds table in a new layout when its sorting key is still oldKey: it creates
// <table>_migrating with create (a format string taking the table's name), copies the rows
// with selectSQL (from {src}), checks that it holds as many rows as countSQL finds in the old
// one, runs after (if any; {dst} is the new table), then swaps the two and drops the old one.
func (s *Store) copyTable(ctx context.Context, table, oldKey, create, cols, selectSQL, countSQL, after string) error {
	key, err := s.sortingKey(ctx, table)
	if err != nil {
		return err
	}
	if key != oldKey {
		return nil // already in the new layout
	}
	tmp := table + "_migrating"
	sub := func(q string) string {
		return strings.NewReplacer("{db}", s.db, "{src}", s.table(table), "{dst}", s.table(tmp)).Replace(q)
	}
	steps := []string{
		"DROP TABLE IF EXISTS " + s.table(tmp),
		sub(fmt.Sprintf(create, tmp)),
		"INSERT INTO " + s.table(tmp) + " (" + cols + ") " + sub(selectSQL),
	}
	for _, q := range steps {
		if err := s.conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("copy %s: %w", table, err)
		}
	}
	var want, got uint64
	if err := s.conn.QueryRow(ctx, sub(countSQL)).Scan(&want); err != nil {
		return fmt.Errorf("count %s: %w", table, err)
	}
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.table(tmp)).Scan(&got); err != nil {
		return fmt.Errorf("count %s: %w", tmp, err)
	}
	if got != want {
		return fmt.Errorf("copy %s: %d rows copied, %d in the table; it is left as it was", table, got, want)
	}
	if after != "" {
		if err := s.conn.Exec(ctx, sub(after)); err != nil {
			return fmt.Errorf("copy %s: %w", table, err)
		}
	}
	old := table + "_schema1"
	for _, q := range []string{
		"DROP TABLE IF EXISTS " + s.table(old),
		"RENAME TABLE " + s.table(table) + " TO " + s.table(old) + ", " + s.table(tmp) + " TO " + s.table(table),
		"DROP TABLE " + s.table(old),
	} {
		if err := s.conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("swap %s: %w", table, err)
		}
	}
	return nil
}

// sortingKey returns a table's sorting key as system.tables shows it.
func (s *Store) sortingKey(ctx context.Context, table string) (string, error) {
	var key string
	err := s.conn.QueryRow(ctx, "SELECT sorting_key FROM system.tables WHERE database = ? AND name = ?",
		s.cfg.Database, table).Scan(&key)
	if err != nil {
		return "", fmt.Errorf("sorting key of %s: %w", table, err)
	}
	return key, nil
}

// tableExists reports whether the database has the table.
func (s *Store) tableExists(ctx context.Context, table string) (bool, error) {
	var n uint64
	err := s.conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = ?",
		s.cfg.Database, table).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look for table %s: %w", table, err)
	}
	return n > 0, nil
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

// ddlHead is the part of a DDL statement that ON CLUSTER follows; ddlEngine a table's engine.
var (
	ddlHead   = regexp.MustCompile(`^(CREATE (?:TABLE|VIEW|DATABASE) IF NOT EXISTS|ALTER TABLE) \{db\}(?:\.([A-Za-z_]+))?`)
	ddlEngine = regexp.MustCompile(`ENGINE = ReplacingMergeTree(?:\(([a-z_]+)\))?`)
)

// ddl returns a statement of this file for the store's database: {db} replaced and, under
// Config.Cluster, run ON CLUSTER with each table's engine replicated, its ZooKeeper path
// /clickhouse/tables/{shard}/<database>/<table> and its replica {replica}: the server's macros.
func (s *Store) ddl(stmt string) string {
	if s.cfg.Cluster != "" {
		table := ""
		if m := ddlHead.FindStringSubmatch(stmt); m != nil {
			table = m[2]
			stmt = m[0] + " ON CLUSTER `" + s.cfg.Cluster + "`" + stmt[len(m[0]):]
		}
		stmt = ddlEngine.ReplaceAllStringFunc(stmt, func(e string) string {
			args := "'/clickhouse/tables/{shard}/" + s.cfg.Database + "/" + table + "', '{replica}'"
			if v := ddlEngine.FindStringSubmatch(e)[1]; v != "" {
				args += ", " + v
			}
			return "ENGINE = ReplicatedReplacingMergeTree(" + args + ")"
		})
	}
	return strings.NewReplacer("{db}", s.db, "{cluster}", s.cfg.Cluster, "{database}", s.cfg.Database).Replace(stmt)
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
