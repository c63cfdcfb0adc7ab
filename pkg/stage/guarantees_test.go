package stage_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/attempts"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// Environment of the crashing helper process (TestCrashHelper).
const (
	envCrashNATS       = "STAGE_TEST_CRASH_NATS"
	envCrashMaxDeliver = "STAGE_TEST_CRASH_MAX_DELIVER"
	envCrashMaxCrashes = "STAGE_TEST_CRASH_MAX_CRASHES"
)

// TestCrashHelper is not a test: run by TestCrashingMessageIsDeadLettered as a child process
// (the test binary itself), it runs the stage "work" whose handler kills its own process.
func TestCrashHelper(t *testing.T) {
	url := os.Getenv(envCrashNATS)
	if url == "" {
		return // a normal test run: nothing to do
	}
	maxDeliver, _ := strconv.Atoi(os.Getenv(envCrashMaxDeliver))
	maxCrashes, _ := strconv.Atoi(os.Getenv(envCrashMaxCrashes))
	_, js := natstest.ConnectURL(t, url)
	s, err := stage.New(js, stage.Config{Name: "work", Stream: testStream, Filters: []string{"t.>"},
		MaxDeliver: maxDeliver, MaxCrashes: maxCrashes, AckWait: time.Second},
		stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal ends the process
		}), stage.Options{Subjects: events.Subjects{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = s.Run(ctx) // the parent kills this process once the message is dead-lettered
}

// TestCrashingMessageIsDeadLettered runs a stage in a child process whose handler kills the
// process on every delivery, restarting it each time, as a supervisor would. The runtime must
// dead-letter the message before handing it to the handler once more than its limit
// (MaxDeliver, or MaxCrashes for a stage without one), with the reason, and leave nothing pending.
func TestCrashingMessageIsDeadLettered(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		maxDeliver, maxCrashes int
		crashes                int
	}{
		{"max deliver 3", 3, 0, 3},
		{"unlimited deliveries, max crashes 2", -1, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := natstest.Start(t)
			js := setupOn(t, srv.ClientURL())
			publishN(t, js, 1)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			crashes := 0
			var dl []jetstream.Msg
			for len(dl) == 0 {
				if crashes > tc.crashes {
					t.Fatalf("the handler crashed its process %d times; want the message dead-lettered after %d", crashes, tc.crashes)
				}
				cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
				cmd.Env = append(os.Environ(), envCrashNATS+"="+srv.ClientURL(),
					envCrashMaxDeliver+"="+strconv.Itoa(tc.maxDeliver), envCrashMaxCrashes+"="+strconv.Itoa(tc.maxCrashes))
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()
				select {
				case err := <-exited:
					var ee *exec.ExitError
					if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
						t.Fatalf("helper exited with %v, want killed by its handler", err)
					}
					crashes++
				case <-waitDLQ(ctx, js):
					// The runtime terminates the message just after its dead letter is stored:
					// give it that moment before the helper goes.
					for i := 0; i < 50; i++ {
						if info := consumerInfo(t, js, "work"); info.NumPending == 0 && info.NumAckPending == 0 {
							break
						}
						time.Sleep(100 * time.Millisecond)
					}
					_ = cmd.Process.Kill()
					<-exited
				}
				dl = dlqMessages(t, js)
			}
			if crashes != tc.crashes {
				t.Errorf("handler crashed the process %d times, want %d", crashes, tc.crashes)
			}
			want := fmt.Sprintf("crashed or timed out the stage %d times", tc.crashes)
			if got := dl[0].Headers().Get(stage.HdrDLQReason); got != want {
				t.Errorf("reason = %q, want %q", got, want)
			}
			info := consumerInfo(t, js, "work")
			if info.NumPending != 0 || info.NumAckPending != 0 {
				t.Errorf("pending %d, ack pending %d; want 0 and 0", info.NumPending, info.NumAckPending)
			}
		})
	}
}

