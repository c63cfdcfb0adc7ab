package stage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/attempts"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

const testStream = "T"

func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	return setupOn(t, natstest.Start(t).ClientURL())
}

func publishN(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	p := stage.NewPublisher(js)
	for i := range n {
		if err := p.Publish(context.Background(), "t.work", fmt.Sprintf("m%d", i), []byte(fmt.Sprint(i)), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// run starts a stage and returns a function that stops it and waits for Run to return.
func run(t *testing.T, js jetstream.JetStream, cfg stage.Config, h stage.Handler) (stop func()) {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "work"
	}
	cfg.Stream = testStream
	cfg.Filters = []string{"t.>"}
	if cfg.Backoff == nil {
		cfg.Backoff = func(uint64) time.Duration { return 50 * time.Millisecond }
	}
	s, err := stage.New(js, cfg, h, stage.Options{Subjects: events.Subjects{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Run did not return after shutdown")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func consumerInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(context.Background(), testStream, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestReplicasSplitWork(t *testing.T) {
	js := setup(t)
	const n = 200
	var mu sync.Mutex
	seen := map[string]int{}
	perReplica := [2]atomic.Int64{}
	for r := range 2 {
		run(t, js, stage.Config{Concurrency: 2}, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
			time.Sleep(2 * time.Millisecond) // give the other replica a chance to pull
			mu.Lock()
			seen[string(m.Data())]++
			mu.Unlock()
			perReplica[r].Add(1)
			return nil
		}))
	}
	publishN(t, js, n)
	waitFor(t, "all messages handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == n
	})
	waitFor(t, "all acked", func() bool { return consumerInfo(t, js, "work").NumAckPending == 0 })
	for k, c := range seen {
		if c != 1 {
			t.Errorf("message %s handled %d times", k, c)
		}
	}
	if perReplica[0].Load() == 0 || perReplica[1].Load() == 0 {
		t.Errorf("work not split: replica counts %d and %d", perReplica[0].Load(), perReplica[1].Load())
	}
}

func TestTransientErrorIsRetried(t *testing.T) {
	js := setup(t)
	var calls atomic.Int64
	var lastDelivery atomic.Uint64
	run(t, js, stage.Config{}, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		lastDelivery.Store(m.NumDelivered())
		if calls.Add(1) < 3 {
			return errors.New("clickhouse unavailable")
		}
		return nil
	}))
	publishN(t, js, 1)
	waitFor(t, "success on the third delivery", func() bool { return calls.Load() == 3 })
	waitFor(t, "acked", func() bool { return consumerInfo(t, js, "work").NumAckPending == 0 })
	if got := lastDelivery.Load(); got != 3 {
		t.Errorf("NumDelivered on success = %d, want 3", got)
	}
	time.Sleep(200 * time.Millisecond)
	if calls.Load() != 3 {
		t.Errorf("handled %d times after ack, want 3", calls.Load())
	}
}

func dlqMessages(t *testing.T, js jetstream.JetStream) []jetstream.Msg {
	t.Helper()
	c, err := js.OrderedConsumer(context.Background(), "MP_DLQ", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.FetchNoWait(100)
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	return out
}

func TestPoisonIsDeadLetteredAndTerminated(t *testing.T) {
	js := setup(t)
	var calls atomic.Int64
	run(t, js, stage.Config{}, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		calls.Add(1)
		return stage.Permanent(errors.New("undecodable payload at byte 3"))
	}))
	publishN(t, js, 1)
	var dl []jetstream.Msg
	waitFor(t, "dead letter", func() bool { dl = dlqMessages(t, js); return len(dl) == 1 })
	h := dl[0].Headers()
	for k, want := range map[string]string{
		stage.HdrDLQStage: "work", stage.HdrDLQSubject: "t.work", stage.HdrDLQDeliveries: "1",
		stage.HdrDLQReason: "permanent: undecodable payload at byte 3", stage.HdrDLQMsgID: "m0",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if string(dl[0].Data()) != "0" {
		t.Errorf("dead letter data = %q, want the original payload", dl[0].Data())
	}
	waitFor(t, "terminated", func() bool { return consumerInfo(t, js, "work").NumAckPending == 0 })
	time.Sleep(300 * time.Millisecond)
	if calls.Load() != 1 {
		t.Errorf("poison handled %d times, want 1", calls.Load())
	}
}

func TestMaxDeliverDeadLetters(t *testing.T) {
	js := setup(t)
	var calls atomic.Int64
	run(t, js, stage.Config{MaxDeliver: 3}, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		calls.Add(1)
		return errors.New("vendor 503")
	}))
	publishN(t, js, 1)
	var dl []jetstream.Msg
	waitFor(t, "dead letter", func() bool { dl = dlqMessages(t, js); return len(dl) == 1 })
	if got := dl[0].Headers().Get(stage.HdrDLQReason); got != "gave up after 3 deliveries: vendor 503" {
		t.Errorf("reason = %q", got)
	}
	if calls.Load() != 3 {
		t.Errorf("handled %d times, want 3", calls.Load())
	}
}

func TestWaitIsNoFailure(t *testing.T) {
	js := setup(t)
	var calls atomic.Int64
	var first, second atomic.Int64
	run(t, js, stage.Config{MaxDeliver: -1}, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		switch calls.Add(1) {
		case 1:
			first.Store(time.Now().UnixNano())
			return stage.Wait(300*time.Millisecond, "not ready")
		case 2:
			second.Store(time.Now().UnixNano())
		}
		return nil
	}))
	publishN(t, js, 1)
	waitFor(t, "second delivery", func() bool { return calls.Load() == 2 })
	if gap := time.Duration(second.Load() - first.Load()); gap < 250*time.Millisecond {
		t.Errorf("redelivered after %s, want about 300ms", gap)
	}
	if n := len(dlqMessages(t, js)); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}

