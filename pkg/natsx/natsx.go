// Package natsx connects to NATS and declares the JetStream streams, object store and key-value
// buckets the pipeline uses. The admin declares them (Setup, run by `marketpipe migrate` and
// `marketpipe dev`); services only bind to them (Bind), with the permissions of their own
// identity (pkg/auth).
package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/attempts"
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
		identity, err := CredsIdentity(cfg.Creds)
		if err != nil {
			return nil, err
		}
		// Replies come to the identity's own inboxes: its permissions let it read those only,
		// not another identity's replies (which carry the messages its consumers deliver).
		opts = append(opts, nats.UserCredentials(cfg.Creds), nats.CustomInboxPrefix(InboxPrefix(identity)))
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

// Refused returns why the server refused nc's user, if it did, or nil: after the server refuses
// the same credentials twice nats.go closes the connection for good, and every later call fails
// with "connection closed", which says nothing of the cause.
func Refused(nc *nats.Conn) error {
	last := nc.LastError()
	for _, auth := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired} {
		if errors.Is(last, auth) {
			return fmt.Errorf("the NATS server refused this client (%v): check NATS_CREDS (or NATS_USER and NATS_PASSWORD) and NATS_CA, NATS_CERT and NATS_KEY", last)
		}
	}
	return nil
}

// Retention says how long the streams keep what they hold, how many bytes they may hold, and
// on how many servers. Zero values take the defaults.
//
// One horizon, JobsMaxAge, covers everything that can be replayed or redriven (job events,
// chunk tasks, dead letters, the securities lists they refer to) and everything that says what
// was already done for them (the load ledger, the chunk records): a chunk task or a
// dead-lettered batch redriven late still finds its run's events and its records, so it loads
// once and its run completes. Row batches go sooner (RowsMaxAge): they are large, and a replay
// makes them again from the raw file.
type Retention struct {
	JobsMaxAge time.Duration // job events, chunk tasks, dead letters, ledger, chunk records, securities lists; default 90 days
	RowsMaxAge time.Duration // row batches; default 14 days
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
	// Specs keeps the securities lists too long for a job event (ExternalizeSecurities).
	Specs jetstream.ObjectStore
	// Schedules holds each schedule's definition and state (package schedule).
	Schedules jetstream.KeyValue
	// Submits remembers the job files submitted in the last SubmitsTTL, by content.
	Submits jetstream.KeyValue
	// Ends records how each job run ended, committed or cancelled (ClaimEnd).
	Ends jetstream.KeyValue
	// Coverage records what committed history runs loaded (package coverage).
	Coverage jetstream.KeyValue
	// Outputs holds the vendor outputs a notification announced and the poller's deliveries
	// waiting for them, by vendor request identifier (services/poller, VENDOR_NOTIFICATIONS=sse).
	Outputs jetstream.KeyValue
}

