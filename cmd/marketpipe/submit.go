package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// Exit statuses of submit.
const (
	exitFailed  = 1 // the job failed
	exitInvalid = 2 // the job file is invalid: nothing was sent
)

func newSubmitCmd(lookup config.Lookup) *cobra.Command {
	var wait, once, again, dry bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "submit JOB.yaml",
		Short: "Validate a job file and submit it; print the job id",
		Long: `Validate a job file and submit it; print the job id.

An invalid file is refused before anything is sent, with the line and the reason of every
problem (exit status 2). With --wait, live progress per stage is shown on stderr, and the exit
status is 0 when the job is loaded and 1 when it failed.

A file with schedule: is run by its schedule (` + "`marketpipe schedule apply`" + `); --once runs it once
now. A file identical to one submitted in the last 24 hours whose job is in flight or loaded is
refused with that job's id and state (exit status 3), unless --again. --dry-run prints the vendor
requests it would make, with their data points, and sends nothing (no NATS needed).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := jobspec.Load(args[0])
			if err != nil {
				return &exitError{code: exitInvalid, err: fmt.Errorf("invalid job file:\n%w", err)}
			}
			cfg, err := config.Load(lookup)
			if err != nil {
				return err
			}
			if dry {
				return dryRun(f, time.Now(), int64(cfg.VendorMaxPoints), readCoverage(cmd.Context(), cfg), cmd.OutOrStdout())
			}
			if f.Schedule != "" && !once {
				return &exitError{code: exitInvalid, err: fmt.Errorf("%s has schedule: %q: `marketpipe schedule apply %s` runs it on its schedule; `submit --once` runs it once now", args[0], f.Schedule, args[0])}
			}
			if err := checkRequests(f, time.Now(), int64(cfg.VendorMaxPoints)); err != nil {
				return err
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			return submit(ctx, cfg, f, submitOptions{wait: wait, again: again}, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "show progress until the job is loaded or failed")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up waiting after this long (0: no limit)")
	cmd.Flags().BoolVar(&once, "once", false, "run a file that has schedule: once now")
	cmd.Flags().BoolVar(&again, "again", false, "submit even if an identical file was submitted in the last 24 hours")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "print the vendor requests and data points; send nothing")
	return cmd
}

// exitDuplicate is submit's status for a file refused as a duplicate.
const exitDuplicate = 3

type submitOptions struct {
	wait  bool // show progress until the job ends
	again bool // submit even a duplicate
}

func submit(ctx context.Context, cfg config.Config, f *jobspec.File, o submitOptions, stdout, stderr io.Writer) error {
	tr, js, done, err := tracedJS(ctx, cfg, "marketpipe-submit")
	if err != nil {
		return err
	}
	defer done()

	now := time.Now().UTC()
	spec, err := f.SpecAt(now)
	if err != nil {
		return err
	}
	submits, err := js.KeyValue(ctx, events.SubmitsBucket)
	if err != nil {
		return fmt.Errorf("key-value bucket %s: %w", events.SubmitsBucket, err)
	}
	fp := fingerprint(spec, f.Deadline)
	if !o.again {
		if err := refuseDuplicate(ctx, js, submits, fp, f.Path); err != nil {
			return err
		}
	}
	j := events.NewRun(jobspec.NewJobID(f.Name, now), spec, now, f.Deadline)
	if len(j.Spec.Securities) > events.InlineSecurities {
		specs, err := js.ObjectStore(ctx, events.SpecsBucket)
		if err != nil {
			return fmt.Errorf("object store %s: %w", events.SpecsBucket, err)
		}
		if err := natsx.ExternalizeSecurities(ctx, specs, j.ID, &j.Spec); err != nil {
			return err
		}
	}
	// The job's trace starts here; every stage's span descends from it through the headers.
	ctx, span := tr.Provider.Tracer("marketpipe").Start(ctx, "job "+f.Name, trace.WithNewRoot())
	defer span.End()
	if sc := span.SpanContext(); sc.IsValid() {
		j.TraceID = sc.TraceID().String()
	}
	if err := stage.NewPublisher(js, stage.PublishTracing(tr.Provider), stage.PublishSpanNames(events.SubjectKind)).PublishJob(ctx, &j); err != nil {
		return err
	}
	if _, err := submits.Put(ctx, fp, []byte(j.ID)); err != nil {
		fmt.Fprintf(stderr, "warning: job %s submitted, but not remembered for duplicate refusal: %v\n", j.ID, err)
	}
	fmt.Fprintln(stdout, j.ID)
	if !o.wait {
		return nil
	}
	return watch(ctx, js, &j, stderr)
}

// watch prints each stage's event of the job as it arrives, and the load progress, until the
// job is loaded or failed.
func watch(ctx context.Context, js jetstream.JetStream, j *events.Job, w io.Writer) error {
	cons, err := js.OrderedConsumer(ctx, events.JobsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.JobSubject(j.ID, ">")},
	})
	if err != nil {
		return fmt.Errorf("watch job %s: %w", j.ID, err)
	}
	start := time.Now()
	fmt.Fprintf(w, "job %s: %s %d securities × %d fields\n", j.ID, j.Spec.Program, j.Spec.SecurityCount(), len(j.Spec.Fields))
	seen := map[string]bool{}
	aw := attemptWatch{js: js, job: j.ID}
	var transformed *events.Job
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("gave up waiting for job %s: %w", j.ID, ctx.Err())
			}
			if !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) &&
				!errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("watch job %s: %w", j.ID, err)
			}
			aw.poll(ctx, w)
			if transformed != nil {
				if n, err := natsx.LoadedBatches(ctx, js, j.ID, j.Generation); err == nil {
					fmt.Fprintf(w, "  %-12s %d/%d batches\n", "loading", n, transformed.Batches)
				}
			}
			continue
		}
		ev, err := events.Decode(msg.Data())
		if err != nil || seen[ev.State] || ev.Generation != j.Generation {
			continue
		}
		seen[ev.State] = true
		fmt.Fprintf(w, "  %-12s %s (+%s)\n", ev.State, describe(&ev), elapsed(start, time.Now()))
		switch ev.State {
		case events.Transformed:
			transformed = &ev
		case events.Loaded:
			fmt.Fprintf(w, "%s: %d observations (%d rejected lines) in %s\n", ev.Outcome(), ev.RowsLoaded, ev.RowsRejected, elapsed(start, ev.LoadedAt))
			if !ev.Warnings.Empty() {
				fmt.Fprintf(w, "warnings: %s\n", ev.Warnings)
			}
			return nil
		case events.Failed:
			return &exitError{code: exitFailed, err: fmt.Errorf("job %s failed: %s", j.ID, ev.Error)}
		case events.Cancelled:
			return &exitError{code: exitFailed, err: fmt.Errorf("job %s was cancelled by %s", j.ID, ev.CancelledBy)}
		}
	}
}

func describe(j *events.Job) string {
	switch j.State {
	case events.Submitted:
		return "waiting for the requester"
	case events.Requested:
		if len(j.Parts) > 0 {
			return fmt.Sprintf("%d vendor requests, %s to %s", len(j.Parts), j.Parts[0].VendorRequestID, j.Parts[len(j.Parts)-1].VendorRequestID)
		}
		return fmt.Sprintf("vendor request %s", j.VendorRequestID)
	case events.Ready:
		return fmt.Sprintf("output %s ready after %d polls", j.ResponseKey, j.Polls)
	case events.Collected:
		return fmt.Sprintf("%s stored, sha256 %s", humanBytes(j.FileSize), short(j.FileSHA256))
	case events.Transformed:
		s := fmt.Sprintf("%d observations in %d batches, %d rejected lines", j.RowsParsed, j.Batches, j.RowsRejected)
		if !j.Warnings.Empty() {
			s += "; warnings: " + j.Warnings.String()
		}
		return s
	case events.Loaded:
		if j.Spec.Incremental && j.VendorRequestID == "" {
			return "nothing missing: earlier runs loaded every security and date; nothing asked of the vendor"
		}
		return fmt.Sprintf("%d observations in ClickHouse", j.RowsLoaded)
	case events.Failed:
		return j.Error
	case events.Cancelled:
		return "by " + j.CancelledBy
	}
	return ""
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

func elapsed(from, to time.Time) string {
	return to.Sub(from).Round(10 * time.Millisecond).String()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), strings.Split("KMGTPE", "")[exp][0])
}

// fingerprint identifies what a job file asks for (its dates resolved): two files that ask the
// same are the same request to the vendor, billed twice.
func fingerprint(spec events.Spec, deadline time.Duration) string {
	b, _ := json.Marshal(struct {
		Spec     events.Spec
		Deadline time.Duration
	}{spec, deadline})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// refuseDuplicate refuses a file identical to one submitted within natsx.SubmitsTTL whose job
// is in flight or loaded; a failed or cancelled one may be submitted again.
func refuseDuplicate(ctx context.Context, js jetstream.JetStream, submits jetstream.KeyValue, fp, path string) error {
	e, err := submits.Get(ctx, fp)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look for an identical job: %w", err)
	}
	prev := string(e.Value())
	j, ok, err := natsx.LastJobEvent(ctx, js, prev)
	if err != nil {
		return fmt.Errorf("look for an identical job: %w", err)
	}
	if !ok || j.State == events.Failed || j.State == events.Cancelled {
		return nil
	}
	return &exitError{code: exitDuplicate, err: fmt.Errorf(
		"%s asks for exactly what job %s asked at %s, and that job is %s: not submitted again (--again submits it anyway)",
		path, prev, e.Created().UTC().Format(timeLayout), j.Outcome())}
}