// waitDLQ closes its channel once MP_DLQ holds a message.
func waitDLQ(ctx context.Context, js jetstream.JetStream) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for ctx.Err() == nil {
			if s, err := js.Stream(ctx, "MP_DLQ"); err == nil {
				if info, err := s.Info(ctx); err == nil && info.State.Msgs > 0 {
					close(done)
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return done
}

// setupOn declares the test streams on a server other than setup's own.
func setupOn(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	_, js := natstest.ConnectURL(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, sc := range []jetstream.StreamConfig{
		{Name: testStream, Subjects: []string{"t.>"}},
		{Name: "MP_DLQ", Subjects: []string{"mp.dlq.>"}},
	} {
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	return js
}

// TestDeadLetterFailureKeepsTheMessage: on the last delivery MaxDeliver allows, a dead letter
// that cannot be published must not leave the message to the server's limit (which drops it):
// it is delivered again and dead-lettered once MP_DLQ takes it, without running the handler.
func TestDeadLetterFailureKeepsTheMessage(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	if err := js.DeleteStream(ctx, "MP_DLQ"); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	run(t, js, stage.Config{MaxDeliver: 2}, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		calls.Add(1)
		return errors.New("vendor 503")
	}))
	publishN(t, js, 1)
	waitFor(t, "two failed deliveries and a failed dead letter", func() bool {
		return calls.Load() == 2 && consumerInfo(t, js, "work").NumRedelivered > 0 && consumerInfo(t, js, "work").Delivered.Consumer >= 3
	})
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MP_DLQ", Subjects: []string{"mp.dlq.>"}}); err != nil {
		t.Fatal(err)
	}
	var dl []jetstream.Msg
	waitFor(t, "dead letter", func() bool { dl = dlqMessages(t, js); return len(dl) == 1 })
	if got := dl[0].Headers().Get(stage.HdrDLQReason); got != "gave up after 2 deliveries: vendor 503" {
		t.Errorf("reason = %q", got)
	}
	waitFor(t, "nothing pending", func() bool {
		info := consumerInfo(t, js, "work")
		return info.NumPending == 0 && info.NumAckPending == 0
	})
	if calls.Load() != 2 {
		t.Errorf("handler ran %d times, want 2", calls.Load())
	}
}

// TestDeletedConsumerIsRecreated deletes a running stage's consumer: the stage must declare it
// again and handle what is published afterwards, without delivering again what it had acked.
func TestDeletedConsumerIsRecreated(t *testing.T) {
	js := setup(t)
	var mu sync.Mutex
	seen := map[string]int{}
	s, stop := runStage(t, js, stage.Config{}, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		mu.Lock()
		seen[string(m.Data())]++
		mu.Unlock()
		return nil
	}))
	defer stop()
	handled := func(data string) int {
		mu.Lock()
		defer mu.Unlock()
		return seen[data]
	}
	publishN(t, js, 1)
	waitFor(t, "first message", func() bool { return handled("0") == 1 })
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready before the deletion: %v", err)
	}
	time.Sleep(6 * time.Second) // the stage looks at its consumer every 5s: it sees the ack
	if err := js.DeleteConsumer(context.Background(), testStream, "work"); err != nil {
		t.Fatal(err)
	}
	p := stage.NewPublisher(js)
	if err := p.Publish(context.Background(), "t.work", "after", []byte("after"), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message published after the deletion", func() bool { return handled("after") == 1 })
	waitFor(t, "ready", func() bool { return s.Ready(context.Background()) == nil })
	if n := handled("0"); n != 1 {
		t.Errorf("the message acked before the deletion was handled %d times, want 1", n)
	}
}

// TestReadinessFollowsTheConsumer deletes the stage's stream: while its consumer cannot be
// declared the stage is not ready, and says why; once the stream is back it consumes again.
func TestReadinessFollowsTheConsumer(t *testing.T) {
	js := setup(t)
	var calls atomic.Int64
	s, stop := runStage(t, js, stage.Config{}, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		calls.Add(1)
		return nil
	}))
	defer stop()
	waitFor(t, "ready", func() bool { return s.Ready(context.Background()) == nil })
	ctx := context.Background()
	if err := js.DeleteStream(ctx, testStream); err != nil {
		t.Fatal(err)
	}
	var err error
	waitFor(t, "not ready", func() bool { err = s.Ready(ctx); return err != nil })
	waitFor(t, "not ready for the missing stream", func() bool {
		err = s.Ready(ctx)
		return err != nil && strings.Contains(err.Error(), "stream not found")
	})
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: testStream, Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready again", func() bool { return s.Ready(ctx) == nil })
	publishN(t, js, 1)
	waitFor(t, "message handled", func() bool { return calls.Load() == 1 })
}

// runStage is run, also returning the stage.
func runStage(t *testing.T, js jetstream.JetStream, cfg stage.Config, h stage.Handler) (*stage.Stage, func()) {
	t.Helper()
	cfg.Name, cfg.Stream, cfg.Filters = "work", testStream, []string{"t.>"}
	if cfg.Backoff == nil {
		cfg.Backoff = func(uint64) time.Duration { return 50 * time.Millisecond }
	}
	s, err := stage.New(js, cfg, h, stage.Options{Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)), Subjects: events.Subjects{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return s, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after shutdown")
		}
	}
}

