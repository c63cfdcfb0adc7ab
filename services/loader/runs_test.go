package loader

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
)

// TestRunCacheLooksUpOnce: the handlers that miss on one job at once share one look-up, and a
// cached run is not looked up again.
func TestRunCacheLooksUpOnce(t *testing.T) {
	var lookups atomic.Int64
	c := &runCache{lookup: func(context.Context, string) (map[int]uint64, error) {
		lookups.Add(1)
		time.Sleep(50 * time.Millisecond) // the first batches all arrive while it runs
		return map[int]uint64{0: 7}, nil
	}}
	hdr := rowcodec.Header{JobID: "job-x", Version: 7}
	var wg sync.WaitGroup
	errs := make([]error, 32)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.check(context.Background(), events.RowsSubject("job-x"), hdr) }()
	}
	wg.Wait()
	if err := c.check(context.Background(), events.RowsSubject("job-x"), hdr); err != nil {
		t.Fatal(err)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := lookups.Load(); n != 1 {
		t.Errorf("%d look-ups for 33 batches of one run, want 1", n)
	}
}
