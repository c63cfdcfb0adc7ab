// Package natsx connects to NATS and declares the JetStream streams, object store and key-value
// buckets the pipeline uses. Every process declares them at start (idempotently), so no stage
// depends on another having started first.
package natsx

import (
	"context"
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

// Retention says how long the streams keep what they hold. Zero values take the defaults.
//
// One horizon, JobsMaxAge, covers everything that can be replayed or redriven (job events,
// chunk tasks, dead letters) and everything that says what was already done for them (the load
// ledger, the chunk records): a chunk task or a dead-lettered batch redriven late still finds
// its run's events and its records, so it loads once and its run completes. Row batches go
// sooner (RowsMaxAge): they are large, and a replay makes them again from the raw file.
type Retention struct {
	JobsMaxAge   time.Duration // job events, chunk tasks, dead letters, ledger, chunk records; default 90 days
	RowsMaxAge   time.Duration // row batches; default 14 days
	RowsMaxBytes int64         // default: no limit beyond the server's
	RawMaxAge    time.Duration // raw files; default 90 days
	Replicas     int           // stream replicas in a cluster; default 1
	Storage      jetstream.StorageType
}

func (r Retention) withDefaults() Retention {
	if r.JobsMaxAge == 0 {
		r.JobsMaxAge = 90 * 24 * time.Hour
	}
	if r.RowsMaxAge == 0 {
		r.RowsMaxAge = 14 * 24 * time.Hour
	}
	if r.RowsMaxBytes == 0 {
		r.RowsMaxBytes = -1
	}
	if r.RawMaxAge == 0 {
		r.RawMaxAge = 90 * 24 * time.Hour
	}
	if r.Replicas == 0 {
		r.Replicas = 1
	}
	return r
}

// Streams are the pipeline's JetStream resources.
type Streams struct {
	JS     jetstream.JetStream
	Raw    jetstream.ObjectStore
	Ledger jetstream.KeyValue
	// Chunks records, per chunk of a job run's file, what the transformer published for it.
	Chunks jetstream.KeyValue
	// Specs keeps the securities lists too long for a job event (ExternalizeSecurities).
	Specs jetstream.ObjectStore
}

// Setup declares the streams, the raw object store, the load ledger and the chunk records, and
// returns them.
// Streams use Limits retention: events stay after they are consumed, so any job can be
// replayed from any stage.
func Setup(ctx context.Context, js jetstream.JetStream, r Retention) (*Streams, error) {
	r = r.withDefaults()
	streams := []jetstream.StreamConfig{
		{Name: events.JobsStream, Subjects: []string{events.JobsSubjects}, MaxAge: r.JobsMaxAge,
			Duplicates: 10 * time.Minute},
		{Name: events.RowsStream, Subjects: []string{events.RowsSubjects}, MaxAge: r.RowsMaxAge,
			MaxBytes: r.RowsMaxBytes, Duplicates: 10 * time.Minute, MaxMsgSize: 2 << 20},
		{Name: events.DLQStream, Subjects: []string{events.DLQSubjects}, MaxAge: r.JobsMaxAge,
			Duplicates: 10 * time.Minute},
		{Name: events.ChunksStream, Subjects: []string{events.ChunkSubjects}, MaxAge: r.JobsMaxAge,
			Duplicates: 10 * time.Minute},
	}
	for _, sc := range streams {
		sc.Retention = jetstream.LimitsPolicy
		sc.Storage = r.Storage
		sc.Replicas = r.Replicas
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("declare stream %s: %w", sc.Name, err)
		}
	}
	raw, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: events.RawBucket, Description: "downloaded vendor reply files",
		// Not compressed by the server: the collector stores files compressed already
		// (ChunkLayoutS2), which spares nats-server compressing every block it writes and
		// decompressing every block it reads.
		TTL: r.RawMaxAge, Storage: r.Storage, Replicas: r.Replicas, Compression: false,
	})
	if err != nil {
		return nil, fmt.Errorf("declare object store %s: %w", events.RawBucket, err)
	}
	ledger, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: events.LedgerBucket, Description: "row batches already loaded into ClickHouse",
		TTL: r.JobsMaxAge, Storage: r.Storage, Replicas: r.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("declare key-value bucket %s: %w", events.LedgerBucket, err)
	}
	chunks, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: events.ChunksBucket, Description: "chunks of large reply files transformed, per job run",
		TTL: r.JobsMaxAge, Storage: r.Storage, Replicas: r.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("declare key-value bucket %s: %w", events.ChunksBucket, err)
	}
	// As long as the job events that refer to them: a replay reads them again.
	specs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: events.SpecsBucket, Description: "securities lists of jobs too large for a job event",
		TTL: r.JobsMaxAge, Storage: r.Storage, Replicas: r.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("declare object store %s: %w", events.SpecsBucket, err)
	}
	return &Streams{JS: js, Raw: raw, Ledger: ledger, Chunks: chunks, Specs: specs}, nil
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

// RunVersions returns the version of every run of a job that reached "collected", by
// generation, from the job's stored events: what row batches of the job may carry. Every
// path to row batches (a first run, a replay from any stage) goes through that event.
func RunVersions(ctx context.Context, js jetstream.JetStream, jobID string) (map[int]uint64, error) {
	cons, err := js.OrderedConsumer(ctx, events.JobsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.JobSubject(jobID, events.Collected)},
	})
	if err != nil {
		return nil, fmt.Errorf("read runs of %s: %w", jobID, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read runs of %s: %w", jobID, err)
	}
	runs := map[int]uint64{}
	for left := int(info.NumPending); left > 0; {
		batch, err := cons.Fetch(min(left, 256), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read runs of %s: %w", jobID, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if j, err := events.Decode(m.Data()); err == nil {
				runs[j.Generation] = j.Version
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read runs of %s: %w", jobID, err)
		}
		if n == 0 {
			break
		}
		left -= n
	}
	return runs, nil
}
