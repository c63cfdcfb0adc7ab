package natsx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/attempts"
	"github.com/marketpipe/marketpipe/pkg/events"
)

// Budget shares NATS_MAX_BYTES out among the pipeline's streams (the object store and the
// key-value buckets are streams too), in percent of it; README's table of streams repeats it.
// Row batches and raw files are the bulk; job events, chunk tasks and dead letters are small
// messages kept longer.
var Budget = []Share{
	{Stream: events.JobsStream, Percent: 6},
	{Stream: events.RowsStream, Percent: 20},
	{Stream: events.DLQStream, Percent: 4},
	{Stream: events.ChunksStream, Percent: 4},
	{Stream: objectStream(events.RawBucket), Percent: 20},
	{Stream: objectStream(events.SpecsBucket), Percent: 4},
	{Stream: kvStream(events.LedgerBucket), Percent: 5},
	{Stream: kvStream(events.ChunksBucket), Percent: 4},
	{Stream: kvStream(attempts.Bucket), Percent: 4},
	{Stream: events.SchedulesStream, Percent: 4},
	{Stream: kvStream(events.SchedulesBucket), Percent: 4},
	{Stream: kvStream(events.SubmitsBucket), Percent: 4},
	{Stream: kvStream(events.EndsBucket), Percent: 5},
	// Small (a backfill's plan is one entry), but no share may hold less than one message.
	{Stream: kvStream(events.BackfillsBucket), Percent: 4},
	{Stream: kvStream(events.CoverageBucket), Percent: 4},
	{Stream: kvStream(events.OutputsBucket), Percent: 4},
}

// Share is one stream's part of NATS_MAX_BYTES.
type Share struct {
	Stream  string
	Percent int64
}

// maxBytes is stream's byte limit: its share of r.MaxBytes.
func (r Retention) maxBytes(stream string) int64 {
	for _, s := range Budget {
		if s.Stream == stream {
			return r.MaxBytes / 100 * s.Percent
		}
	}
	panic("natsx: no budget share for stream " + stream)
}

func objectStream(bucket string) string { return ObjectStream(bucket) }
func kvStream(bucket string) string     { return KVStream(bucket) }

// ObjectStream is the stream that backs an object store bucket.
func ObjectStream(bucket string) string { return "OBJ_" + bucket }

// KVStream is the stream that backs a key-value bucket.
func KVStream(bucket string) string { return "KV_" + bucket }

// StreamNames are the names of every stream the pipeline declares (Budget's), the object
// store's and key-value buckets' included.
func StreamNames() []string {
	names := make([]string, len(Budget))
	for i, s := range Budget {
		names[i] = s.Stream
	}
	return names
}

// errCodeStoreFailed is JetStream's error code for a message the stream could not store; with
// DiscardNew, a full stream answers it ("maximum bytes exceeded").
const errCodeStoreFailed jetstream.ErrorCode = 10077

// ErrFull matches (errors.Is) the error of a write refused because its stream is full.
var ErrFull = errors.New("stream full")

// isFull reports whether err is JetStream refusing a message at one of its stream's limits.
func isFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed &&
		strings.Contains(apiErr.Description, "maximum")
}

// fullError is a write refused by a full stream, naming the stream and its limit.
type fullError struct {
	what  string // "stream MP_ROWS", "object store mp_raw"
	limit int64
	err   error
}

func (e *fullError) Error() string {
	limit := ""
	if e.limit > 0 {
		limit = fmt.Sprintf(" (max_bytes %d: its share of NATS_MAX_BYTES)", e.limit)
	}
	return fmt.Sprintf("%s is full%s: %v", e.what, limit, e.err)
}

func (e *fullError) Unwrap() []error { return []error{ErrFull, e.err} }

// explain returns err, naming stream when err says it is full. It asks the server for the
// stream's limit; what is a description of the stream for the message.
func explain(ctx context.Context, js jetstream.JetStream, stream, what string, err error) error {
	if err == nil || !isFull(err) {
		return err
	}
	var limit int64
	if s, serr := js.Stream(context.WithoutCancel(ctx), stream); serr == nil {
		limit = s.CachedInfo().Config.MaxBytes
	}
	return &fullError{what: what, limit: limit, err: err}
}

// explainSubject is explain for a publish on subject, whose stream the server names.
func explainSubject(ctx context.Context, js jetstream.JetStream, subject string, err error) error {
	if err == nil || !isFull(err) {
		return err
	}
	stream, serr := js.StreamNameBySubject(context.WithoutCancel(ctx), subject)
	if serr != nil {
		return &fullError{what: "the stream of " + subject, err: err}
	}
	return explain(ctx, js, stream, "stream "+stream, err)
}

// NameFullStreams returns js whose publishes, when refused because the stream is full, fail
// with an error naming the stream and its byte limit (and matching ErrFull), instead of the
// server's bare "maximum bytes exceeded".
func NameFullStreams(js jetstream.JetStream) jetstream.JetStream {
	if _, ok := js.(fullJS); ok {
		return js
	}
	return fullJS{js}
}

type fullJS struct{ jetstream.JetStream }

func (j fullJS) Publish(ctx context.Context, subject string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := j.JetStream.Publish(ctx, subject, data, opts...)
	return ack, explainSubject(ctx, j.JetStream, subject, err)
}

func (j fullJS) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := j.JetStream.PublishMsg(ctx, msg, opts...)
	return ack, explainSubject(ctx, j.JetStream, msg.Subject, err)
}

func (j fullJS) PublishAsync(subject string, data []byte, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	return j.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data}, opts...)
}

