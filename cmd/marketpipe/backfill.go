package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/marketpipe/marketpipe/pkg/backfill"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// exitInterrupted is backfill's status when Ctrl-C (or SIGTERM) stopped it: its jobs in
// flight keep running, and running the command again resumes.
const exitInterrupted = 130

// backfillFlags are backfill's flags, as given.
type backfillFlags struct {
	from, to, name string
	parallel       int
	dry            bool
}

// backfillArgs are backfill's flags checked.
type backfillArgs struct {
	from, to time.Time
	name     string // "" for the default
	parallel int
	dry      bool
}

// check validates the flags, naming the flag of each problem; today bounds --to (a backfill
// loads history: the vendor has no later dates).
func (fl backfillFlags) check(today time.Time) (backfillArgs, error) {
	a := backfillArgs{name: fl.name, parallel: fl.parallel, dry: fl.dry}
	date := func(flag, s, which string) (time.Time, error) {
		if s == "" {
			return time.Time{}, fmt.Errorf("--%s is required: the %s day (YYYY-MM-DD) of the history to load", flag, which)
		}
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("--%s %q is not a date: want YYYY-MM-DD", flag, s)
		}
		return d, nil
	}
	var err error
	if a.from, err = date("from", fl.from, "first"); err != nil {
		return a, err
	}
	if a.to, err = date("to", fl.to, "last"); err != nil {
		return a, err
	}
	if a.from.After(a.to) {
		return a, fmt.Errorf("--from %s is after --to %s", fl.from, fl.to)
	}
	if today = today.UTC().Truncate(24 * time.Hour); a.to.After(today) {
		return a, fmt.Errorf("--to %s is after today (%s): a backfill loads history, which ends today", fl.to, today.Format(time.DateOnly))
	}
	if a.parallel < 1 {
		return a, fmt.Errorf("--parallel %d: want at least 1 job at a time", a.parallel)
	}
	if a.name != "" {
		if err := backfill.ValidName(a.name); err != nil {
			return a, fmt.Errorf("--name: %w", err)
		}
	}
	return a, nil
}

