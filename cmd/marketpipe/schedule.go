package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/schedule"
)

func newScheduleCmd(lookup config.Lookup) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Job files that run on their schedule, fired by the NATS server",
		Long: `Job files that run on their schedule:, fired by the NATS server (JetStream message schedules).

Each firing becomes one job, whose id is the schedule's name and the firing's time
(eod-prices-20261202t220000z), on business days of the job's calendar: (firings on other days
are skipped). A firing missed while NATS was down runs once when it is back.`,
	}
	// open connects and binds the schedules.
	open := func(cmd *cobra.Command) (*schedule.Store, func(), error) {
		cfg, err := config.Load(lookup)
		if err != nil {
			return nil, nil, err
		}
		nc, js, err := connectJS(cmd.Context(), cfg, "marketpipe-schedule")
		if err != nil {
			return nil, nil, err
		}
		s, err := schedule.NewStore(cmd.Context(), js)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		return s, nc.Close, nil
	}
	apply := &cobra.Command{
		Use:   "apply FILE...",
		Short: "Create or update the schedules of job files (idempotent)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(lookup)
			if err != nil {
				return err
			}
			var files []*jobspec.File
			for _, path := range args {
				f, err := jobspec.Load(path)
				if err != nil {
					return &exitError{code: exitInvalid, err: fmt.Errorf("invalid job file:\n%w", err)}
				}
				if f.Schedule == "" {
					return &exitError{code: exitInvalid, err: fmt.Errorf("%s has no schedule: (use `marketpipe submit` to run it on demand)", path)}
				}
				// A job that cannot be cut into vendor requests is refused now, not at each firing.
				if err := checkRequests(f, time.Now(), int64(cfg.VendorMaxPoints)); err != nil {
					return err
				}
				files = append(files, f)
			}
			s, done, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			now := time.Now()
			for _, f := range files {
				res, err := s.Apply(cmd.Context(), f, now)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", f.Name, res)
			}
			return nil
		},
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "The schedules: cron, zone, calendar, paused, next run, last run and skip",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, done, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			entries, err := s.List(cmd.Context(), time.Now())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), entries)
			}
			printSchedules(cmd.OutOrStdout(), entries)
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	byName := func(use, short string, do func(cmd *cobra.Command, s *schedule.Store, name string) error) *cobra.Command {
		return &cobra.Command{
			Use: use + " NAME", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				s, done, err := open(cmd)
				if err != nil {
					return err
				}
				defer done()
				return do(cmd, s, args[0])
			},
		}
	}
	said := func(cmd *cobra.Command, format string, args ...any) {
		fmt.Fprintf(cmd.OutOrStdout(), format+"\n", args...)
	}
	cmd.AddCommand(apply, list,
		byName("pause", "Stop a schedule's firings (it stays, paused)", func(cmd *cobra.Command, s *schedule.Store, name string) error {
			if err := s.Pause(cmd.Context(), name); err != nil {
				return err
			}
			said(cmd, "%s: paused", name)
			return nil
		}),
		byName("resume", "Start a paused schedule's firings again", func(cmd *cobra.Command, s *schedule.Store, name string) error {
			if err := s.Resume(cmd.Context(), name); err != nil {
				return err
			}
			said(cmd, "%s: resumed", name)
			return nil
		}),
		byName("run", "Fire a schedule once now, as if scheduled now; print the job id", func(cmd *cobra.Command, s *schedule.Store, name string) error {
			id, err := s.Run(cmd.Context(), name, time.Now())
			if err != nil {
				return err
			}
			said(cmd, "%s", id)
			return nil
		}),
		byName("delete", "Remove a schedule and its future firings (its jobs stay)", func(cmd *cobra.Command, s *schedule.Store, name string) error {
			if err := s.Delete(cmd.Context(), name); err != nil {
				return err
			}
			said(cmd, "%s: deleted", name)
			return nil
		}),
	)
	return cmd
}

func printSchedules(w io.Writer, entries []schedule.Entry) {
	if len(entries) == 0 {
		fmt.Fprintln(w, "no schedules (`marketpipe schedule apply FILE` creates one)")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCRON\tTZ\tCALENDAR\tPAUSED\tNEXT RUN\tLAST JOB\tSTATE\tNOTES")
	for _, e := range entries {
		next := "-"
		if !e.Next.IsZero() {
			next = e.Next.UTC().Format(timeLayout)
			if e.NextSkipped != "" {
				next += " (skipped: " + e.NextSkipped + ")"
			}
		}
		last, state := "-", "-"
		if e.LastJob != "" {
			last, state = e.LastJob, e.LastState
		}
		var notes []string
		if e.Problem != "" {
			notes = append(notes, e.Problem)
		}
		if !e.LastWarnings.Empty() {
			notes = append(notes, "warnings: "+e.LastWarnings.String())
		}
		if e.LastSkip != nil {
			notes = append(notes, fmt.Sprintf("last skip %s: %s", e.LastSkip.For.UTC().Format(timeLayout), e.LastSkip.Reason))
		}
		if e.Missed > 0 {
			notes = append(notes, fmt.Sprintf("%d missed while NATS was down", e.Missed))
		}
		paused := "no"
		if e.Paused {
			paused = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Cron, e.TZ, e.Calendar, paused, next, last, state, strings.Join(notes, "; "))
	}
	tw.Flush()
}
