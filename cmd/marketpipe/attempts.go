package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/attempts"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
)

// attemptsTimeout bounds the look-up of a job's failing attempts: status answers from
// ClickHouse even when NATS is away.
const attemptsTimeout = 5 * time.Second

// statusAttempts returns what the stages recorded of a job's failing deliveries (the stage
// runtime's records in attempts.Bucket). When NATS cannot tell, it says so on note and
// returns none: the rest of the status still stands.
func statusAttempts(ctx context.Context, cfg config.Config, j *events.Job, note io.Writer) []attempts.Record {
	if j.State == events.Loaded {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, attemptsTimeout)
	defer cancel()
	as, err := readAttempts(ctx, cfg, j.ID)
	if err != nil {
		fmt.Fprintf(note, "marketpipe: cannot tell whether a stage is retrying job %s: %v\n", j.ID, err)
	}
	return as
}

func readAttempts(ctx context.Context, cfg config.Config, jobID string) ([]attempts.Record, error) {
	nc, js, err := dialJS(cfg, "marketpipe-status")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	return attempts.OfJob(ctx, js, jobID)
}

// printAttempts shows, per stage, how a job's deliveries are failing and when the next try is.
func printAttempts(w io.Writer, as []attempts.Record, now time.Time) {
	for _, a := range as {
		fmt.Fprintf(w, "%-12s %s\n", "failing", describeAttempt(&a, now))
	}
}

// describeAttempt is one line about a stage's failing attempts at a job.
func describeAttempt(a *attempts.Record, now time.Time) string {
	s := fmt.Sprintf("%s: %s after %d failed attempt(s), the last at %s: %s", a.Stage, "retrying", a.Attempts,
		a.At.UTC().Format(time.RFC3339), a.Error)
	if a.DeadLettered {
		return fmt.Sprintf("%s: dead-lettered after %d failed attempt(s) at %s: %s (see marketpipe dlq list)",
			a.Stage, a.Attempts, a.At.UTC().Format(time.RFC3339), a.Error)
	}
	if !a.NextAt.IsZero() {
		s += fmt.Sprintf("; next attempt at %s (in %s)", a.NextAt.UTC().Format(time.RFC3339),
			max(a.NextAt.Sub(now), 0).Round(time.Second))
	}
	return s
}

// attemptWatch shows, while submit --wait waits, each new failing attempt at the job.
type attemptWatch struct {
	js    jetstream.JetStream
	job   string
	next  time.Time      // next look-up
	shown map[string]int // attempts last shown, by stage
}

// poll looks the job's attempts up every few seconds and prints those not shown yet.
func (aw *attemptWatch) poll(ctx context.Context, w io.Writer) {
	now := time.Now()
	if now.Before(aw.next) {
		return
	}
	aw.next = now.Add(2 * time.Second)
	ctx, cancel := context.WithTimeout(ctx, attemptsTimeout)
	defer cancel()
	as, err := attempts.OfJob(ctx, aw.js, aw.job)
	if err != nil {
		return // the next look-up may succeed; the wait goes on either way
	}
	if aw.shown == nil {
		aw.shown = map[string]int{}
	}
	for _, a := range as {
		if aw.shown[a.Stage] == a.Attempts {
			continue
		}
		aw.shown[a.Stage] = a.Attempts
		fmt.Fprintf(w, "  %-12s %s\n", "failing", describeAttempt(&a, now))
	}
}
