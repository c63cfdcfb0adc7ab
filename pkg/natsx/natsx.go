// Package natsx connects to NATS and declares the JetStream streams, object store and key-value
// buckets the pipeline uses. Every process declares them at start (idempotently), so no stage
// depends on another having started first.
package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
)

// Connect opens a connection that reconnects forever: a NATS restart must not end a service.
func Connect(cfg config.NATS, name string, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(64 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	}
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.CA != "" {
		opts = append(opts, nats.RootCAs(cfg.CA))
	}
	if cfg.Cert != "" {
		opts = append(opts, nats.ClientCert(cfg.Cert, cfg.Key))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	return nc, nil
}

// Retention says how long the streams keep what they hold, how many bytes they may hold, and
// on how many servers. Zero values take the defaults.
type Retention struct {
	JobsMaxAge time.Duration // job events, chunk tasks and dead letters; default 90 days
	RowsMaxAge time.Duration // row batches, the ledger and chunk records; default 14 days
	RawMaxAge  time.Duration // raw files; default 90 days
	// MaxBytes (NATS_MAX_BYTES) is what the pipeline's streams, buckets and object store may
	// hold together on each server, shared out by Budget; default config.DefaultNATSMaxBytes.
	MaxBytes int64
	// Replicas (NATS_REPLICAS) of every stream, bucket and object store; default 1. One that
	// exists with more keeps them.
	Replicas int
	Storage  jetstream.StorageType
	// Log reports the replicas kept and raised; default: slog.Default().
	Log *slog.Logger
}

// RetentionFor is the retention the configuration asks for.
func RetentionFor(cfg config.NATS, log *slog.Logger) Retention {
	return Retention{MaxBytes: cfg.MaxBytes, Replicas: cfg.Replicas, Log: log}
}

func (r Retention) withDefaults() Retention {
	if r.JobsMaxAge == 0 {
		r.JobsMaxAge = 90 * 24 * time.Hour
	}
	if r.RowsMaxAge == 0 {
		r.RowsMaxAge = 14 * 24 * time.Hour
	}
	if r.RawMaxAge == 0 {
		r.RawMaxAge = 90 * 24 * time.Hour
	}
	if r.MaxBytes == 0 {
		r.MaxBytes = config.DefaultNATSMaxBytes
	}
	if r.Replicas == 0 {
		r.Replicas = 1
	}
	if r.Log == nil {
		r.Log = slog.Default()
	}
	return r
}

// Streams are the pipeline's JetStream resources. Raw, Ledger and Chunks name themselves in
// the error of a write refused because they are full.
type Streams struct {
	JS     jetstream.JetStream
	Raw    jetstream.ObjectStore
	Ledger jetstream.KeyValue
	// Chunks records, per chunk of a job run's file, what the transformer published for it.
	Chunks jetstream.KeyValue
}

// Setup declares the streams, the raw object store, the load ledger and the chunk records, and
// returns them.
// Streams use Limits retention: events stay after they are consumed, so any job can be
// replayed from any stage. Each has its share of r.MaxBytes (Budget) and refuses new messages
// when full (DiscardNew): dropping the oldest instead would lose work not yet consumed.
// An existing stream keeps its replicas when it has more than r.Replicas (an operator raised
// them, or another service runs with a higher NATS_REPLICAS); Setup never lowers them.
func Setup(ctx context.Context, js jetstream.JetStream, r Retention) (*Streams, error) {
	r = r.withDefaults()
	streams := []jetstream.StreamConfig{
		{Name: events.JobsStream, Subjects: []string{events.JobsSubjects}, MaxAge: r.JobsMaxAge},
		{Name: events.RowsStream, Subjects: []string{events.RowsSubjects}, MaxAge: r.RowsMaxAge},
		{Name: events.DLQStream, Subjects: []string{events.DLQSubjects}, MaxAge: r.JobsMaxAge},
		{Name: events.ChunksStream, Subjects: []string{events.ChunkSubjects}, MaxAge: r.JobsMaxAge},
	}
	for _, sc := range streams {
		sc.Retention = jetstream.LimitsPolicy
		sc.Discard = jetstream.DiscardNew
		sc.Duplicates = 10 * time.Minute
		sc.MaxMsgSize = events.MaxPayload
		sc.MaxBytes = r.maxBytes(sc.Name)
		sc.Storage = r.Storage
		var err error
		if sc.Replicas, err = r.replicas(ctx, js, sc.Name); err != nil {
			return nil, err
		}
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("declare stream %s: %w", sc.Name, err)
		}
	}
	rawReplicas, err := r.replicas(ctx, js, objectStream(events.RawBucket))
	if err != nil {
		return nil, err
	}
	raw, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: events.RawBucket, Description: "downloaded vendor reply files",
		// Not compressed by the server: the collector stores files compressed already
		// (ChunkLayoutS2), which spares nats-server compressing every block it writes and
		// decompressing every block it reads.
		TTL: r.RawMaxAge, Storage: r.Storage, Replicas: rawReplicas, Compression: false,
		MaxBytes: r.maxBytes(objectStream(events.RawBucket)),
	})
	if err != nil {
		return nil, fmt.Errorf("declare object store %s: %w", events.RawBucket, err)
	}
	kv := func(bucket, what string) (jetstream.KeyValue, error) {
		replicas, err := r.replicas(ctx, js, kvStream(bucket))
		if err != nil {
			return nil, err
		}
		b, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: bucket, Description: what, TTL: r.RowsMaxAge, Storage: r.Storage, Replicas: replicas,
			MaxBytes: r.maxBytes(kvStream(bucket)),
		})
		if err != nil {
			return nil, fmt.Errorf("declare key-value bucket %s: %w", bucket, err)
		}
		return fullKV{b, js}, nil
	}
	ledger, err := kv(events.LedgerBucket, "row batches already loaded into ClickHouse")
	if err != nil {
		return nil, err
	}
	chunks, err := kv(events.ChunksBucket, "chunks of large reply files transformed, per job run")
	if err != nil {
		return nil, err
	}
	return &Streams{JS: js, Raw: fullObjects{raw, js}, Ledger: ledger, Chunks: chunks}, nil
}