// Setup declares the streams, the raw object store, the load ledger and the chunk records, and
// returns them. It needs the admin's rights: `marketpipe migrate` and `marketpipe dev` run it;
// services only Bind.
// Streams use Limits retention: events stay after they are consumed, so any job can be
// replayed from any stage. Each has its share of r.MaxBytes (Budget) and refuses new messages
// when full (DiscardNew): dropping the oldest instead would lose work not yet consumed.
// An existing stream keeps its replicas when it has more than r.Replicas (an operator raised
// them, or another service runs with a higher NATS_REPLICAS); Setup never lowers them.
func Setup(ctx context.Context, js jetstream.JetStream, r Retention) (*Streams, error) {
	r = r.withDefaults()
	for _, sc := range []jetstream.StreamConfig{
		{Name: events.JobsStream, Subjects: []string{events.JobsSubjects}, MaxAge: r.JobsMaxAge},
		{Name: events.RowsStream, Subjects: []string{events.RowsSubjects}, MaxAge: r.RowsMaxAge},
		{Name: events.DLQStream, Subjects: []string{events.DLQSubjects}, MaxAge: r.JobsMaxAge},
		{Name: events.ChunksStream, Subjects: []string{events.ChunkSubjects}, MaxAge: r.JobsMaxAge},
	} {
		sc.Retention = jetstream.LimitsPolicy
		sc.Discard = jetstream.DiscardNew
		sc.Duplicates = 10 * time.Minute
		sc.MaxMsgSize = events.MaxPayload
		sc.MaxBytes = r.maxBytes(sc.Name)
		sc.Storage = r.Storage
		err := r.declareStream(ctx, js, sc, func(have jetstream.StreamConfig) bool {
			return slices.Equal(have.Subjects, sc.Subjects) && have.MaxAge == sc.MaxAge && have.MaxBytes == sc.MaxBytes &&
				have.Discard == sc.Discard && have.Duplicates == sc.Duplicates && have.MaxMsgSize == sc.MaxMsgSize &&
				have.Retention == sc.Retention && have.Storage == sc.Storage
		})
		if err != nil {
			return nil, err
		}
	}
	if err := r.declareSchedules(ctx, js); err != nil {
		return nil, err
	}
	// declareBucket declares the stream of a bucket or object store (buckets.go).
	declareBucket := func(b bucket, config func(bucket) jetstream.StreamConfig) error {
		b.storage, b.maxBytes = r.Storage, r.maxBytes(config(b).Name)
		want := config(b)
		return r.declare(ctx, js, want.Name, func(have jetstream.StreamConfig, replicas int) bool {
			return have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes && have.Storage == want.Storage &&
				have.Compression == jetstream.NoCompression && have.Replicas == replicas && !have.AllowDirect
		}, func(ctx context.Context, replicas int, update bool) error {
			b.replicas = replicas
			if update {
				_, err := js.UpdateStream(ctx, config(b))
				return err
			}
			_, err := js.CreateStream(ctx, config(b))
			return err
		})
	}
	objects := func(b bucket) (jetstream.ObjectStore, error) {
		if err := declareBucket(b, objectStreamConfig); err != nil {
			return nil, fmt.Errorf("declare object store %s: %w", b.name, err)
		}
		var o jetstream.ObjectStore
		err := retry(ctx, func(ctx context.Context) (err error) {
			o, err = js.ObjectStore(ctx, b.name)
			return notYet(err)
		})
		if err != nil {
			return nil, fmt.Errorf("object store %s: %w", b.name, err)
		}
		return fullObjects{o, js}, nil
	}
	// Not compressed by the server: the collector stores files compressed already
	// (rawstore.ChunkLayoutS2), which spares nats-server compressing every block it writes and
	// decompressing every block it reads.
	raw, err := objects(bucket{name: events.RawBucket, description: "downloaded vendor reply files", ttl: r.RawMaxAge})
	if err != nil {
		return nil, err
	}
	// As long as the job events that refer to them: a replay reads them again.
	specs, err := objects(bucket{name: events.SpecsBucket, description: "securities lists of jobs too large for a job event",
		ttl: r.JobsMaxAge})
	if err != nil {
		return nil, err
	}
	kv := func(name, what string, ttl time.Duration) (jetstream.KeyValue, error) {
		if err := declareBucket(bucket{name: name, description: what, ttl: ttl}, kvStreamConfig); err != nil {
			return nil, fmt.Errorf("declare key-value bucket %s: %w", name, err)
		}
		var b jetstream.KeyValue
		err := retry(ctx, func(ctx context.Context) (err error) {
			b, err = js.KeyValue(ctx, name)
			return notYet(err)
		})
		if err != nil {
			return nil, fmt.Errorf("key-value bucket %s: %w", name, err)
		}
		return fullKV{b, js}, nil
	}
	ledger, err := kv(events.LedgerBucket, "row batches already loaded into ClickHouse", r.JobsMaxAge)
	if err != nil {
		return nil, err
	}
	chunks, err := kv(events.ChunksBucket, "chunks of large reply files transformed, per job run", r.JobsMaxAge)
	if err != nil {
		return nil, err
	}
	// The stage runtime binds it (attempts.Declare); declared here with its share and replicas.
	if _, err := kv(attempts.Bucket, "failing deliveries per job and stage", attempts.TTL); err != nil {
		return nil, err
	}
	schedules, err := kv(events.SchedulesBucket, "schedules: each one's job file and state", 0)
	if err != nil {
		return nil, err
	}
	submits, err := kv(events.SubmitsBucket, "job files submitted in the last 24 hours, by content", SubmitsTTL)
	if err != nil {
		return nil, err
	}
	ends, err := kv(events.EndsBucket, "how each job run ended: committed or cancelled", r.JobsMaxAge)
	if err != nil {
		return nil, err
	}
	// Kept until deleted, as schedules are: a backfill resumed months later still finds which
	// of its windows loaded (its jobs' events are gone after JobsMaxAge).
	if _, err := kv(events.BackfillsBucket, "backfills: each one's windows and their jobs", 0); err != nil {
		return nil, err
	}
	// Kept as long as the data it describes: what is loaded stays loaded.
	coverage, err := kv(events.CoverageBucket, "what committed history runs loaded, by dataset and security", 0)
	if err != nil {
		return nil, err
	}
	outputs, err := kv(events.OutputsBucket, "vendor outputs announced ready, and deliveries waiting for them, by request identifier", OutputsTTL)
	if err != nil {
		return nil, err
	}
	return &Streams{JS: js, Raw: raw, Ledger: ledger, Chunks: chunks, Specs: specs,
		Schedules: schedules, Submits: submits, Ends: ends, Coverage: coverage, Outputs: outputs}, nil
}

