package natsx_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/attempts"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
)

// allStreams are the streams Setup declares, the object store's and the buckets' included.
var allStreams = []string{events.JobsStream, events.RowsStream, events.DLQStream, events.ChunksStream,
	"OBJ_" + events.RawBucket, "OBJ_" + events.SpecsBucket, "KV_" + events.LedgerBucket, "KV_" + events.ChunksBucket, "KV_" + attempts.Bucket,
	events.SchedulesStream, "KV_" + events.SchedulesBucket, "KV_" + events.SubmitsBucket, "KV_" + events.EndsBucket,
	"KV_" + events.BackfillsBucket, "KV_" + events.OutputsBucket}

func TestBudgetSharesEverythingOnce(t *testing.T) {
	total := int64(0)
	seen := map[string]bool{}
	for _, s := range natsx.Budget {
		total += s.Percent
		if seen[s.Stream] {
			t.Errorf("%s has two shares", s.Stream)
		}
		seen[s.Stream] = true
		// The smallest NATS_MAX_BYTES still gives every stream room for its largest message.
		if share := config.MinNATSMaxBytes / 100 * s.Percent; share < events.MaxPayload {
			t.Errorf("%s: %d%% of NATS_MAX_BYTES=%d is %d bytes, less than one message of max_payload %d",
				s.Stream, s.Percent, config.MinNATSMaxBytes, share, events.MaxPayload)
		}
	}
	if total != 100 {
		t.Errorf("the shares add up to %d%%", total)
	}
	for _, name := range allStreams {
		if !seen[name] {
			t.Errorf("%s has no share", name)
		}
	}
}

// TestFullStreamsRefuseAndSayWhich fills every kind of stream Setup declares under a small
// budget: each refuses the write that does not fit (DiscardNew: what it holds stays) with an
// error naming it.
func TestFullStreamsRefuseAndSayWhich(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := natstest.Start(t)
	_, plain := natstest.Connect(t, s)
	js := natsx.NameFullStreams(plain)
	const budget = 10 << 20
	st, err := natsx.Setup(ctx, js, natsx.Retention{MaxBytes: budget})
	if err != nil {
		t.Fatal(err)
	}
	for _, share := range natsx.Budget {
		str, err := js.Stream(ctx, share.Stream)
		if err != nil {
			t.Fatal(err)
		}
		cfg := str.CachedInfo().Config
		// The server refuses DiscardNew on a stream of message schedules.
		discard := jetstream.DiscardNew
		if share.Stream == events.SchedulesStream {
			discard = jetstream.DiscardOld
		}
		if want := int64(budget) / 100 * share.Percent; cfg.MaxBytes != want || cfg.Discard != discard {
			t.Errorf("%s: max_bytes %d, discard %v; want %d, %v", share.Stream, cfg.MaxBytes, cfg.Discard, want, discard)
		}
	}

	// Job events, published one by one, until MP_JOBS (1 MiB) refuses one.
	event := bytes.Repeat([]byte("j"), 64<<10)
	var pubErr error
	for i := 0; i < 100 && pubErr == nil; i++ {
		_, pubErr = js.Publish(ctx, events.JobSubject(fmt.Sprintf("job%d", i), events.Submitted), event)
	}
	checkFull(t, pubErr, "stream "+events.JobsStream+" is full")
	if jobs, err := plain.Stream(ctx, events.JobsStream); err != nil {
		t.Fatal(err)
	} else if m, err := jobs.GetMsg(ctx, 1); err != nil || m.Subject != events.JobSubject("job0", events.Submitted) {
		t.Errorf("the first job event is gone (%v): a full stream must refuse the new, not drop the old", err)
	}

	// Row batches, published asynchronously as the transformer does, until MP_ROWS refuses one.
	var futures []jetstream.PubAckFuture
	for i := range 60 {
		f, err := js.PublishAsync(events.RowsSubject("job0"), bytes.Repeat([]byte{byte(i)}, 128<<10))
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	var asyncErr error
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			asyncErr = cmpOr(asyncErr, err)
		case <-ctx.Done():
			t.Fatal("no ack")
		}
	}
	checkFull(t, asyncErr, "stream "+events.RowsStream+" is full")

	// A raw file larger than mp_raw's share.
	_, err = st.Raw.PutBytes(ctx, "big", bytes.Repeat([]byte("r"), 5<<20))
	checkFull(t, err, "object store "+events.RawBucket+" is full")
	if raw, err := plain.Stream(ctx, "OBJ_"+events.RawBucket); err != nil {
		t.Fatal(err)
	} else if info, err := raw.Info(ctx, jetstream.WithSubjectFilter("$O.*.C.>")); err != nil || len(info.State.Subjects) != 0 {
		t.Errorf("after the refused file, the raw store holds chunks %v (%v); want none half-stored", info.State.Subjects, err)
	}
	if info, err := st.Raw.GetInfo(ctx, "big"); err == nil {
		t.Errorf("the refused file is listed as an object of %d bytes in %d chunks, which the store does not hold", info.Size, info.Chunks)
	}

	// Ledger entries until mp_ledger refuses one.
	var kvErr error
	for i := 0; i < 100 && kvErr == nil; i++ {
		_, kvErr = st.Ledger.Put(ctx, fmt.Sprintf("job.g1.b%d", i), bytes.Repeat([]byte("l"), 32<<10))
	}
	checkFull(t, kvErr, "key-value bucket "+events.LedgerBucket+" is full")
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func checkFull(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("no error where %q was due", want)
	case !errors.Is(err, natsx.ErrFull) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "NATS_MAX_BYTES"):
		t.Errorf("error %q; want one matching ErrFull that says %q and names NATS_MAX_BYTES", err, want)
	}
}