func newBackfillCmd(lookup config.Lookup) *cobra.Command {
	var fl backfillFlags
	cmd := &cobra.Command{
		Use:   "backfill JOB.yaml --from YYYY-MM-DD --to YYYY-MM-DD [--parallel N] [--name NAME] [--dry-run]",
		Short: "Load a long history in windows of vendor-sized requests, N at a time; resumable",
		Long: `Load the history of a gethistory job file from --from to --to (the file's own start: and end:
are replaced): the range is split into windows of consecutive dates, each at most
VENDOR_MAX_POINTS_PER_REQUEST data points (securities × fields × dates), and each window is one
job, at most --parallel at a time, with a progress bar on stderr (plain lines when stderr is not
a terminal).

The plan and its jobs are kept in NATS (mp_backfills) under the backfill's name (the job's name
and the range, or --name), and each window's job id is derived from it: running the same command
again after a crash or a Ctrl-C resumes. Windows loaded are never requested again, windows in
flight are waited on, windows failed or cancelled run again as a new job. A job file changed
under the same name is refused with what changed.

Exit status 0 when every window is loaded, 1 when a window failed (they are named), 2 for bad
input (nothing sent), 130 when interrupted (its jobs keep running). --dry-run prints each window's
vendor request and data points, and the total, and sends nothing (no NATS needed).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := fl.check(time.Now())
			if err != nil {
				return &exitError{code: exitInvalid, err: err}
			}
			f, err := jobspec.Load(args[0])
			if err != nil {
				return &exitError{code: exitInvalid, err: fmt.Errorf("invalid job file:\n%w", err)}
			}
			cfg, err := config.Load(lookup)
			if err != nil {
				return err
			}
			rec, spec, err := planBackfill(f, a, int64(cfg.VendorMaxPoints), time.Now())
			if err != nil {
				return &exitError{code: exitInvalid, err: err}
			}
			if a.dry {
				printPlan(cmd.OutOrStdout(), rec, spec)
				return nil
			}
			return runBackfill(cmd.Context(), cfg, rec, spec, f.Deadline, a.parallel, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&fl.from, "from", "", "first day of the history (YYYY-MM-DD)")
	cmd.Flags().StringVar(&fl.to, "to", "", "last day of the history (YYYY-MM-DD)")
	cmd.Flags().IntVar(&fl.parallel, "parallel", 2, "jobs at a time")
	cmd.Flags().StringVar(&fl.name, "name", "", "the backfill's name (default: the job's name and the range)")
	cmd.Flags().BoolVar(&fl.dry, "dry-run", false, "print each window's vendor request and data points; send nothing")
	cmd.AddCommand(newBackfillStatusCmd(lookup))
	return cmd
}

// planBackfill plans the backfill of f that a asks for, each window at most maxPoints data
// points, and returns it with the job file's request (dates to be replaced by each window's).
// Every window's request is checked as the requester checks it.
func planBackfill(f *jobspec.File, a backfillArgs, maxPoints int64, now time.Time) (*backfill.Record, events.Spec, error) {
	if f.Program != events.GetHistory {
		return nil, events.Spec{}, fmt.Errorf("%s is a %s job: only gethistory job files can be backfilled (a history split into date ranges)", f.Path, f.Program)
	}
	spec, err := f.SpecAt(now)
	if err != nil {
		return nil, events.Spec{}, err
	}
	name := a.name
	if name == "" {
		name = jobspec.BackfillName(f.Name, a.from.Format(time.DateOnly), a.to.Format(time.DateOnly))
	}
	rec, err := backfill.NewRecord(name, f, spec, a.from, a.to, maxPoints, now)
	if err != nil {
		return nil, events.Spec{}, fmt.Errorf("backfill of %s: %w", f.Path, err)
	}
	spec.Start, spec.End = rec.Parts[0].Start, rec.Parts[0].End
	req := vendor.Request{Identifier: "backfill", Program: spec.Program, Securities: spec.Securities, Fields: spec.Fields,
		Start: spec.Start, End: spec.End, Overrides: spec.Overrides, SecurityOverrides: spec.SecurityOverrides,
		PricingSource: spec.PricingSource, PricingSourceExclusive: spec.PricingSourceExclusive,
		Periodicity: spec.Periodicity, Currency: spec.Currency}
	if err := req.Validate(); err != nil {
		return nil, events.Spec{}, fmt.Errorf("%s: the vendor would refuse it: %w", f.Path, err)
	}
	return rec, spec, nil
}

// printPlan prints every window's vendor request and the total.
func printPlan(w io.Writer, rec *backfill.Record, spec events.Spec) {
	fmt.Fprintf(w, "backfill %s: %s %s to %s in %d windows of at most %d data points (VENDOR_MAX_POINTS_PER_REQUEST)\n",
		rec.Name, spec.Program, rec.From, rec.To, len(rec.Parts), rec.MaxPoints)
	if spec.Dataset() != spec.Program {
		fmt.Fprintf(w, "  stored as %s\n", spec.Dataset())
	}
	var total int64
	for i, p := range rec.Parts {
		fmt.Fprintf(w, "window %d of %d: %s to %s, %d securities × %d fields × %d dates = %d data points (job %s)\n",
			i+1, len(rec.Parts), p.Start, p.End, spec.SecurityCount(), len(spec.Fields), p.Dates, p.Points, rec.JobID(i))
		total += p.Points
	}
	over := ""
	if len(rec.Parts) > 0 && rec.Parts[0].Dates == 1 && rec.Parts[0].Points > rec.MaxPoints {
		over = "; one date is over the budget, so each window is one date"
	}
	fmt.Fprintf(w, "in all: %d vendor requests, %d data points%s; nothing sent\n", len(rec.Parts), total, over)
}

// backfillsBucket binds mp_backfills, which `marketpipe migrate` creates.
func backfillsBucket(ctx context.Context, js jetstream.JetStream) (backfill.Store, error) {
	kv, err := js.KeyValue(ctx, events.BackfillsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return backfill.Store{}, natsx.Missing("key-value bucket "+events.BackfillsBucket, err)
	}
	if err != nil {
		return backfill.Store{}, fmt.Errorf("key-value bucket %s: %w", events.BackfillsBucket, err)
	}
	return backfill.Store{KV: kv}, nil
}

func runBackfill(ctx context.Context, cfg config.Config, want *backfill.Record, spec events.Spec, deadline time.Duration,
	parallel int, stdout, stderr io.Writer) error {
	tr, js, done, err := tracedJS(ctx, cfg, "marketpipe-backfill")
	if err != nil {
		return err
	}
	defer done()
	store, err := backfillsBucket(ctx, js)
	if err != nil {
		return err
	}
	rec, _, err := store.Open(ctx, want)
	if errors.Is(err, backfill.ErrChanged) {
		return &exitError{code: exitInvalid, err: err}
	}
	if err != nil {
		return err
	}
	if rec.MaxPoints != want.MaxPoints {
		fmt.Fprintf(stderr, "note: backfill %s keeps its plan of windows of at most %d data points (VENDOR_MAX_POINTS_PER_REQUEST is %d now)\n",
			rec.Name, rec.MaxPoints, want.MaxPoints)
	}
	var specs jetstream.ObjectStore
	if len(spec.Securities) > events.InlineSecurities {
		if specs, err = js.ObjectStore(ctx, events.SpecsBucket); err != nil {
			return fmt.Errorf("object store %s: %w", events.SpecsBucket, err)
		}
	}
	show := newBackfillDisplay(stderr, rec, isTerminal(stderr))
	r := &backfill.Runner{
		JS: js, Store: store, Specs: specs, Spec: spec, Deadline: deadline, Parallel: parallel,
		Publisher: stage.NewPublisher(js, stage.PublishTracing(tr.Provider), stage.PublishSpanNames(events.SubjectKind)),
		Tracer:    tr.Provider.Tracer("marketpipe"),
		Report:    show.report,
	}
	res, err := r.Run(ctx, rec)
	show.finish()
	loaded, rows := res.Record.LoadedCount()
	total := len(res.Record.Parts)
	resume := fmt.Sprintf("marketpipe backfill %s --from %s --to %s", want.File, res.Record.From, res.Record.To)
	if res.Record.Name != jobspec.BackfillName(res.Record.Job, res.Record.From, res.Record.To) {
		resume += " --name " + res.Record.Name
	}
	if err != nil && ctx.Err() != nil {
		inFlight := make([]string, len(res.InFlight))
		for k, i := range res.InFlight {
			inFlight[k] = fmt.Sprintf("%d (%s)", i+1, res.Record.JobID(i))
		}
		msg := fmt.Sprintf("backfill %s stopped with %d of %d windows loaded", res.Record.Name, loaded, total)
		switch len(inFlight) {
		case 0:
		case 1:
			msg += fmt.Sprintf("; window %s keeps running", inFlight[0])
		default:
			msg += fmt.Sprintf("; windows %s keep running", strings.Join(inFlight, ", "))
		}
		if len(res.Failed) > 0 {
			failed := make([]string, len(res.Failed))
			for k, i := range res.Failed {
				failed[k] = fmt.Sprint(i + 1)
			}
			w := "window"
			if len(failed) > 1 {
				w = "windows"
			}
			msg += fmt.Sprintf("; %s %s did not load and will run again", w, strings.Join(failed, ", "))
		}
		return &exitError{code: exitInterrupted, err: fmt.Errorf("%s: `%s` resumes it", msg, resume)}
	}
	if err != nil {
		return fmt.Errorf("backfill %s (%d of %d windows loaded; `%s` resumes it): %w", res.Record.Name, loaded, total, resume, err)
	}
	if len(res.Failed) > 0 {
		var lines []string
		for _, i := range res.Failed {
			p := res.Record.Parts[i]
			lines = append(lines, fmt.Sprintf("  window %d (%s to %s), job %s: %s: %s", i+1, p.Start, p.End, res.Record.JobID(i), p.State, p.Error))
		}
		return &exitError{code: exitFailed, err: fmt.Errorf("backfill %s: %d of %d windows loaded, %d failed:\n%s\n`%s` runs the failed windows again",
			res.Record.Name, loaded, total, len(res.Failed), strings.Join(lines, "\n"), resume)}
	}
	fmt.Fprintf(stdout, "backfill %s: %d of %d windows loaded, %d observations\n", res.Record.Name, loaded, total, rows)
	return nil
}

// backfillDisplay shows a backfill's progress on stderr: a progress bar of the windows loaded
// on a terminal, else one line per change of a window.
type backfillDisplay struct {
	w        io.Writer
	bar      *progressbar.ProgressBar // nil: plain lines
	total    int
	loaded   map[int]bool
	inFlight map[int]string // window -> state
	// stop ends the goroutine that redraws the bar every second; stopped says it ended.
	stop, stopped chan struct{}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newBackfillDisplay(w io.Writer, rec *backfill.Record, bar bool) *backfillDisplay {
	d := &backfillDisplay{w: w, total: len(rec.Parts), loaded: map[int]bool{}, inFlight: map[int]string{}}
	fmt.Fprintf(w, "backfill %s: %s to %s, %d windows\n", rec.Name, rec.From, rec.To, len(rec.Parts))
	if bar {
		d.bar = progressbar.NewOptions(len(rec.Parts), progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("windows loaded"), progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true), progressbar.OptionSetPredictTime(true), progressbar.OptionFullWidth())
		_ = d.bar.RenderBlank()
		// Windows take minutes to hours: the elapsed time moves on between their changes.
		d.stop = make(chan struct{})
		d.stopped = make(chan struct{})
		go func() {
			defer close(d.stopped)
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-d.stop:
					return
				case <-tick.C:
					_ = d.bar.Add(0)
				}
			}
		}()
	}
	return d
}

func (d *backfillDisplay) report(p backfill.Progress) {
	if p.Part.Loaded() {
		d.loaded[p.Window] = true
		delete(d.inFlight, p.Window)
	} else if p.Part.State != "" {
		d.inFlight[p.Window] = p.Part.State
	}
	if p.Part.State == events.Failed || p.Part.State == events.Cancelled {
		delete(d.inFlight, p.Window)
	}
	what := p.Part.State
	switch {
	case p.Skipped:
		what = fmt.Sprintf("loaded before, %d observations", p.Part.Rows)
	case p.Part.Loaded():
		what = fmt.Sprintf("loaded, %d observations", p.Part.Rows)
	case p.Retry:
		what = fmt.Sprintf("its earlier job had not loaded: submitted attempt %d", p.Part.Attempt)
	case p.Resumed:
		what = fmt.Sprintf("in flight (%s), waiting", p.Part.State)
	case p.Part.State == events.Failed || p.Part.State == events.Cancelled:
		what = fmt.Sprintf("%s: %s", strings.ToUpper(p.Part.State), p.Part.Error)
	}
	line := fmt.Sprintf("[%d/%d loaded] window %d %s..%s job %s: %s", len(d.loaded), d.total, p.Window+1,
		p.Part.Start, p.Part.End, p.JobID, what)
	if d.bar == nil {
		fmt.Fprintln(d.w, line)
		return
	}
	if p.Part.State == events.Failed || p.Part.State == events.Cancelled || p.Retry {
		_ = d.bar.Clear()
		fmt.Fprintln(d.w, line) // above the bar, which the Set below draws again
	}
	d.bar.Describe(fmt.Sprintf("windows loaded (%d in flight)", len(d.inFlight)))
	_ = d.bar.Set(len(d.loaded))
}

func (d *backfillDisplay) finish() {
	if d.bar != nil {
		close(d.stop)
		<-d.stopped
		_ = d.bar.Set(len(d.loaded))
		_ = d.bar.Exit()
		fmt.Fprintln(d.w)
	}
}

func newBackfillStatusCmd(lookup config.Lookup) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "The backfills (windows loaded of all), or one backfill's windows",
		Long: `Without NAME, the backfills: name, job, range, windows loaded of all, observations loaded.
With NAME, each window of that backfill: its dates, data points, job id, state and the
observations it loaded. The states of jobs not known loaded are read from their latest events.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(lookup)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			nc, js, err := connectJS(ctx, cfg, "marketpipe-backfill-status")
			if err != nil {
				return err
			}
			defer nc.Close()
			store, err := backfillsBucket(ctx, js)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(args) == 0 {
				recs, err := store.List(ctx)
				if err != nil {
					return err
				}
				for _, r := range recs {
					if err := refreshParts(ctx, js, r); err != nil {
						return err
					}
				}
				if asJSON {
					return writeJSON(out, recs)
				}
				printBackfills(out, recs)
				return nil
			}
			rec, _, err := store.Get(ctx, args[0])
			if err != nil {
				return err
			}
			if rec == nil {
				return fmt.Errorf("no backfill %q in %s (`marketpipe backfill status` lists them)", args[0], events.BackfillsBucket)
			}
			if err := refreshParts(ctx, js, rec); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(out, rec)
			}
			printBackfill(out, rec)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// refreshParts sets the state of each part not recorded loaded from its job's latest event
// (the backfill command may have stopped before recording it).
func refreshParts(ctx context.Context, js jetstream.JetStream, rec *backfill.Record) error {
	for i := range rec.Parts {
		p := &rec.Parts[i]
		if p.Loaded() {
			continue
		}
		j, ok, err := natsx.LastJobEvent(ctx, js, rec.JobID(i))
		if err != nil {
			return err
		}
		if ok {
			p.State, p.Rows, p.Error = j.State, j.RowsLoaded, j.Error
		}
	}
	return nil
}

// backfillState sums up a backfill's windows: complete, or how many are in flight, failed,
// not started.
func backfillState(rec *backfill.Record) string {
	var loaded, failed, running, pending int
	for _, p := range rec.Parts {
		switch p.State {
		case events.Loaded:
			loaded++
		case events.Failed, events.Cancelled:
			failed++
		case "":
			pending++
		default:
			running++
		}
	}
	if loaded == len(rec.Parts) {
		return "complete"
	}
	var s []string
	for _, c := range []struct {
		n    int
		what string
	}{{running, "in flight"}, {failed, "failed"}, {pending, "not started"}} {
		if c.n > 0 {
			s = append(s, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	return strings.Join(s, ", ")
}

func printBackfills(w io.Writer, recs []*backfill.Record) {
	if len(recs) == 0 {
		fmt.Fprintln(w, "no backfills (`marketpipe backfill JOB.yaml --from D --to D` starts one)")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tJOB\tFROM\tTO\tWINDOWS LOADED\tOBSERVATIONS\tSTATE")
	for _, r := range recs {
		loaded, rows := r.LoadedCount()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d\t%s\n", r.Name, r.Job, r.From, r.To, loaded, len(r.Parts), rows, backfillState(r))
	}
	tw.Flush()
}

func printBackfill(w io.Writer, rec *backfill.Record) {
	loaded, rows := rec.LoadedCount()
	fmt.Fprintf(w, "backfill %s: job %s (%s), %s to %s, %d/%d windows loaded, %d observations: %s\n",
		rec.Name, rec.Job, rec.File, rec.From, rec.To, loaded, len(rec.Parts), rows, backfillState(rec))
	fmt.Fprintf(w, "planned %s, windows of at most %d data points\n\n", rec.Created.Format(timeLayout), rec.MaxPoints)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WINDOW\tFROM\tTO\tDATES\tDATA POINTS\tJOB\tSTATE\tOBSERVATIONS\tERROR")
	for i, p := range rec.Parts {
		state := p.State
		if state == "" {
			state = "not started"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%s\n", i+1, p.Start, p.End, p.Dates, p.Points, rec.JobID(i), state, p.Rows, short80(p.Error))
	}
	tw.Flush()
}
