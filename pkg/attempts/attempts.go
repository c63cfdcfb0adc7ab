// Package attempts is the key-value bucket where the stage runtime (pkg/stage) keeps what it
// knows about deliveries that did not simply succeed, and where `marketpipe status` reads it.
// It knows no subject or stream of the pipeline, so the runtime depends on it alone.
package attempts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/setup"
)

// Bucket is the key-value bucket where the stage runtime keeps what it knows about
// deliveries that did not simply succeed: per job and stage the last failure (what `status` and
// `submit --wait` show), and per message the deliveries it settled (to count those that crashed
// or timed out the stage). Entries are removed once their message succeeds.
const Bucket = "mp_attempts"

// TTL is how long an entry lives after its last write. A waiting message's entry is
// rewritten at each delivery, so this must exceed the longest gap between two deliveries:
// stage.MaxWait, the runtime's longest backoff and any AckWait are all far shorter.
const TTL = 24 * time.Hour

// Record is the record of a job's failing deliveries at one stage.
type Record struct {
	Job   string `json:"job"`
	Stage string `json:"stage"`
	// Attempts counts the consecutive failed deliveries (waits and crashes not included).
	Attempts int       `json:"attempts"`
	Error    string    `json:"error"` // the last failure, secrets redacted
	At       time.Time `json:"at"`    // when it failed
	// NextAt is when the message is delivered again; zero once it is dead-lettered.
	NextAt       time.Time `json:"next_at,omitzero"`
	DeadLettered bool      `json:"dead_lettered,omitempty"`
}

// JobKey is the key of a job's record at a stage.
func JobKey(jobID, stage string) string { return "job." + jobID + "." + stage }

// DeliveryKey is the key of one message's delivery record at a stage.
func DeliveryKey(stage string, streamSeq uint64) string {
	return "msg." + stage + "." + strconv.FormatUint(streamSeq, 10)
}

// Declare binds the attempts bucket, creating it when missing with the given replicas
// (0: one). An existing bucket is left as it is, so a service never lowers its replicas.
func Declare(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("key-value bucket %s: %w", Bucket, err)
	}
	kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "failing deliveries per job and stage",
		TTL: TTL, Replicas: max(replicas, 1), History: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("declare key-value bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// Bind binds the attempts bucket the admin created (natsx.Setup, run by `marketpipe
// migrate`); a missing one is an error wrapping setup.ErrNotSetUp.
func Bind(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, setup.Missing("key-value bucket "+Bucket, err)
	case err != nil:
		return nil, fmt.Errorf("key-value bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// OfJob returns the records of a job's failing deliveries, one per stage; none when the
// bucket does not exist yet.
func OfJob(ctx context.Context, js jetstream.JetStream, jobID string) ([]Record, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("attempts of job %s: %w", jobID, err)
	}
	w, err := kv.Watch(ctx, JobKey(jobID, "*"), jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("attempts of job %s: %w", jobID, err)
	}
	defer w.Stop()
	var out []Record
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				return out, nil
			}
			var a Record
			if err := json.Unmarshal(e.Value(), &a); err != nil {
				return nil, fmt.Errorf("attempts of job %s: key %s: %w", jobID, e.Key(), err)
			}
			out = append(out, a)
		case <-ctx.Done():
			return nil, fmt.Errorf("attempts of job %s: %w", jobID, ctx.Err())
		}
	}
}
