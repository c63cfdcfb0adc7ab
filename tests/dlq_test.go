package tests

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

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
