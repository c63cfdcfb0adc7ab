package transformer_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/hostile"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// A stored file with a line longer than pkg/bounds allows (one an earlier version stored,
// without marks: the collector no longer stores such a file) fails its job with the line's
// number, also when it is larger than the chunk size: having no marks, it is read in one piece.
func TestTransformerFailsOnALongLine(t *testing.T) {
	env := natstest.NewEnv(t)
	file, err := io.ReadAll(hostile.LongLineFile(17 << 20))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("line %d: longer than 16 MiB", hostile.LongLine)
	for _, tc := range []struct {
		name   string
		chunks int
	}{{"whole", 1}, {"over-the-chunk-size", 4}} {
		t.Run(tc.name, func(t *testing.T) {
			h := chunkHandler(env, int64(len(file)/tc.chunks+1))
			j := collected(t, env, "job-long-"+tc.name, file)
			j.FileSize = int64(len(file))
			if err := stage.Jobs(h.Pub, events.Decode, h).Handle(context.Background(), env.DeliverJob(&j)); err != nil {
				t.Fatal(err)
			}
			got, _ := env.LastJob(j.ID)
			if got.State != events.Failed || !strings.Contains(got.Error, want) {
				t.Errorf("state %q error %q, want failed: %q", got.State, got.Error, want)
			}
		})
	}
}