// SubmitsTTL is how long `marketpipe submit` remembers a job file, to refuse it a second time.
const SubmitsTTL = 24 * time.Hour

// OutputsTTL is how long an output announced ready, or a delivery waiting for one, is kept in
// events.OutputsBucket: as long as HAPI replays notifications (Last-Event-ID), far longer than
// any POLL_INTERVAL (a waiting delivery writes its entry again at each poll).
const OutputsTTL = 48 * time.Hour

// declareSchedules declares MP_SCHEDULES: the schedules the server fires (one message per
// schedule, replaced on update) and their firings, the last hundred of each schedule kept.
// Nothing there expires by age: a schedule lives until it is deleted. The server refuses
// DiscardNew on a stream of schedules; at a few hundred bytes a message, a hundred firings of
// each of thousands of schedules fit its share many times, and `schedule list` says when a
// schedule's message is missing.
func (r Retention) declareSchedules(ctx context.Context, js jetstream.JetStream) error {
	sc := jetstream.StreamConfig{
		Name: events.SchedulesStream, Subjects: []string{events.ScheduleSubjects},
		Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld, MaxMsgsPerSubject: 100,
		Duplicates: 10 * time.Minute, MaxMsgSize: events.MaxPayload, Storage: r.Storage,
		MaxBytes: r.maxBytes(events.SchedulesStream), AllowMsgSchedules: true, AllowRollup: true,
	}
	return r.declareStream(ctx, js, sc, func(have jetstream.StreamConfig) bool {
		return slices.Equal(have.Subjects, sc.Subjects) && have.MaxBytes == sc.MaxBytes &&
			have.MaxMsgsPerSubject == sc.MaxMsgsPerSubject && have.AllowMsgSchedules && have.AllowRollup &&
			have.Storage == sc.Storage
	})
}

// declareStream declares the stream sc (declare): matches says whether an existing stream's
// configuration is sc's, replicas aside.
func (r Retention) declareStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig,
	matches func(have jetstream.StreamConfig) bool) error {
	err := r.declare(ctx, js, sc.Name, func(have jetstream.StreamConfig, replicas int) bool {
		return matches(have) && have.Replicas == replicas
	}, func(ctx context.Context, replicas int, update bool) error {
		sc.Replicas = replicas
		if update {
			_, err := js.UpdateStream(ctx, sc)
			return err
		}
		_, err := js.CreateStream(ctx, sc)
		return err
	})
	if err != nil {
		return fmt.Errorf("declare stream %s: %w", sc.Name, err)
	}
	return nil
}

