package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// replayInput is the event each stage consumes: replaying from a stage republishes that event.
var replayInput = map[string]string{
	"requester":   events.Submitted,
	"poller":      events.Requested,
	"collector":   events.Ready,
	"transformer": events.Collected,
}

func newReplayCmd(lookup config.Lookup) *cobra.Command {
	var jobID, from string
	var since, until string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "replay (--job ID | --since T [--until T]) [--from STAGE] [--wait [--timeout D]]",
		Short: "Reprocess jobs from stored events and raw files; the new rows supersede the old",
		Long: `Reprocess jobs from their stored events: each job runs again from the given stage as a new
generation, with a higher version. Once it is committed, readers see its rows instead of the
old ones, which stay readable as of before (marketpipe query --as-of).

  --from transformer   (default) parse the stored raw file again: after a parser fix
  --from collector     download the vendor's output again
  --from poller        poll the vendor request again
  --from requester     create a new vendor request (billed by the vendor)

T is RFC 3339 (2026-11-25T00:00:00Z) or a date (2026-11-25); --since selects jobs by the time
they were first submitted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			input, ok := replayInput[from]
			if !ok {
				return &exitError{code: exitInvalid, err: fmt.Errorf("--from %q: want requester, poller, collector or transformer", from)}
			}
			switch {
			case jobID != "" && since != "":
				return &exitError{code: exitInvalid, err: errors.New("--job and --since exclude each other: give one")}
			case jobID == "" && since == "":
				return &exitError{code: exitInvalid, err: errors.New("give --job ID, or --since T to replay the jobs submitted since T")}
			case until != "" && since == "":
				return &exitError{code: exitInvalid, err: errors.New("--until needs --since")}
			case timeout != 0 && !wait:
				return &exitError{code: exitInvalid, err: errors.New("--timeout bounds --wait: give both")}
			}
			var lo, hi time.Time
			var err error
			if since != "" {
				if lo, err = parseTime(since); err != nil {
					return &exitError{code: exitInvalid, err: fmt.Errorf("--since: %w", err)}
				}
				hi = time.Now()
				if until != "" {
					if hi, err = parseTime(until); err != nil {
						return &exitError{code: exitInvalid, err: fmt.Errorf("--until: %w", err)}
					}
				}
			}
			cfg, err := config.Load(lookup)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			tr, js, done, err := tracedJS(ctx, cfg, "marketpipe-replay")
			if err != nil {
				return err
			}
			defer done()
			ids := []string{jobID}
			if since != "" {
				if ids, err = jobsSubmittedBetween(ctx, js, lo, hi); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			var replayed []events.Job
			for _, id := range ids {
				j, err := replayJob(ctx, js, tr.Provider, id, from, input)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%s: replaying from %s as generation %d\n", j.ID, from, j.Generation)
				replayed = append(replayed, j)
			}
			fmt.Fprintf(out, "%d job(s) replayed\n", len(replayed))
			if !wait {
				return nil
			}
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			for i := range replayed {
				if err := watch(ctx, js, &replayed[i], cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&jobID, "job", "", "the job to replay")
	cmd.Flags().StringVar(&since, "since", "", "replay the jobs submitted since T")
	cmd.Flags().StringVar(&until, "until", "", "with --since: up to T (default now)")
	cmd.Flags().StringVar(&from, "from", "transformer", "the stage to start from")
	cmd.Flags().BoolVar(&wait, "wait", false, "show progress until every replayed job is loaded or failed")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait: give up waiting after this long (0: no limit)")
	return cmd
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want RFC 3339 or YYYY-MM-DD", s)
	}
	return t, nil
}

// replayJob publishes the job's stored input event of the stage again as a new generation.
func replayJob(ctx context.Context, js jetstream.JetStream, tp trace.TracerProvider, jobID, from, input string) (events.Job, error) {
	stream, err := js.Stream(ctx, events.JobsStream)
	if err != nil {
		return events.Job{}, fmt.Errorf("jobs stream: %w", err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, events.JobSubject(jobID, input))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return events.Job{}, fmt.Errorf("job %s: no stored %q event: it never reached the %s (or the stream no longer keeps it)", jobID, input, from)
	}
	if err != nil {
		return events.Job{}, fmt.Errorf("job %s: %w", jobID, err)
	}
	base, err := events.Decode(m.Data)
	if err != nil {
		return events.Job{}, fmt.Errorf("job %s: %w", jobID, err)
	}
	// The newest generation may be past this event: count from the latest event of any kind.
	last, err := stream.GetLastMsgForSubject(ctx, events.JobSubject(jobID, "*"))
	if err != nil {
		return events.Job{}, fmt.Errorf("job %s: %w", jobID, err)
	}
	latest, err := events.Decode(last.Data)
	if err != nil {
		return events.Job{}, fmt.Errorf("job %s: %w", jobID, err)
	}
	j := base.Rerun(latest.Generation, from, input, time.Now())
	// A replay is a new run of the job: a new trace, rooted here.
	ctx, span := tp.Tracer("marketpipe").Start(ctx, fmt.Sprintf("replay %s from %s", jobID, from), trace.WithNewRoot())
	defer span.End()
	j.TraceID = ""
	if sc := span.SpanContext(); sc.IsValid() {
		j.TraceID = sc.TraceID().String()
	}
	if err := stage.NewPublisher(js, stage.PublishTracing(tp), stage.PublishSpanNames(events.SubjectKind)).PublishJob(ctx, &j); err != nil {
		return events.Job{}, err
	}
	return j, nil
}

// jobsSubmittedBetween lists the jobs whose first submission is in [lo, hi).
func jobsSubmittedBetween(ctx context.Context, js jetstream.JetStream, lo, hi time.Time) ([]string, error) {
	cons, err := js.OrderedConsumer(ctx, events.JobsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.JobFilter(events.Submitted)},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy, OptStartTime: &lo,
	})
	if err != nil {
		return nil, fmt.Errorf("read submitted jobs: %w", err)
	}
	seen := map[string]bool{}
	var ids []string
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return nil, fmt.Errorf("read submitted jobs: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			j, err := events.Decode(m.Data())
			if err != nil || j.Generation != 0 || seen[j.ID] {
				continue
			}
			if !j.SubmittedAt.Before(hi) {
				return ids, nil
			}
			seen[j.ID] = true
			ids = append(ids, j.ID)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("read submitted jobs: %w", err)
		}
		if n == 0 {
			return ids, nil
		}
	}
}