// TestLostDeliveryRecordsAreNoCrashes makes the attempts bucket refuse writes while a message
// waits (as it does while the bucket's stream elects a leader): the deliveries whose records
// were lost must not count as crashes, so the message is handled, not dead-lettered after
// MaxCrashes (5) deliveries.
func TestLostDeliveryRecordsAreNoCrashes(t *testing.T) {
	js := setup(t)
	const handled = 13
	var calls atomic.Int64
	refuseWrites := func() error {
		ctx := context.Background()
		s, err := js.Stream(ctx, natsx.KVStream(attempts.Bucket))
		if err != nil {
			return err
		}
		cfg := s.CachedInfo().Config
		cfg.MaxMsgSize = 1
		_, err = js.UpdateStream(ctx, cfg)
		return err
	}
	run(t, js, stage.Config{MaxDeliver: -1}, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		n := calls.Add(1)
		if n == 2 {
			if err := refuseWrites(); err != nil {
				t.Errorf("make the attempts bucket refuse writes: %v", err)
			}
		}
		if n < handled {
			return stage.Wait(10*time.Millisecond, "not ready")
		}
		return nil
	}))
	publishN(t, js, 1)
	waitFor(t, "the message handled or dead-lettered", func() bool {
		return calls.Load() >= handled || len(dlqMessages(t, js)) > 0
	})
	if dls := dlqMessages(t, js); len(dls) != 0 {
		t.Fatalf("dead-lettered after %d deliveries: %s", calls.Load(), dls[0].Headers().Get(stage.HdrDLQReason))
	}
	waitFor(t, "the message acked", func() bool { return consumerInfo(t, js, "work").NumAckPending == 0 })
}

func TestInProgressKeepsLongWork(t *testing.T) {
	js := setup(t)
	var calls atomic.Int64
	run(t, js, stage.Config{AckWait: time.Second}, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		calls.Add(1)
		time.Sleep(2500 * time.Millisecond)
		return nil
	}))
	publishN(t, js, 1)
	waitFor(t, "acked", func() bool { return calls.Load() == 1 && consumerInfo(t, js, "work").NumAckPending == 0 })
	if c := calls.Load(); c != 1 {
		t.Errorf("long handler ran %d times, want 1 (InProgress should hold the message)", c)
	}
	if rd := consumerInfo(t, js, "work").NumRedelivered; rd != 0 {
		t.Errorf("%d redeliveries, want 0", rd)
	}
}

func TestShutdownFinishesInFlightWork(t *testing.T) {
	js := setup(t)
	started := make(chan struct{})
	var finished atomic.Bool
	stop := run(t, js, stage.Config{}, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		close(started)
		time.Sleep(500 * time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		finished.Store(true)
		return nil
	}))
	publishN(t, js, 1)
	<-started
	stop() // returns only after the in-flight handler is done
	if !finished.Load() {
		t.Fatal("in-flight handler did not finish before Run returned")
	}
	info := consumerInfo(t, js, "work")
	if info.NumAckPending != 0 || info.AckFloor.Stream != 1 {
		t.Errorf("after shutdown: ack pending %d, ack floor %d; want 0 and 1", info.NumAckPending, info.AckFloor.Stream)
	}
}

func TestOversizedMessageIsDeadLettered(t *testing.T) {
	js := setup(t)
	var calls atomic.Int64
	run(t, js, stage.Config{MaxBytes: 10}, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		calls.Add(1)
		return nil
	}))
	p := stage.NewPublisher(js)
	if err := p.Publish(context.Background(), "t.work", "big", []byte("more than ten bytes"), nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), "t.work", "small", []byte("ok"), nil); err != nil {
		t.Fatal(err)
	}
	var dl []jetstream.Msg
	waitFor(t, "dead letter", func() bool { dl = dlqMessages(t, js); return len(dl) == 1 })
	if got := dl[0].Headers().Get(stage.HdrDLQReason); got != "permanent: message of 19 bytes exceeds the stage's limit of 10" {
		t.Errorf("reason = %q", got)
	}
	waitFor(t, "the small message handled", func() bool { return calls.Load() == 1 })
}

// TestRedriveReachesOnlyItsStages: a message redriven for some stages is handled by them only;
// another stage that reads its subject acks it unread.
func TestRedriveReachesOnlyItsStages(t *testing.T) {
	js := setup(t)
	handled := map[string]*atomic.Int64{"requester": {}, "jobs": {}}
	for name, n := range handled {
		run(t, js, stage.Config{Name: name}, stage.HandlerFunc(func(context.Context, *stage.Message) error {
			n.Add(1)
			return nil
		}))
	}
	p := stage.NewPublisher(js)
	hdr := nats.Header{stage.HdrRedriveStages: []string{"requester"}}
	if err := p.Publish(context.Background(), "t.work", "redriven", []byte("x"), hdr); err != nil {
		t.Fatal(err)
	}
	acked := func(name string) bool {
		c, err := js.Consumer(context.Background(), testStream, name)
		if err != nil {
			return false // not declared yet
		}
		info, err := c.Info(context.Background())
		return err == nil && info.AckFloor.Stream == 1
	}
	waitFor(t, "both stages done with it", func() bool { return acked("requester") && acked("jobs") })
	if r, j := handled["requester"].Load(), handled["jobs"].Load(); r != 1 || j != 0 {
		t.Errorf("handled by requester %d times, by jobs %d times; want 1 and 0", r, j)
	}
}