// jobStage runs a stage named "jobstage" on the jobs subjects, in a stream of its own.
func jobStage(t *testing.T, js jetstream.JetStream, h stage.Handler, backoff time.Duration) {
	t.Helper()
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: events.JobsStream, Subjects: []string{events.JobsSubjects, events.RowsSubjects}}); err != nil {
		t.Fatal(err)
	}
	s, err := stage.New(js, stage.Config{Name: "jobstage", Stream: events.JobsStream,
		Filters: []string{events.JobsSubjects, events.RowsSubjects}, MaxDeliver: 5,
		Backoff: func(uint64) time.Duration { return backoff }}, h, stage.Options{Subjects: events.Subjects{}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = s.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestInvalidJobIDIsPermanent: a job id that is no valid subject token or key ("a b", "x*y",
// "") fails the same way on every retry: the message is dead-lettered at its first delivery,
// whether the id is in its subject or only in its payload (where the handler meets it as a
// key-value or publish error).
func TestInvalidJobIDIsPermanent(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	ledger, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "ledger"})
	if err != nil {
		t.Fatal(err)
	}
	pub := stage.NewPublisher(js)
	var calls atomic.Int64
	jobStage(t, js, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		calls.Add(1)
		id, how, _ := strings.Cut(string(m.Data()), "|")
		if how == "kv" {
			_, err := ledger.Put(ctx, natsx.LedgerKey(id, 0, 1), []byte("1"))
			return err
		}
		j := events.Job{ID: id, State: events.Requested}
		return pub.PublishJob(ctx, &j)
	}), 50*time.Millisecond)

	ids := []string{"a b", "x*y", ""}
	for i, id := range ids {
		for _, how := range []string{"kv", "publish"} {
			if err := pub.Publish(ctx, events.JobSubject("ok", events.Submitted), fmt.Sprintf("p%d%s", i, how), []byte(id+"|"+how), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// In the subject: only "x*y" can be published there ("a b" and "" are refused by the client).
	if err := pub.Publish(ctx, events.RowsSubject("x*y"), "s", []byte("x*y|kv"), nil); err != nil {
		t.Fatal(err)
	}
	var dl []jetstream.Msg
	waitFor(t, "seven dead letters", func() bool { dl = dlqMessages(t, js); return len(dl) == 7 })
	for _, d := range dl {
		h := d.Headers()
		reason := h.Get(stage.HdrDLQReason)
		if h.Get(stage.HdrDLQDeliveries) != "1" || !strings.HasPrefix(reason, "permanent: ") ||
			!strings.Contains(reason, "invalid") {
			t.Errorf("dead letter of %q (%s): deliveries %s, reason %q", d.Data(), h.Get(stage.HdrDLQSubject),
				h.Get(stage.HdrDLQDeliveries), reason)
		}
		if h.Get(stage.HdrDLQSubject) == events.RowsSubject("x*y") && !strings.Contains(reason, `invalid job id "x*y"`) {
			t.Errorf("subject's invalid id: reason %q", reason)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if c := calls.Load(); c != 6 {
		t.Errorf("handler ran %d times, want 6 (once per payload, never for the invalid subject)", c)
	}
}

// TestFailingJobIsRecorded: while a job's message fails transiently, the attempts bucket says
// which stage, how many attempts, the last error without its secrets and when the next attempt
// is; once it succeeds, the record is gone.
func TestFailingJobIsRecorded(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	var calls atomic.Int64
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock() // before the stage's cleanup waits for the handler
	const secretErr = "dial nats://op:hunter2@127.0.0.1:1: connect: connection refused (password=hunter2)"
	jobStage(t, js, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		if calls.Add(1) <= 2 {
			return errors.New(secretErr)
		}
		<-release
		return nil
	}), 300*time.Millisecond)
	j := events.Job{ID: "job-1"}
	j = j.Advance(events.Submitted, time.Now())
	if err := stage.NewPublisher(js).PublishJob(ctx, &j); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "third delivery", func() bool { return calls.Load() == 3 })
	as, err := attempts.OfJob(ctx, js, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 {
		t.Fatalf("attempts = %+v, want one record", as)
	}
	a := as[0]
	if a.Stage != "jobstage" || a.Job != "job-1" || a.Attempts != 2 || a.DeadLettered {
		t.Errorf("record %+v", a)
	}
	if want := "dial nats://REDACTED@127.0.0.1:1: connect: connection refused (password=REDACTED)"; a.Error != want {
		t.Errorf("error = %q, want %q", a.Error, want)
	}
	if d := a.NextAt.Sub(a.At); d < 250*time.Millisecond || d > 350*time.Millisecond {
		t.Errorf("next attempt %s after the failure, want the backoff of 300ms", d)
	}
	unblock()
	waitFor(t, "record cleared", func() bool {
		as, err := attempts.OfJob(ctx, js, "job-1")
		return err == nil && len(as) == 0
	})
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"connect nats://user:pa55@host:4222": "connect nats://REDACTED@host:4222",
		"Authorization: Bearer abc.def-ghi":  "Authorization: Bearer REDACTED",
		"jwt eyJhbGciOi.eyJzdWIiOi.c2lnbmF0": "jwt REDACTED",
		`{"client_secret":"s3cr3t"}`:         `{"client_secret":"REDACTED"}`,
		"GET https://vendor/eap/x: 503":      "GET https://vendor/eap/x: 503",
	} {
		if got := stage.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
