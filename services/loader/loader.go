// Package loader is the last stage. It has three consumers:
//
//   - loader (mp.rows.>): inserts row batches into ClickHouse's observations table through a
//     group commit, and records each loaded batch in the load ledger (KV mp_ledger);
//   - loader-complete (mp.job.*.transformed): once the ledger holds every batch of a job run,
//     commits the run and publishes "loaded";
//   - jobs (mp.job.>): keeps the jobs table current with the latest event of each job run.
//
// Only authentic batches load: a batch must be of a run known from the job events (its
// "collected" event), carry that run's version, and come on its job's subject; anything else is
// dead-lettered with the reason and counted (marketpipe_batches_refused_total).
//
// Loading is idempotent: a batch already in the ledger is acked without a second insert, and a
// batch inserted twice (a crash between insert and ledger) is the same run's rows, which readers
// see once (chstore's observations_current). A run becomes visible only when loader-complete
// commits it, after every batch is loaded; a strict run with warnings fails instead.
package loader

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/coverage"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// Stage names.
const (
	Name         = "loader"
	CompleteName = "loader-complete"
	JobsName     = "jobs"
)

// Ledger records which batches are loaded.
type Ledger interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Put(ctx context.Context, key string, value []byte) (uint64, error)
}

// RowsHandler loads one row batch per message.
type RowsHandler struct {
	commit  *groupCommit
	runs    *runCache
	Ledger  Ledger
	Loaded  Counter             // observations loaded; nil: not counted
	Refused func(reason string) // counts a refused batch; nil: not counted
}

// Handle implements stage.Handler. The batch's header is read without decoding its rows; the
// rows are decoded when its INSERT is written.
func (h *RowsHandler) Handle(ctx context.Context, m *stage.Message) error {
	hdr, err := rowcodec.Peek(m.Data())
	if err != nil {
		return stage.Permanent(fmt.Errorf("decode row batch: %w", err))
	}
	if err := h.runs.check(ctx, m.Subject(), hdr); err != nil {
		var r *refused
		if errors.As(err, &r) {
			return h.asPermanent(r)
		}
		return fmt.Errorf("check row batch: %w", err)
	}
	key := natsx.LedgerKey(hdr.JobID, hdr.Generation, hdr.Seq)
	if _, err := h.Ledger.Get(ctx, key); err == nil {
		return nil // loaded before; this is a redelivery or a republished duplicate
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("ledger %s: %w", key, err)
	}
	err = h.commit.Insert(ctx, hdr, m.Data(), m.Header().Get(events.MoreRowsHeader) == "1")
	if errors.Is(err, chstore.ErrDateOutOfRange) || errors.Is(err, rowcodec.ErrCorrupt) || errors.Is(err, rowcodec.ErrVersion) {
		// No retry can store it; the job then fails for its missing batch.
		return stage.Permanent(fmt.Errorf("insert batch %s: %w", key, err))
	}
	if err != nil {
		// ClickHouse unavailable or failing: retried without limit (the consumer's MaxDeliver
		// is unbounded), so an outage leaves messages pending, never dead-lettered.
		return fmt.Errorf("insert batch %s: %w", key, err)
	}
	if _, err := h.Ledger.Put(ctx, key, []byte(strconv.Itoa(hdr.Observations))); err != nil {
		return fmt.Errorf("record batch %s in ledger: %w", key, err)
	}
	if h.Loaded != nil {
		h.Loaded.Add(float64(hdr.Observations))
	}
	return nil
}

// Committer makes a run's rows visible to readers.
type Committer interface {
	Commit(ctx context.Context, jobID string, version uint64, at time.Time) error
}

// CompleteHandler commits a transformed run and publishes "loaded" once every batch of it is
// in the ledger; a strict run whose file had warnings fails instead, uncommitted.
type CompleteHandler struct {
	Count   func(ctx context.Context, jobID string, generation int) (int, error)
	Commits Committer
	// Ends is where a run's end is claimed before its commit (events.EndsBucket); nil: not
	// claimed (tests of the commit alone).
	Ends jetstream.KeyValue
	// Coverage records what a committed gethistory run loaded, with its securities list from
	// Specs when the job event refers to one; nil: not recorded.
	Coverage Coverage
	Specs    jetstream.ObjectStore
	Poll     time.Duration // how soon to look again
	Timeout  time.Duration // after "transformed", how long batches may take to load
	Now      func() time.Time
}

