package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
)

// statusParts returns the vendor requests of a job run split into several (events.Part): the
// jobs table keeps one request per run, so they are read from the run's events in MP_JOBS (its
// latest, or, past the transformer, whose events do not repeat them, its "collected"). A job of
// one request, or one whose events the stream no longer keeps, has none; a failure to read them
// is noted on note.
func statusParts(ctx context.Context, cfg config.Config, j *events.Job, note io.Writer) []events.Part {
	if j.VendorRequestID != "" || j.State == events.Submitted {
		return nil // one request, or none yet
	}
	ctx, cancel := context.WithTimeout(ctx, attemptsTimeout)
	defer cancel()
	parts, err := readParts(ctx, cfg, j)
	if err != nil {
		fmt.Fprintf(note, "marketpipe: cannot read the vendor requests of job %s: %v\n", j.ID, err)
	}
	return parts
}

func readParts(ctx context.Context, cfg config.Config, j *events.Job) ([]events.Part, error) {
	nc, js, err := dialJS(cfg, "marketpipe-status")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	last, ok, err := natsx.LastJobEvent(ctx, js, j.ID)
	if err != nil || !ok || last.Generation != j.Generation {
		return nil, err
	}
	if len(last.Parts) > 0 {
		return last.Parts, nil
	}
	str, err := js.Stream(ctx, events.JobsStream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", events.JobsStream, err)
	}
	m, err := str.GetLastMsgForSubject(ctx, events.JobSubject(j.ID, events.Collected))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", j.ID, err)
	}
	collected, err := events.Decode(m.Data)
	if err != nil || collected.Generation != j.Generation {
		return nil, err
	}
	return collected.Parts, nil
}

// printParts shows each vendor request of a job of several: its identifier, securities,
// fields, dates, data points and how far it is.
func printParts(w io.Writer, j *events.Job) {
	if len(j.Parts) == 0 {
		return
	}
	var total int64
	for _, p := range j.Parts {
		total += p.Points
	}
	fmt.Fprintf(w, "\nvendor requests: %d parts, %d data points in all\n", len(j.Parts), total)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PART\tREQUEST\tSECURITIES\tFIELDS\tDATES\tPOINTS\tSTATE")
	for i, p := range j.Parts {
		dates := "snapshot"
		if p.Start != "" {
			dates = p.Start + " to " + p.End
		}
		fmt.Fprintf(tw, "  %d\t%s\t%d-%d (%d)\t%d-%d (%d)\t%s\t%d\t%s\n", i+1, p.VendorRequestID,
			p.SecFrom+1, p.SecTo, p.SecTo-p.SecFrom, p.FieldFrom+1, p.FieldTo, p.FieldTo-p.FieldFrom,
			dates, p.Points, partState(j, &p))
	}
	tw.Flush()
}

// partState is how far a part is: its own progress until its file is stored, then the job's.
func partState(j *events.Job, p *events.Part) string {
	switch j.State {
	case events.Transformed, events.Loaded, events.Cancelled:
		return j.Outcome()
	case events.Failed:
		return p.Progress() + " (job failed)"
	}
	return p.Progress()
}
