package natsx_test

import (
	"context"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
)

// TestRetentionIsCoherent: what records that a batch was loaded or a chunk transformed lives as
// long as anything that can be redriven or replayed (job events, chunk tasks, dead letters), so
// a late redrive neither loads twice nor leaves its run unfinished.
func TestRetentionIsCoherent(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx := context.Background()
	var longest time.Duration
	for _, name := range []string{events.JobsStream, events.ChunksStream, events.DLQStream} {
		s, err := env.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		longest = max(longest, s.CachedInfo().Config.MaxAge)
	}
	for _, bucket := range []string{events.LedgerBucket, events.ChunksBucket} {
		s, err := env.JS.Stream(ctx, "KV_"+bucket)
		if err != nil {
			t.Fatal(err)
		}
		if age := s.CachedInfo().Config.MaxAge; age < longest {
			t.Errorf("%s keeps its records %v, less than the %v a redrive or replay can come after", bucket, age, longest)
		}
	}
}
