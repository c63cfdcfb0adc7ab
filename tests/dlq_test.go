package tests

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

type dlqEntry struct {
	ID         uint64 `json:"id"`
	Stage      string `json:"stage"`
	Subject    string `json:"subject"`
	Deliveries int    `json:"deliveries"`
	Reason     string `json:"reason"`
}

func listDLQ(t *testing.T, ctx context.Context, env map[string]string) []dlqEntry {
	t.Helper()
	out, stderr, code := runCLI(t, ctx, env, "dlq", "list", "--json")
	if code != 0 {
		t.Fatalf("dlq list: exit %d: %s", code, stderr)
	}
	var dls []dlqEntry
	if err := json.Unmarshal([]byte(out), &dls); err != nil {
		t.Fatalf("dlq list --json: %v\n%s", err, out)
	}
	return dls
}

func TestDeadLetterListAndRedrive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := natstest.Start(t)
	env := map[string]string{"NATS_URL": ns.ClientURL(), "HTTP_ADDR": "127.0.0.1:0",
		"VENDOR_URL": "http://127.0.0.1:1/eap"} // never called: the poison fails before
	startProc(t, "requester", "requester", env)

	if out, _, code := runCLI(t, ctx, env, "dlq", "list"); code != 0 || !strings.Contains(out, "no dead letters") {
		t.Fatalf("empty dlq list: exit %d, %q", code, out)
	}

	// A submitted event that is not a job: poison for the requester.
	_, js := natstest.ConnectURL(t, ns.ClientURL())
	subject := events.JobSubject("poison-1", events.Submitted)
	if err := stage.NewPublisher(js).Publish(ctx, subject, "poison-1", []byte("{not json"), nil); err != nil {
		t.Fatal(err)
	}
	var dls []dlqEntry
	waitUntil(t, ctx, "the poison dead-lettered", func() bool { dls = listDLQ(t, ctx, env); return len(dls) == 1 })
	d := dls[0]
	if d.Stage != "requester" || d.Subject != subject || d.Deliveries != 1 || !strings.Contains(d.Reason, "decode job event") {
		t.Errorf("dead letter = %+v", d)
	}
	out, _, _ := runCLI(t, ctx, env, "dlq", "list")
	if !strings.Contains(out, "decode job event") || !strings.Contains(out, subject) {
		t.Errorf("dlq list table lacks the reason or subject:\n%s", out)
	}

	if _, stderr, code := runCLI(t, ctx, env, "dlq", "redrive"); code != 2 {
		t.Errorf("redrive without --id or --all: exit %d (%s), want 2", code, stderr)
	}
	if _, stderr, code := runCLI(t, ctx, env, "dlq", "redrive", "--id", "999"); code == 0 || !strings.Contains(stderr, "no dead letter with id 999") {
		t.Errorf("redrive of an unknown id: exit %d, %s", code, stderr)
	}
	out, stderr, code := runCLI(t, ctx, env, "dlq", "redrive", "--id", jsonNumber(d.ID))
	if code != 0 || !strings.Contains(out, "1 message(s) redriven") {
		t.Fatalf("redrive: exit %d\n%s%s", code, out, stderr)
	}
	// Sent back on its original subject, the requester sees it again, and (still poison)
	// dead-letters it again: a new record replaces the redriven one.
	waitUntil(t, ctx, "the redriven poison dead-lettered again", func() bool {
		dls = listDLQ(t, ctx, env)
		return len(dls) == 1 && dls[0].ID != d.ID
	})
	if dls[0].Subject != subject || dls[0].Stage != "requester" {
		t.Errorf("after redrive: %+v", dls[0])
	}
	out, _, code = runCLI(t, ctx, env, "dlq", "redrive", "--all", "--stage", "poller")
	if code != 0 || !strings.Contains(out, "0 message(s) redriven") {
		t.Errorf("redrive --all --stage poller: exit %d, %s", code, out)
	}
}

