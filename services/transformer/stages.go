package transformer

import (
	"context"
	"time"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// Stages returns the transformer's two stages on env's JetStream: "collected" events, and the
// chunk tasks of large files (ChunkName). TRANSFORMER_CHUNK_BYTES sets ChunkBytes and
// TRANSFORMER_CHUNK_CONCURRENCY how many chunks a replica transforms at once.
func Stages(env *service.Env) ([]service.Runner, error) {
	m, err := newMetrics(env)
	if err != nil {
		return nil, err
	}
	tracer := env.Tracing.Provider.Tracer(tracerName)
	raw := &rawstore.Store{Objects: env.Streams.Raw, JS: env.JS, Tracer: tracer}
	h := &Handler{Raw: raw, Pub: env.Publisher(), Now: time.Now,
		Tracer: tracer, RowsParsed: m.rowsParsed, RowsRejected: m.rowsRejected}
	var s Settings
	if err := config.Read(env.Lookup, &s); err != nil {
		return nil, err
	}
	h.ChunkBytes = int64(s.ChunkBytes)
	h.Chunks = env.Streams.Chunks
	h.CountChunks = func(ctx context.Context, id string, gen int) (int, error) {
		return natsx.RecordedChunks(ctx, env.JS, id, gen)
	}
	files, err := stage.NewJobs(env.JS, FilesConsumer, events.Decode, h, env.StageOptions())
	if err != nil {
		return nil, err
	}
	chunkCfg := ChunksConsumer
	chunkCfg.Concurrency = s.ChunkConcurrency
	chunks, err := stage.New(env.JS, chunkCfg, stage.HandlerFunc(h.HandleChunk), env.StageOptions())
	if err != nil {
		return nil, err
	}
	return []service.Runner{files, chunks}, nil
}

// FilesConsumer is the transformer's stage of "collected" events.
var FilesConsumer = stage.Config{
	Name: Name, Stream: events.JobsStream, Filters: []string{events.JobFilter(events.Collected)},
	MaxBytes:    events.MaxJobEventBytes,
	Concurrency: 2, AckWait: time.Minute, MaxDeliver: 10,
}

// ChunksConsumer is the transformer's stage of chunk tasks; TRANSFORMER_CHUNK_CONCURRENCY sets
// its Concurrency in each replica (the consumer the admin declares has the default's
// MaxAckPending).
var ChunksConsumer = stage.Config{
	Name: ChunkName, Stream: events.ChunksStream, Filters: []string{events.ChunkSubjects},
	MaxBytes:    events.MaxJobEventBytes + 1<<10,
	Concurrency: 2, AckWait: time.Minute, MaxDeliver: 10,
}

// Uses is what the transformer does on NATS (its identity's permissions): it reads the raw
// files, publishes row batches, chunk tasks and "transformed" or "failed", and keeps the chunk
// records.
var Uses = auth.Uses{
	Consumers: []stage.Config{FilesConsumer, ChunksConsumer},
	Publishes: []string{events.RowsSubjects, events.ChunkSubjects,
		events.JobFilter(events.Transformed), events.JobFilter(events.Failed)},
	ObjRead: []string{events.RawBucket},
	KVWrite: []string{events.ChunksBucket},
}

// Summary is what the transformer does, for -h.
const Summary = "turns collected reply files into row batches"

// Settings are the transformer's own variables (pkg/config reads them). Two chunks at once by
// default, so that one replica can use two cores on one large file.
type Settings struct {
	ChunkBytes       int `env:"TRANSFORMER_CHUNK_BYTES" default:"67108864" shown:"67108864 (64 MiB)" help:"a plain reply file larger than this is cut at its marks (security boundaries) into chunks of about this size, at most 64, that every replica's chunk consumer shares"`
	ChunkConcurrency int `env:"TRANSFORMER_CHUNK_CONCURRENCY" default:"2" help:"chunks one replica transforms at once"`
}

// Build is the service's wiring.
func Build(ctx context.Context, env *service.Env) ([]service.Runner, error) {
	return Stages(env)
}