func (j fullJS) PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f, err := j.JetStream.PublishMsgAsync(msg, opts...)
	if err != nil {
		return nil, explainSubject(context.Background(), j.JetStream, msg.Subject, err)
	}
	return newFullFuture(f, j.JetStream), nil
}

// fullFuture is a publish's future whose error names a full stream.
type fullFuture struct {
	jetstream.PubAckFuture
	ok  chan *jetstream.PubAck
	err chan error
}

// newFullFuture relays f's outcome, explaining its error; the goroutine ends with f, which
// ends with an ack, an error or the publish's timeout.
func newFullFuture(f jetstream.PubAckFuture, js jetstream.JetStream) *fullFuture {
	ff := &fullFuture{PubAckFuture: f, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	go func() {
		select {
		case ack := <-f.Ok():
			ff.ok <- ack
		case err := <-f.Err():
			ff.err <- explainSubject(context.Background(), js, f.Msg().Subject, err)
		}
	}()
	return ff
}

func (f *fullFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *fullFuture) Err() <-chan error            { return f.err }

// fullObjects is an object store whose writes name it when it is full.
type fullObjects struct {
	jetstream.ObjectStore
	js jetstream.JetStream
}

func (o fullObjects) explain(ctx context.Context, err error) error {
	return explain(ctx, o.js, objectStream(events.RawBucket), "object store "+events.RawBucket, err)
}

// put explains a refused write and removes what it left: when a full store refuses chunks
// that were published asynchronously, nats.go learns it after writing the object's meta, and
// removes the chunks but not the meta, which leaves an object without its data.
func (o fullObjects) put(ctx context.Context, name string, info *jetstream.ObjectInfo, err error) (*jetstream.ObjectInfo, error) {
	if err == nil || !isFull(err) {
		return info, err
	}
	ctx = context.WithoutCancel(ctx)
	if stored, gerr := o.ObjectStore.GetInfo(ctx, name); gerr == nil && !o.complete(ctx, stored) {
		if derr := o.ObjectStore.Delete(ctx, name); derr != nil {
			err = fmt.Errorf("%w (and removing what it left of %s: %v)", err, name, derr)
		}
	}
	return nil, o.explain(ctx, err)
}

// complete reports whether the store holds every chunk of the object info describes.
func (o fullObjects) complete(ctx context.Context, info *jetstream.ObjectInfo) bool {
	s, err := o.js.Stream(ctx, objectStream(info.Bucket))
	if err != nil {
		return true // cannot tell: leave it
	}
	subject := fmt.Sprintf("$O.%s.C.%s", info.Bucket, info.NUID)
	si, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return true
	}
	return si.State.Subjects[subject] == uint64(info.Chunks)
}

func (o fullObjects) Put(ctx context.Context, meta jetstream.ObjectMeta, r io.Reader) (*jetstream.ObjectInfo, error) {
	info, err := o.ObjectStore.Put(ctx, meta, r)
	return o.put(ctx, meta.Name, info, err)
}

func (o fullObjects) PutBytes(ctx context.Context, name string, data []byte) (*jetstream.ObjectInfo, error) {
	info, err := o.ObjectStore.PutBytes(ctx, name, data)
	return o.put(ctx, name, info, err)
}

func (o fullObjects) PutString(ctx context.Context, name string, data string) (*jetstream.ObjectInfo, error) {
	info, err := o.ObjectStore.PutString(ctx, name, data)
	return o.put(ctx, name, info, err)
}

func (o fullObjects) PutFile(ctx context.Context, file string) (*jetstream.ObjectInfo, error) {
	info, err := o.ObjectStore.PutFile(ctx, file)
	return o.put(ctx, file, info, err)
}

func (o fullObjects) UpdateMeta(ctx context.Context, name string, meta jetstream.ObjectMeta) error {
	return o.explain(ctx, o.ObjectStore.UpdateMeta(ctx, name, meta))
}

// fullKV is a key-value bucket whose writes name it when it is full.
type fullKV struct {
	jetstream.KeyValue
	js jetstream.JetStream
}

func (b fullKV) explain(ctx context.Context, err error) error {
	return explain(ctx, b.js, kvStream(b.Bucket()), "key-value bucket "+b.Bucket(), err)
}

func (b fullKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := b.KeyValue.Put(ctx, key, value)
	return rev, b.explain(ctx, err)
}

func (b fullKV) PutString(ctx context.Context, key string, value string) (uint64, error) {
	rev, err := b.KeyValue.PutString(ctx, key, value)
	return rev, b.explain(ctx, err)
}

func (b fullKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	rev, err := b.KeyValue.Create(ctx, key, value, opts...)
	return rev, b.explain(ctx, err)
}

func (b fullKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	rev, err := b.KeyValue.Update(ctx, key, value, revision)
	return rev, b.explain(ctx, err)
}

// errCodeReplicasNotSupported is JetStream's error for replicas > 1 on a server that is not in
// a cluster.
const errCodeReplicasNotSupported jetstream.ErrorCode = 10074

// ReplicasUnsupported reports whether err is the server refusing NATS_REPLICAS above 1 because it
// is not in a cluster: no retry can change that, so a service stops with it.
func ReplicasUnsupported(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeReplicasNotSupported
}

// ExplainReplicas returns err saying what to change when it is ReplicasUnsupported (replicas is
// NATS_REPLICAS), and err itself otherwise.
func ExplainReplicas(err error, replicas int) error {
	if !ReplicasUnsupported(err) {
		return err
	}
	return fmt.Errorf("NATS_REPLICAS=%d: the NATS server is not in a cluster, so it keeps one replica of each stream: set NATS_REPLICAS=1, or run a cluster: %w",
		replicas, err)
}
