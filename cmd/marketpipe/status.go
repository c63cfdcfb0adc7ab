package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketpipe/marketpipe/pkg/attempts"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
)

func newStatusCmd(lookup config.Lookup) *cobra.Command {
	var asJSON bool
	var limit int
	cmd := &cobra.Command{
		Use:   "status [JOB_ID | JOB_NAME]",
		Short: "Show one job in detail, or the recent jobs",
		Long: `Show one job in detail (its stages, vendor request, file, row counts, outcome, warnings,
error and what it loaded; each vendor request of a job split into several), or the recent jobs. A job name (name: in its job file) shows the
latest job of that name. Times are UTC. Reads the jobs table in ClickHouse.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(lookup)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			st, err := openStore(ctx, cfg)
			if err != nil {
				return err
			}
			defer st.Close()
			out := cmd.OutOrStdout()
			if len(args) == 0 {
				jobs, err := st.RecentJobs(ctx, limit)
				if err != nil {
					return err
				}
				if asJSON {
					list := make([]jobJSON, len(jobs))
					for i := range jobs {
						list[i] = newJobJSON(jobs[i])
					}
					return writeJSON(out, list)
				}
				printJobs(out, jobs)
				return nil
			}
			j, ok, err := st.Job(ctx, args[0])
			if err == nil && !ok {
				j, ok, err = st.LatestJobNamed(ctx, args[0])
			}
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no job with id or name %q in %s.jobs (the loader records jobs as their events arrive)", args[0], cfg.ClickHouse.Database)
			}
			fields, err := st.FieldSummary(ctx, j.ID, j.Version)
			if err != nil {
				return err
			}
			tried := statusAttempts(ctx, cfg, &j, cmd.ErrOrStderr())
			j.Parts = statusParts(ctx, cfg, &j, cmd.ErrOrStderr())
			if asJSON {
				return writeJSON(out, struct {
					jobJSON
					Fields   any               `json:"fields"`
					Attempts []attempts.Record `json:"attempts,omitempty"`
				}{newJobJSON(j), fields, tried})
			}
			printJob(out, &j)
			printAttempts(out, tried, time.Now())
			printParts(out, &j)
			if len(fields) > 0 {
				if j.State == events.Loaded {
					fmt.Fprintln(out, "\nloaded observations by field:")
				} else {
					fmt.Fprintln(out, "\nobservations stored by this run, by field (not visible to readers: the run is not committed):")
				}
				tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "  FIELD\tOBSERVATIONS\tSECURITIES\tFIRST DATE\tLAST DATE\tNUMERIC\tFLAGGED")
				for _, f := range fields {
					fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\t%s\t%d\t%d\n", display(f.Field), f.Observations, f.Securities,
						f.FirstDate, f.LastDate, f.Numeric, f.Flagged)
				}
				tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many recent jobs")
	return cmd
}

// jobJSON is a job run as status --json prints it: the latest event's state and the run's
// outcome ("loaded with warnings").
type jobJSON struct {
	events.Job
	Outcome string `json:"outcome"`
	// Schedule and ScheduledFor are always present: the schedule's name and the firing's time
	// (RFC 3339), empty for a job submitted by hand.
	Schedule     string `json:"schedule"`
	ScheduledFor string `json:"scheduled_for"`
}

func newJobJSON(j events.Job) jobJSON {
	out := jobJSON{Job: j, Outcome: j.Outcome(), Schedule: j.Schedule}
	if !j.ScheduledFor.IsZero() {
		out.ScheduledFor = j.ScheduledFor.UTC().Format(time.RFC3339)
	}
	return out
}

func display(field string) string {
	if field == "" {
		return "(return codes)"
	}
	return field
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printJobs(w io.Writer, jobs []events.Job) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tPROGRAM\tSTATE\tSUBMITTED\tROWS LOADED\tREJECTED\tERROR")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", j.ID, j.Spec.Program, j.Outcome(),
			j.SubmittedAt.Format(timeLayout), j.RowsLoaded, j.RowsRejected, short80(j.Error))
	}
	tw.Flush()
}

// timeLayout is how status shows times: UTC, to the second, which is what the jobs table keeps.
const timeLayout = "2006-01-02 15:04:05 MST"

func short80(s string) string {
	if len(s) > 80 {
		return s[:79] + "…"
	}
	return s
}

func printJob(w io.Writer, j *events.Job) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("job", j.ID)
	row("name", j.Spec.Name)
	row("program", j.Spec.Program)
	row("state", j.Outcome())
	if j.Generation > 0 {
		row("run", fmt.Sprintf("generation %d (replayed)", j.Generation))
	}
	if j.Schedule != "" {
		row("schedule", fmt.Sprintf("%s, firing for %s", j.Schedule, j.ScheduledFor.UTC().Format(timeLayout)))
	}
	if j.State == events.Cancelled {
		row("cancelled", fmt.Sprintf("by %s at %s", j.CancelledBy, j.CancelledAt.UTC().Format(timeLayout)))
	}
	if j.Error != "" {
		row("error", j.Error)
	}
	if !j.Warnings.Empty() {
		row("warnings", j.Warnings.String())
	}
	if j.Spec.Strict {
		row("strict", "yes: any warning fails the run")
	}
	row("request", fmt.Sprintf("%d securities × %d fields %s", j.Spec.SecurityCount(), len(j.Spec.Fields), dateRange(j.Spec)))
	if j.VendorRequestID != "" {
		row("vendor request", j.VendorRequestID+" (account "+j.VendorAccount+")")
	}
	if j.ResponseKey != "" {
		row("vendor output", fmt.Sprintf("%s after %d polls", j.ResponseKey, j.Polls))
	}
	if j.FileKey != "" {
		row("raw file", fmt.Sprintf("%s (%s, sha256 %s)", j.FileKey, humanBytes(j.FileSize), j.FileSHA256))
	}
	if p := pointsOf(j); p != "" {
		row("points", p)
	}
	if j.Batches > 0 {
		row("rows", fmt.Sprintf("%d parsed in %d batches, %d loaded, %d rejected lines", j.RowsParsed, j.Batches, j.RowsLoaded, j.RowsRejected))
	}
	if j.TraceID != "" {
		row("trace", j.TraceID)
	}
	for _, st := range j.StageTimes() {
		if !st.At.IsZero() {
			row("  "+st.Event, fmt.Sprintf("%s (+%s)", st.At.Format(timeLayout), elapsed(j.SubmittedAt, st.At)))
		}
	}
	tw.Flush()
}

// pointsOf says how many data points (securities × fields × dates) a run asked the vendor for
// and how many observations it saved; "" when the requester did not count them (an actions
// request, or a run of an earlier version).
func pointsOf(j *events.Job) string {
	switch {
	case j.PointsRequested > 0 && j.Spec.Incremental:
		return fmt.Sprintf("requested %d, saved %d (incremental: only what earlier runs had not loaded)", j.PointsRequested, j.RowsLoaded)
	case j.PointsRequested > 0:
		return fmt.Sprintf("requested %d, saved %d", j.PointsRequested, j.RowsLoaded)
	case j.Spec.Incremental && j.State == events.Loaded:
		return "requested 0, saved 0 (incremental: earlier runs had loaded every security and date; nothing was asked of the vendor)"
	}
	return ""
}

func dateRange(s events.Spec) string {
	if s.Start == "" {
		return ""
	}
	return "from " + s.Start + " to " + s.End
}
