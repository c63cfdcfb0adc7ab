package tests

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

func TestSubmitRefusesInvalidJobFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := natstest.Start(t)
	env := map[string]string{"NATS_URL": ns.ClientURL()}
	dir := t.TempDir()
	cases := []struct {
		name, body string
		want       []string // each must appear on stderr
	}{
		{"bad field and date", "name: eod\nprogram: gethistory\nsecurities: [IBM US Equity]\nfields: [PX LAST]\nstart: 2026-01-02\nend: 2026-02-30\n",
			[]string{"bad-field-and-date.yaml:4", "PX LAST", "bad-field-and-date.yaml:6", "2026-02-30"}},
		{"unknown key", "name: eod\nprogram: getdata\nsecurities: [IBM US Equity]\nfields: [PX_LAST]\nfeilds: [X]\n",
			[]string{"unknown-key.yaml:5", "feilds"}},
		{"unknown program", "name: eod\nprogram: getticks\nsecurities: [IBM US Equity]\nfields: [PX_LAST]\n",
			[]string{"unknown-program.yaml:2", "getticks"}},
		{"not yaml", "name: [unclosed\n", []string{"not-yaml.yaml:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeJob(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.body)
			stdout, stderr, code := runCLI(t, ctx, env, "submit", path, "--wait")
			if code != 2 {
				t.Errorf("exit %d, want 2 (invalid input)", code)
			}
			if stdout != "" {
				t.Errorf("printed a job id for an invalid file: %q", stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, stderr, code := runCLI(t, ctx, env, "submit", filepath.Join(dir, "nope.yaml"))
		if code == 0 || !strings.Contains(stderr, "nope.yaml") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})

	// Nothing was published: the job stream was never even created.
	_, js := natstest.Connect(t, ns)
	s, err := js.Stream(ctx, events.JobsStream)
	if err == nil {
		info, _ := s.Info(ctx)
		if info.State.Msgs != 0 {
			t.Errorf("%d job events published for invalid files", info.State.Msgs)
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatal(err)
	}
}

func TestReplaySinceSelectsJobsBySubmission(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := natstest.Start(t)
	env := map[string]string{"NATS_URL": ns.ClientURL()}
	// Declare the streams the way every command does, then store three collected jobs.
	if _, _, code := runCLI(t, ctx, env, "dlq", "list"); code != 0 {
		t.Fatal("dlq list failed")
	}
	_, js := natstest.Connect(t, ns)
	pub := stage.NewPublisher(js)
	var marks []time.Time
	for i := range 3 {
		j := events.Job{ID: fmt.Sprintf("since-%d", i), FileKey: "k", Deadline: time.Now().Add(time.Hour)}
		j = j.Advance(events.Submitted, time.Now())
		if err := pub.PublishJob(ctx, &j); err != nil {
			t.Fatal(err)
		}
		c := j.Advance(events.Collected, time.Now())
		if err := pub.PublishJob(ctx, &c); err != nil {
			t.Fatal(err)
		}
		marks = append(marks, j.SubmittedAt)
		time.Sleep(20 * time.Millisecond)
	}
	since := marks[1].Add(-time.Millisecond).Format(time.RFC3339Nano)
	until := marks[2].Add(-time.Millisecond).Format(time.RFC3339Nano)
	out, stderr, code := runCLI(t, ctx, env, "replay", "--since", since, "--until", until)
	if code != 0 {
		t.Fatalf("replay --since: exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "since-1: replaying from transformer as generation 1") || strings.Contains(out, "since-0") ||
		strings.Contains(out, "since-2") || !strings.Contains(out, "1 job(s) replayed") {
		t.Errorf("replay --since %s --until %s:\n%s", since, until, out)
	}
	if _, stderr, code := runCLI(t, ctx, env, "replay", "--job", "since-0", "--from", "loader"); code != 2 || !strings.Contains(stderr, "--from") {
		t.Errorf("replay --from loader: exit %d, %s", code, stderr)
	}
}