// HandleJob implements stage.JobHandler: it returns "loaded", or "failed", or waits for the
// run's batches.
func (h *CompleteHandler) HandleJob(ctx context.Context, j events.Job, _ *stage.Message) (*events.Job, error) {
	n, err := h.Count(ctx, j.ID, j.Generation)
	if err != nil {
		return nil, err
	}
	now := h.Now()
	if n < j.Batches {
		if now.Sub(j.TransformedAt) > h.Timeout {
			failed := j.Fail(fmt.Sprintf("only %d of %d row batches loaded %s after the transform; see `marketpipe dlq list`",
				n, j.Batches, h.Timeout), now)
			return &failed, nil
		}
		return nil, stage.Wait(h.Poll, fmt.Sprintf("%d of %d batches loaded", n, j.Batches))
	}
	if j.Spec.Strict && !j.Warnings.Empty() {
		failed := j.Fail("strict: the reply file has warnings: "+j.Warnings.String()+"; its rows stay invisible", now)
		return &failed, nil
	}
	// The commit and `marketpipe cancel` race for the run's end; the first recorded holds.
	// A redelivery finds its own claim and commits again, which is harmless.
	if h.Ends != nil {
		end, err := natsx.ClaimEnd(ctx, h.Ends, j.ID, j.Generation, natsx.End{State: events.Loaded, By: CompleteName, At: now})
		if err != nil {
			return nil, err
		}
		if end.State == events.Cancelled {
			return nil, nil // cancelled first: the rows stay invisible
		}
	}
	if err := h.Commits.Commit(ctx, j.ID, j.Version, now); err != nil {
		return nil, fmt.Errorf("commit run %s generation %d: %w", j.ID, j.Generation, err)
	}
	if err := recordCoverage(ctx, h.Coverage, h.Specs, &j); err != nil {
		return nil, fmt.Errorf("run %s generation %d committed; recording its coverage: %w", j.ID, j.Generation, err)
	}
	next := j.Advance(events.Loaded, now)
	next.RowsLoaded = j.RowsParsed
	return &next, nil
}

// JobRecorder is the jobs table.
type JobRecorder interface {
	RecordJob(ctx context.Context, j events.Job, seq uint64) error
}

// JobsHandler records every job event's state in the jobs table; the event's stream sequence
// orders them, so the latest event wins whatever order redeliveries arrive in.
type JobsHandler struct{ Store JobRecorder }

// HandleJob implements stage.JobHandler; it publishes nothing.
func (h *JobsHandler) HandleJob(ctx context.Context, j events.Job, m *stage.Message) (*events.Job, error) {
	if err := h.Store.RecordJob(ctx, j, m.StreamSeq()); err != nil {
		return nil, fmt.Errorf("record job %s: %w", j.ID, err)
	}
	return nil, nil
}

// outageBackoff caps redelivery delays at 15s: ClickHouse failures are outages, retried until
// it is back, and loading should resume soon after it is.
func outageBackoff(n uint64) time.Duration { return min(stage.DefaultBackoff(n), 15*time.Second) }

// Settings tune the loader.
type Settings struct {
	MaxInsertRows int           `env:"LOADER_MAX_INSERT_ROWS" default:"500000" help:"rows per INSERT at most"`
	Inserts       int           `env:"LOADER_INSERTS" default:"2" help:"INSERTs at once per replica"`
	Linger        time.Duration `env:"LOADER_LINGER" default:"50ms" help:"longest wait to fill one INSERT"`
	// MaxLinger is the longest wait to fill an INSERT while a transform is still sending
	// batches (events.MoreRowsHeader).
	MaxLinger   time.Duration `env:"LOADER_MAX_LINGER" default:"1s" help:"longest wait to fill one INSERT while the transformer says more batches of the job follow (header Marketpipe-More-Rows)"`
	LoadTimeout time.Duration `env:"LOADER_TIMEOUT" default:"1h" help:"how long a job's batches may take"`
	// Migrate lets the loader create or upgrade the schema at start, which needs an account
	// allowed DDL; otherwise `marketpipe migrate` does it and the loader needs INSERT and SELECT.
	Migrate string "env:\"LOADER_MIGRATE,lower\" default:\"false\" oneof:\"true false\" shown:\"false (true under `dev`)\" help:\"true: create or upgrade the ClickHouse schema at start (needs DDL rights); false: `marketpipe migrate` does it, and the loader waits for the schema\""
	Client  Client
}