// declare creates a stream (or the bucket or object store it backs) with write, or updates it
// with write when it exists and matches says its configuration differs. It never updates a
// stream that is already right: every process declares every stream at start, and in a
// cluster concurrent updates of one stream may go unanswered, while concurrent creations with
// one configuration all succeed.
func (r Retention) declare(ctx context.Context, js jetstream.JetStream, stream string,
	matches func(have jetstream.StreamConfig, replicas int) bool,
	write func(ctx context.Context, replicas int, update bool) error) error {
	info, err := streamInfo(ctx, js, stream)
	if err != nil {
		return err
	}
	if info == nil {
		err := retry(ctx, func(ctx context.Context) error { return write(ctx, r.Replicas, false) })
		if err == nil || !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && !errors.Is(err, jetstream.ErrBucketExists) {
			return err
		}
		// Created meanwhile with another configuration (another version): update it.
		if info, err = streamInfo(ctx, js, stream); err != nil {
			return err
		}
		if info == nil {
			return fmt.Errorf("stream %s in use, but not found", stream)
		}
	}
	replicas := r.replicas(stream, info.Config.Replicas)
	if matches(info.Config, replicas) {
		return nil
	}
	return retry(ctx, func(ctx context.Context) error { return write(ctx, replicas, true) })
}

// streamInfo reads a stream's info; nil when it does not exist.
func streamInfo(ctx context.Context, js jetstream.JetStream, stream string) (*jetstream.StreamInfo, error) {
	var info *jetstream.StreamInfo
	err := retry(ctx, func(ctx context.Context) error {
		s, err := js.Stream(ctx, stream)
		if err == nil {
			info = s.CachedInfo()
		}
		return err
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	return info, nil
}

// apiAttempt bounds one JetStream API request of Setup. In a cluster, a request about a
// stream that another process is creating may go unanswered until its replicas have elected
// a leader; asking again then gets the answer.
const apiAttempt = 2 * time.Second

// errNotYet marks an error that asking again may cure.
var errNotYet = errors.New("not yet")

// notYet marks a bucket or object store not found just after it was declared: in a cluster, a
// server may answer before it has applied the creation.
func notYet(err error) error {
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("%w: %w", errNotYet, err)
	}
	return err
}

// errCodeNoPeers is JetStream's refusal to place a stream's replicas.
const errCodeNoPeers jetstream.ErrorCode = 10005

// peersStarting is how long a placement refused for an offline peer is asked again: the meta
// leader of a cluster that just started counts its peers offline until each has reported once.
// A peer still offline after it is an error the operator must see.
const peersStarting = 30 * time.Second

// peerOffline reports whether err is a placement refused because a peer is offline.
func peerOffline(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeNoPeers && strings.Contains(apiErr.Description, "offline")
}

// retry runs f with a deadline of apiAttempt, again while it times out (or says errNotYet, or
// for peersStarting that a peer is offline), until ctx ends. f must be idempotent.
func retry(ctx context.Context, f func(ctx context.Context) error) error {
	start := time.Now()
	for {
		actx, cancel := context.WithTimeout(ctx, apiAttempt)
		err := f(actx)
		cancel()
		again := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, errNotYet) ||
			peerOffline(err) && time.Since(start) < peersStarting
		if err == nil || ctx.Err() != nil || !again {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// replicas returns the replicas an existing stream with have replicas gets: r.Replicas, or
// have when it is more.
func (r Retention) replicas(stream string, have int) int {
	switch {
	case have > r.Replicas:
		r.Log.Info("keeping the replicas of a stream: never lowered", "stream", stream, "replicas", have,
			"NATS_REPLICAS", r.Replicas)
		return have
	case have < r.Replicas:
		r.Log.Info("raising the replicas of a stream", "stream", stream, "from", have, "to", r.Replicas)
	}
	return r.Replicas
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

// LastJobEvent returns a job's latest event; false when the job has none.
func LastJobEvent(ctx context.Context, js jetstream.JetStream, jobID string) (events.Job, bool, error) {
	str, err := js.Stream(ctx, events.JobsStream)
	if err != nil {
		return events.Job{}, false, fmt.Errorf("stream %s: %w", events.JobsStream, err)
	}
	m, err := str.GetLastMsgForSubject(ctx, events.JobSubject(jobID, "*"))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return events.Job{}, false, nil
	}
	if err != nil {
		return events.Job{}, false, fmt.Errorf("job %s: %w", jobID, err)
	}
	j, err := events.Decode(m.Data)
	if err != nil {
		return events.Job{}, false, err
	}
	return j, true, nil
}
