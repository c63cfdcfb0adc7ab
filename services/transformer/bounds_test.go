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
)

// A stored file with a line longer than pkg/bounds allows (one an earlier version stored)
// fails its job, read whole or in chunks, with the line's number.
func TestTransformerFailsOnALongLine(t *testing.T) {
	env := natstest.NewEnv(t)
	file, err := io.ReadAll(hostile.LongLineFile(17 << 20))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		chunks int
		want   string
	}{
		{"whole", 1, fmt.Sprintf("line %d: longer than 16 MiB", hostile.LongLine)},
		{"chunked", 4, fmt.Sprintf("line %d longer than 16 MiB", hostile.LongLine)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := chunkHandler(env, int64(len(file)/tc.chunks+1))
			j := collected(t, env, "job-long-"+tc.name, file)
			j.FileSize = int64(len(file))
			if err := h.Handle(context.Background(), env.DeliverJob(&j)); err != nil {
				t.Fatal(err)
			}
			if tc.chunks > 1 {
				handleChunks(t, env, h, j.ID, []int{0, 1, 2, 3})
			}
			got, _ := env.LastJob(j.ID)
			if got.State != events.Failed || !strings.Contains(got.Error, tc.want) {
				t.Errorf("state %q error %q, want failed: %q", got.State, got.Error, tc.want)
			}
		})
	}
}
