package natsx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// End is how a job run ended, as recorded in events.EndsBucket. The first end recorded for a
// run is its end: the loader's commit and `marketpipe cancel` race for the same key, and the
// key-value store's create-if-absent decides, so a run is never both loaded and cancelled.
type End struct {
	State string    `json:"state"` // events.Loaded (committed) or events.Cancelled
	By    string    `json:"by,omitempty"`
	At    time.Time `json:"at"`
}

// EndKey is the key of a job run's end.
func EndKey(jobID string, generation int) string { return jobID + ".g" + strconv.Itoa(generation) }

// ClaimEnd records e as the end of the job run unless one is recorded already, and returns the
// end that holds: e, or the earlier one.
func ClaimEnd(ctx context.Context, kv jetstream.KeyValue, jobID string, generation int, e End) (End, error) {
	key := EndKey(jobID, generation)
	b, err := json.Marshal(e)
	if err != nil {
		return End{}, err
	}
	_, err = kv.Create(ctx, key, b)
	if err == nil {
		return e, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return End{}, fmt.Errorf("record the end of %s: %w", key, err)
	}
	have, ok, err := RunEnd(ctx, kv, jobID, generation)
	if err != nil {
		return End{}, err
	}
	if !ok { // deleted between the two calls: only an operator purging the bucket does that
		return End{}, fmt.Errorf("record the end of %s: the record vanished; try again", key)
	}
	return have, nil
}

// RunEnd returns the recorded end of a job run; false when it has not ended.
func RunEnd(ctx context.Context, kv jetstream.KeyValue, jobID string, generation int) (End, bool, error) {
	key := EndKey(jobID, generation)
	entry, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return End{}, false, nil
	}
	if err != nil {
		return End{}, false, fmt.Errorf("read the end of %s: %w", key, err)
	}
	var e End
	if err := json.Unmarshal(entry.Value(), &e); err != nil {
		return End{}, false, fmt.Errorf("read the end of %s: %w", key, err)
	}
	return e, true, nil
}
