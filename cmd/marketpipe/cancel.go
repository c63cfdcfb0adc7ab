package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

func newCancelCmd(lookup config.Lookup) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel JOB_ID",
		Short: "End a job wherever it is; its rows never become visible",
		Long: `End a job wherever it is: the stages drop its events from then on (the poller stops
polling), and its rows never become visible. A job already loaded, failed or cancelled is an
error that says so. The vendor's request is not withdrawn: HAPI cannot withdraw a one-shot
request once submitted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(lookup)
			if err != nil {
				return err
			}
			nc, js, err := connectJS(cmd.Context(), cfg, "marketpipe-cancel")
			if err != nil {
				return err
			}
			defer nc.Close()
			return cancelJob(cmd.Context(), js, args[0], who(), time.Now(), cmd.OutOrStdout())
		},
	}
}

// who names the user cancelling: user@host.
func who() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func cancelJob(ctx context.Context, js jetstream.JetStream, id, by string, now time.Time, out io.Writer) error {
	if err := events.ValidJobID(id); err != nil {
		return err
	}
	j, ok, err := natsx.LastJobEvent(ctx, js, id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no job %s in %s", id, events.JobsStream)
	}
	if j.Finished() {
		return fmt.Errorf("job %s is already %s (%s): nothing to cancel", id, j.Outcome(), finishedAt(&j).UTC().Format(timeLayout))
	}
	ends, err := js.KeyValue(ctx, events.EndsBucket)
	if err != nil {
		return fmt.Errorf("key-value bucket %s: %w", events.EndsBucket, err)
	}
	end, err := natsx.ClaimEnd(ctx, ends, j.ID, j.Generation, natsx.End{State: events.Cancelled, By: by, At: now.UTC()})
	if err != nil {
		return err
	}
	if end.State != events.Cancelled {
		return fmt.Errorf("job %s was committed by the loader at %s, before the cancel: it is loaded", id, end.At.UTC().Format(timeLayout))
	}
	c := j.Cancel(end.By, end.At)
	if err := stage.NewPublisher(js).PublishJob(ctx, &c); err != nil {
		return err
	}
	fmt.Fprintf(out, "cancelled job %s (it was %s)\n", id, j.State)
	return nil
}

// finishedAt is when a finished run ended.
func finishedAt(j *events.Job) time.Time {
	switch j.State {
	case events.Loaded:
		return j.LoadedAt
	case events.Cancelled:
		return j.CancelledAt
	}
	return j.FailedAt
}
