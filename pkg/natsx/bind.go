package natsx

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/attempts"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/setup"
)

// ErrNotSetUp and Missing are package setup's: natsx, the stage runtime and the attempts
// bucket report a missing resource alike.
var ErrNotSetUp = setup.ErrNotSetUp

// Missing returns the error for a resource that does not exist (err: what the server said).
func Missing(what string, err error) error { return setup.Missing(what, err) }

// Bind binds the pipeline's streams, object stores and key-value buckets, which the admin
// created (Setup, run by `marketpipe migrate`). It creates nothing: a missing one gives an
// error wrapping ErrNotSetUp. Binding reads each stream's info only (no content). A request
// that goes unanswered (in a cluster, while a stream's replicas elect a leader) is asked again
// until ctx ends.
func Bind(ctx context.Context, js jetstream.JetStream) (*Streams, error) {
	for _, name := range []string{events.JobsStream, events.RowsStream, events.DLQStream, events.ChunksStream, events.SchedulesStream} {
		err := retry(ctx, func(ctx context.Context) error { _, err := js.Stream(ctx, name); return err })
		if err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil, Missing("stream "+name, err)
			}
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
	}
	objects := func(bucket string) (jetstream.ObjectStore, error) {
		var o jetstream.ObjectStore
		err := retry(ctx, func(ctx context.Context) (err error) { o, err = js.ObjectStore(ctx, bucket); return err })
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound):
			return nil, Missing("object store "+bucket, err)
		case err != nil:
			return nil, fmt.Errorf("object store %s: %w", bucket, err)
		}
		return fullObjects{o, js}, nil
	}
	kv := func(bucket string) (jetstream.KeyValue, error) {
		var b jetstream.KeyValue
		err := retry(ctx, func(ctx context.Context) (err error) { b, err = js.KeyValue(ctx, bucket); return err })
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound):
			return nil, Missing("key-value bucket "+bucket, err)
		case err != nil:
			return nil, fmt.Errorf("key-value bucket %s: %w", bucket, err)
		}
		return fullKV{b, js}, nil
	}
	st := &Streams{JS: js}
	var err error
	if st.Raw, err = objects(events.RawBucket); err != nil {
		return nil, err
	}
	if st.Specs, err = objects(events.SpecsBucket); err != nil {
		return nil, err
	}
	if st.Ledger, err = kv(events.LedgerBucket); err != nil {
		return nil, err
	}
	if st.Chunks, err = kv(events.ChunksBucket); err != nil {
		return nil, err
	}
	if st.Schedules, err = kv(events.SchedulesBucket); err != nil {
		return nil, err
	}
	if st.Submits, err = kv(events.SubmitsBucket); err != nil {
		return nil, err
	}
	if st.Ends, err = kv(events.EndsBucket); err != nil {
		return nil, err
	}
	if st.Coverage, err = kv(events.CoverageBucket); err != nil {
		return nil, err
	}
	if st.Outputs, err = kv(events.OutputsBucket); err != nil {
		return nil, err
	}
	if err := retry(ctx, func(ctx context.Context) error { _, err := attempts.Bind(ctx, js); return err }); err != nil {
		return nil, err
	}
	return st, nil
}
