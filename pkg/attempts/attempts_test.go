package attempts_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/attempts"
	"github.com/marketpipe/marketpipe/pkg/natstest"
)

// TestOfJob reads a job's records, one per stage, and nothing of other jobs; no bucket
// and no record are both an empty answer, not a wait.
func TestOfJob(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if as, err := attempts.OfJob(ctx, js, "job-1"); err != nil || len(as) != 0 {
		t.Fatalf("without the bucket: %v, %v", as, err)
	}
	kv, err := attempts.Declare(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	if as, err := attempts.OfJob(ctx, js, "job-1"); err != nil || len(as) != 0 {
		t.Fatalf("empty bucket: %v, %v", as, err)
	}
	if _, err := kv.Put(ctx, attempts.DeliveryKey("poller", 7), []byte(`{"settled":1}`)); err != nil {
		t.Fatal(err)
	}
	if as, err := attempts.OfJob(ctx, js, "job-1"); err != nil || len(as) != 0 {
		t.Fatalf("no record of the job: %v, %v", as, err)
	}
	for _, a := range []attempts.Record{{Job: "job-1", Stage: "requester", Attempts: 2}, {Job: "job-1", Stage: "poller", Attempts: 1}, {Job: "job-2", Stage: "requester"}} {
		data, _ := json.Marshal(a)
		if _, err := kv.Put(ctx, attempts.JobKey(a.Job, a.Stage), data); err != nil {
			t.Fatal(err)
		}
	}
	as, err := attempts.OfJob(ctx, js, "job-1")
	if err != nil || len(as) != 2 {
		t.Fatalf("job-1: %+v, %v", as, err)
	}
	for _, a := range as {
		if a.Job != "job-1" {
			t.Errorf("record of another job: %+v", a)
		}
	}
}