// Client says what writes the observations' INSERTs.
type Client struct {
	Name string `env:"LOADER_INSERT_CLIENT" default:"marketpipe" oneof:"marketpipe clickhouse-go" help:"what writes the observations INSERTs: marketpipe (pkg/chinsert: blocks serialized straight from the rows over the native protocol, about a third of the client CPU per row) or clickhouse-go (the driver's batches; for a server chinsert cannot talk to)"`
}

// Stages returns the loader's three stages.
func Stages(env *service.Env, store *chstore.Store, s Settings) ([]service.Runner, error) {
	tracer := env.Tracing.Provider.Tracer(tracerName)
	m, err := newMetrics(env)
	if err != nil {
		return nil, err
	}
	// Handlers hold their batch still encoded (at most 1 MB, usually a few hundred KB) while it
	// waits for its INSERT, so 32 of them cost little memory and keep two 500,000-row INSERTs
	// of 100,000-row batches fed, the next ones queued behind them.
	rows, err := stage.New(env.JS, RowsConsumer, &RowsHandler{
		commit: &groupCommit{ins: store, maxRows: s.MaxInsertRows, inserts: s.Inserts, linger: s.Linger,
			maxLinger: s.MaxLinger, timeout: 2 * time.Minute, tracer: tracer},
		runs: &runCache{lookup: func(ctx context.Context, id string) (map[int]uint64, error) {
			return natsx.RunVersions(ctx, env.JS, id)
		}},
		Ledger:  env.Streams.Ledger,
		Loaded:  m.rowsLoaded,
		Refused: func(reason string) { m.batchesRefused.WithLabelValues(reason).Inc() },
	}, env.StageOptions())
	if err != nil {
		return nil, err
	}
	complete, err := stage.NewJobs(env.JS, CompleteConsumer, events.Decode, &CompleteHandler{
		Count: func(ctx context.Context, id string, gen int) (int, error) {
			return natsx.LoadedBatches(ctx, env.JS, id, gen)
		},
		Commits: store, Ends: env.Streams.Ends, Coverage: coverage.Store{KV: env.Streams.Coverage}, Specs: env.Streams.Specs,
		Poll: 100 * time.Millisecond, Timeout: s.LoadTimeout, Now: time.Now,
	}, env.StageOptions())
	if err != nil {
		return nil, err
	}
	jobs, err := stage.NewJobs(env.JS, JobsConsumer, events.Decode, &JobsHandler{Store: tracedJobs{store, tracer}}, env.StageOptions())
	if err != nil {
		return nil, err
	}
	return []service.Runner{rows, complete, jobs}, nil
}

// The loader's three stages.
var (
	// RowsConsumer loads row batches.
	RowsConsumer = stage.Config{
		Name: Name, Stream: events.RowsStream, Filters: []string{events.RowsSubjects},
		Concurrency: 32, MaxAckPending: 64, AckWait: 2 * time.Minute, MaxDeliver: -1, Backoff: outageBackoff,
		MaxBytes: rowcodec.MaxMessageBytes,
	}
	// CompleteConsumer completes the runs of "transformed" events.
	CompleteConsumer = stage.Config{
		Name: CompleteName, Stream: events.JobsStream, Filters: []string{events.JobFilter(events.Transformed)},
		MaxBytes: events.MaxJobEventBytes,
		// Its commit is a ClickHouse write too: retried as an outage.
		Concurrency: 16, MaxDeliver: -1, AckWait: time.Minute, Backoff: outageBackoff,
	}
	// JobsConsumer keeps the jobs table from every job event.
	JobsConsumer = stage.Config{
		Name: JobsName, Stream: events.JobsStream, Filters: []string{events.JobsSubjects},
		MaxBytes:    events.MaxJobEventBytes,
		Concurrency: 8, MaxDeliver: -1, AckWait: time.Minute, Backoff: outageBackoff,
	}
)