// TestSetupRaisesAndNeverLowersReplicas runs Setup on a 3-node cluster with NATS_REPLICAS 1,
// then 3, then 1 again: the streams start at R1, are raised to R3, and stay R3.
func TestSetupRaisesAndNeverLowersReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	servers := natstest.StartCluster(t, 3)
	_, js := natstest.ConnectURL(t, natstest.ClusterURL(servers))
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	replicas := func() map[string]int {
		out := map[string]int{}
		for _, name := range allStreams {
			s, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			out[name] = s.CachedInfo().Config.Replicas
		}
		return out
	}
	setup := func(n int) {
		t.Helper()
		// The cluster's assignments may take a moment after a change: retry briefly.
		var err error
		for range 20 {
			setupCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, err = natsx.Setup(setupCtx, js, natsx.Retention{Replicas: n, Log: log})
			cancel()
			if err == nil {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Fatalf("Setup with %d replicas: %v", n, err)
	}
	want := func(n int) {
		t.Helper()
		for name, got := range replicas() {
			if got != n {
				t.Errorf("%s: %d replicas; want %d", name, got, n)
			}
		}
	}
	setup(1)
	want(1)
	setup(3)
	want(3)
	if !strings.Contains(logs.String(), "raising the replicas") {
		t.Errorf("raising the replicas was not logged:\n%s", logs.String())
	}
	setup(1)
	want(3)
	if !strings.Contains(logs.String(), "never lowered") || !strings.Contains(logs.String(), "NATS_REPLICAS=1") {
		t.Errorf("keeping the replicas was not logged:\n%s", logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestConcurrentSetupOnACluster declares the streams from six clients at once on a 3-node
// cluster with three replicas, as the services do when they start together: each must finish.
func TestConcurrentSetupOnACluster(t *testing.T) {
	servers := natstest.StartCluster(t, 3)
	errs := make(chan error, 6)
	for i := range cap(errs) {
		_, js := natstest.ConnectURL(t, servers[i%len(servers)].ClientURL())
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := natsx.Setup(ctx, js, natsx.Retention{Replicas: 3})
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("Setup: %v", err)
		}
	}
}

// TestSetupKeepsWhatAnEarlierStreamHolds declares the streams over an MP_JOBS of an earlier
// version (no byte limit, DiscardOld) that holds more than its new share: every message stays,
// and the next publish is refused.
func TestSetupKeepsWhatAnEarlierStreamHolds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: events.JobsStream, Subjects: []string{events.JobsSubjects}}); err != nil {
		t.Fatal(err)
	}
	for i := range 32 {
		if _, err := js.Publish(ctx, events.JobSubject(fmt.Sprintf("old%d", i), events.Loaded), bytes.Repeat([]byte("o"), 64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := natsx.Setup(ctx, natsx.NameFullStreams(js), natsx.Retention{MaxBytes: 10 << 20}); err != nil {
		t.Fatal(err)
	}
	str, err := js.Stream(ctx, events.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	share := int64(-1)
	for _, s := range natsx.Budget {
		if s.Stream == events.JobsStream {
			share = (10 << 20) / 100 * s.Percent
		}
	}
	if info.State.Msgs != 32 || info.Config.Discard != jetstream.DiscardNew || info.Config.MaxBytes != share {
		t.Errorf("after Setup: %d messages, discard %v, max_bytes %d; want 32, new, %d", info.State.Msgs, info.Config.Discard, info.Config.MaxBytes, share)
	}
	_, err = natsx.NameFullStreams(js).Publish(ctx, events.JobSubject("new", events.Submitted), []byte("{}"))
	checkFull(t, err, "stream "+events.JobsStream+" is full")
}