// TestDeadLetterRedriveOfAMessageTwoStagesRead: a poison job event is dead-lettered by the
// requester and by the loader's jobs stage, which reads every job event. Redriving the
// requester's record publishes it once and removes both records, so that each stage makes one
// again: the dead letters do not multiply (before, a redrive left the jobs stage's old record
// beside its new one, and --all published the message once per record).
func TestDeadLetterRedriveOfAMessageTwoStagesRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := natstest.Start(t)
	ch := chtest.Start(t)
	env := map[string]string{"NATS_URL": ns.ClientURL(), "HTTP_ADDR": "127.0.0.1:0",
		"CLICKHOUSE_ADDR": ch.Addr(), "CLICKHOUSE_DATABASE": chtest.NewDatabase(t, ch),
		"VENDOR_URL": "http://127.0.0.1:1/eap"} // never called: the poison fails before
	startProc(t, "requester", "requester", env)
	startProc(t, "loader", "loader", env)

	_, js := natstest.ConnectURL(t, ns.ClientURL())
	subject := events.JobSubject("poison-2", events.Submitted)
	if err := stage.NewPublisher(js).Publish(ctx, subject, "poison-2", []byte("{not json"), nil); err != nil {
		t.Fatal(err)
	}
	// byStage waits until each of the two stages has a dead letter above after, then returns
	// all dead letters.
	byStage := func(what string, after uint64) []dlqEntry {
		t.Helper()
		var dls []dlqEntry
		waitUntil(t, ctx, what, func() bool {
			dls = listDLQ(t, ctx, env)
			seen := map[string]bool{}
			for _, d := range dls {
				if d.ID > after && d.Subject == subject {
					seen[d.Stage] = true
				}
			}
			return seen["requester"] && seen["jobs"]
		})
		return dls
	}
	dls := byStage("the poison dead-lettered by requester and jobs", 0)
	if len(dls) != 2 {
		t.Fatalf("dead letters = %+v, want one of requester and one of jobs", dls)
	}
	var req, jobs uint64
	for _, d := range dls {
		if d.Stage == "requester" {
			req = d.ID
		} else {
			jobs = d.ID
		}
	}
	out, stderr, code := runCLI(t, ctx, env, "dlq", "redrive", "--id", jsonNumber(req))
	if code != 0 {
		t.Fatalf("redrive --id %d: exit %d\n%s%s", req, code, out, stderr)
	}
	if !strings.Contains(out, "1 message(s) redriven, 2 dead letter(s) removed") ||
		!strings.Contains(out, "dead letter(s) "+jsonNumber(jobs)+" of the same message removed too") {
		t.Errorf("redrive --id %d does not say it removed the jobs stage's record %d too:\n%s", req, jobs, out)
	}
	last := max(req, jobs)
	dls = byStage("the redriven poison dead-lettered again by both", last)
	if len(dls) != 2 {
		t.Errorf("after redriving one record: %d dead letters, want 2 (one a stage): %+v", len(dls), dls)
	}

	for _, d := range dls {
		last = max(last, d.ID)
	}
	out, stderr, code = runCLI(t, ctx, env, "dlq", "redrive", "--all")
	if code != 0 {
		t.Fatalf("redrive --all: exit %d\n%s%s", code, out, stderr)
	}
	if !strings.Contains(out, "1 message(s) redriven, 2 dead letter(s) removed") {
		t.Errorf("redrive --all does not publish the message once:\n%s", out)
	}
	dls = byStage("the poison redriven by --all dead-lettered again by both", last)
	// A second copy, had --all published one a record, would be dead-lettered by both stages
	// right after the first.
	time.Sleep(time.Second)
	if dls = listDLQ(t, ctx, env); len(dls) != 2 {
		t.Errorf("after redrive --all: %d dead letters, want 2 (one a stage): %+v", len(dls), dls)
	}
}

func jsonNumber(n uint64) string { b, _ := json.Marshal(n); return string(b) }

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
