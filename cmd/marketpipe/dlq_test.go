package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// runCmd runs the CLI with env as the whole environment and returns its output and error.
func runCmd(t *testing.T, ctx context.Context, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &out, &out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestDLQList(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ne := natstest.NewEnv(t)
	env := map[string]string{"NATS_URL": ne.Server.ClientURL()}

	if out, err := runCmd(t, ctx, env, "dlq", "list", "--json"); err != nil || out != "[]\n" {
		t.Errorf("dlq list --json of none: %q, %v; want []", out, err)
	}
	if out, err := runCmd(t, ctx, env, "dlq", "list"); err != nil || out != "no dead letters\n" {
		t.Errorf("dlq list of none: %q, %v", out, err)
	}

	// More dead letters than a block of the table, of two stages, with gaps (removed ones).
	const n = 250
	stream, err := ne.JS.Stream(ctx, events.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i := range n {
		st := []string{"requester", "jobs"}[i%2]
		hdr := nats.Header{}
		hdr.Set(stage.HdrDLQStage, st)
		hdr.Set(stage.HdrDLQReason, "reason "+strconv.Itoa(i))
		hdr.Set(stage.HdrDLQSubject, events.JobSubject("j"+strconv.Itoa(i), events.Submitted))
		hdr.Set(stage.HdrDLQDeliveries, "1")
		ack, err := ne.JS.PublishMsg(ctx, &nats.Msg{Subject: events.DLQSubject(st), Header: hdr, Data: []byte("{")})
		if err != nil {
			t.Fatal(err)
		}
		if i%7 == 3 {
			if err := stream.DeleteMsg(ctx, ack.Sequence); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if st == "jobs" {
			want = append(want, ack.Sequence)
		}
	}
	out, err := runCmd(t, ctx, env, "dlq", "list", "--json", "--stage", "jobs")
	if err != nil {
		t.Fatal(err)
	}
	var got []stage.DeadLetter
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("dlq list --json is not a JSON array: %v\n%s", err, out)
	}
	if len(got) != len(want) {
		t.Fatalf("%d dead letters of jobs, want %d", len(got), len(want))
	}
	for i, d := range got {
		if d.ID != want[i] || d.Stage != "jobs" || !strings.HasPrefix(d.Reason, "reason ") || d.Bytes != 1 {
			t.Fatalf("dead letter %d = %+v, want id %d of jobs", i, d, want[i])
		}
	}
	out, err = runCmd(t, ctx, env, "dlq", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if wantLines := 1 + n - (n+3)/7; len(lines) != wantLines || !strings.HasPrefix(lines[0], "ID ") {
		t.Errorf("dlq list: %d lines, want a header and %d dead letters:\n%s", len(lines), wantLines-1, out)
	}
	if _, err := runCmd(t, ctx, env, "dlq", "list", "--stage", "*"); err == nil || !strings.Contains(err.Error(), "not a stage name") {
		t.Errorf("--stage '*': %v", err)
	}
}

func TestDLQRedriveUsage(t *testing.T) {
	out, err := runCmd(t, context.Background(), nil, "dlq", "redrive", "-h")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "--id ID") || strings.Contains(out, "--id dlq list") {
		t.Errorf("redrive -h does not name --id's argument ID:\n%s", out)
	}
}