// replicas returns the replicas stream gets: r.Replicas, or more when it exists with more.
func (r Retention) replicas(ctx context.Context, js jetstream.JetStream, stream string) (int, error) {
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return r.Replicas, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", stream, err)
	}
	switch have := s.CachedInfo().Config.Replicas; {
	case have > r.Replicas:
		r.Log.Info("keeping the replicas of a stream: never lowered", "stream", stream, "replicas", have,
			"NATS_REPLICAS", r.Replicas)
		return have, nil
	case have < r.Replicas:
		r.Log.Info("raising the replicas of a stream", "stream", stream, "from", have, "to", r.Replicas)
	}
	return r.Replicas, nil
}

// LedgerKey is the load-ledger key of one row batch of a job run.
func LedgerKey(jobID string, generation, seq int) string {
	return fmt.Sprintf("%s.g%d.b%d", jobID, generation, seq)
}

// LoadedBatches counts the row batches of a job run recorded in the load ledger, in one request
// (the ledger's stream reports its subjects under a filter) rather than one per key.
func LoadedBatches(ctx context.Context, js jetstream.JetStream, jobID string, generation int) (int, error) {
	n, err := countKeys(ctx, js, events.LedgerBucket, jobID, generation)
	if err != nil {
		return 0, fmt.Errorf("count loaded batches of %s: %w", jobID, err)
	}
	return n, nil
}

// ChunkKey is the key, in the chunks bucket, of one transformed chunk of a job run.
func ChunkKey(jobID string, generation, chunk int) string {
	return fmt.Sprintf("%s.g%d.c%d", jobID, generation, chunk)
}

// RecordedChunks counts the chunks of a job run recorded in the chunks bucket, in one request
// as LoadedBatches does.
func RecordedChunks(ctx context.Context, js jetstream.JetStream, jobID string, generation int) (int, error) {
	n, err := countKeys(ctx, js, events.ChunksBucket, jobID, generation)
	if err != nil {
		return 0, fmt.Errorf("count transformed chunks of %s: %w", jobID, err)
	}
	return n, nil
}

// countKeys counts the keys of a job run (<job id>.g<generation>.*) in a key-value bucket: its
// stream reports the subjects under a filter.
func countKeys(ctx context.Context, js jetstream.JetStream, bucket, jobID string, generation int) (int, error) {
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return 0, fmt.Errorf("%s stream: %w", bucket, err)
	}
	filter := fmt.Sprintf("$KV.%s.%s.g%d.>", bucket, jobID, generation)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, err
	}
	return len(info.State.Subjects), nil
}