// Uses is what the loader does on NATS (its identity's permissions): it reads the runs of a
// job from the jobs stream, keeps the load ledger, records what committed history runs loaded
// (with their stored securities lists) and publishes "loaded" or "failed".
var Uses = auth.Uses{
	Consumers: []stage.Config{RowsConsumer, CompleteConsumer, JobsConsumer},
	Publishes: []string{events.JobFilter(events.Loaded), events.JobFilter(events.Failed)},
	Reads:     []string{events.JobsStream},
	KVWrite:   []string{events.LedgerBucket, events.EndsBucket, events.CoverageBucket},
	ObjRead:   []string{events.SpecsBucket},
}

// Summary is what the loader does, for -h.
const Summary = "loads row batches into ClickHouse, completes jobs and keeps the jobs table"

// Build is the service's wiring: ClickHouse from CLICKHOUSE_*, schema created if missing.
func Build(ctx context.Context, env *service.Env) ([]service.Runner, error) {
	var s Settings
	if err := config.Read(env.Lookup, &s); err != nil {
		return nil, err
	}
	store, err := OpenStore(ctx, env, s.Client.Name == "clickhouse-go", s.Migrate == "true")
	if err != nil {
		return nil, err
	}
	return Stages(env, store, s)
}

// OpenStore opens ClickHouse, creates or upgrades the schema when migrate is set (else checks
// it is the code's), and adds it to /readyz. driverInserts writes observations through
// clickhouse-go (chstore.Config.DriverInserts).
func OpenStore(ctx context.Context, env *service.Env, driverInserts, migrate bool) (*chstore.Store, error) {
	c := env.Config.ClickHouse
	tc, err := chstore.TLSConfig(c.Secure == "true", c.CA)
	if err != nil {
		return nil, err
	}
	var store *chstore.Store
	// ClickHouse may start after the loader: wait for it rather than crash-loop.
	for attempt := uint64(1); ; attempt++ {
		store, err = chstore.Open(ctx, chstore.Config{Addr: c.Addr, Database: c.Database, User: c.User,
			Password: c.Password, DialTimeout: 5 * time.Second, DriverInserts: driverInserts,
			NoCompression: c.Compression == "none", TLS: tc, Cluster: c.Cluster})
		if err == nil {
			if migrate {
				err = store.MigrateAtStart(ctx)
			} else {
				err = schemaReady(ctx, store)
			}
			if err == nil {
				break
			}
			store.Close()
			if errors.Is(err, chstore.ErrManualMigration) && migrate {
				return nil, err // waiting will not help: an operator must run it
			}
		}
		env.Log.Warn("waiting for clickhouse", "addr", c.Addr, "err", err, "attempt", attempt)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("clickhouse at %s: %w", c.Addr, err)
		case <-time.After(min(stage.DefaultBackoff(attempt), 5*time.Second)):
		}
	}
	env.AddReadyCheck("clickhouse", store.Ping)
	env.OnClose(func(context.Context) error { return store.Close() })
	return store, nil
}

// schemaReady returns nil when the database is at the code's schema (chstore.SchemaVersion) or
// later; otherwise an error wrapping chstore.ErrManualMigration, which the loader waits out:
// `marketpipe migrate` (or LOADER_MIGRATE=true) creates or upgrades it.
func schemaReady(ctx context.Context, store *chstore.Store) error {
	applied, err := store.AppliedSchemaVersion(ctx)
	if err != nil && !chstore.IsMissingDatabase(err) {
		return err
	}
	if applied < chstore.SchemaVersion() {
		return fmt.Errorf("database at schema %d, the loader needs %d: %w (or LOADER_MIGRATE=true)",
			applied, chstore.SchemaVersion(), chstore.ErrManualMigration)
	}
	return nil
}
