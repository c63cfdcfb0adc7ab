package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

func newQueryCmd(lookup config.Lookup) *cobra.Command {
	var (
		f              chstore.Filter
		from, to, asOf string
		format         string
	)
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Print observations as readers see them now, or as they were known at a time",
		Long: `Print observations from observations_current: per security, field, date (and snapshot
time), the value of the latest committed run. With --as-of, the value of the latest run
committed at or before that time, so a backtest sees no later correction.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if f.From, err = parseDay("--from", from); err != nil {
				return usageError(err)
			}
			if f.To, err = parseDay("--to", to); err != nil {
				return usageError(err)
			}
			if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
				return usageError(fmt.Errorf("--to %s is before --from %s", to, from))
			}
			if asOf != "" {
				if f.AsOf, err = time.Parse(time.RFC3339Nano, asOf); err != nil {
					return usageError(fmt.Errorf("--as-of %q: want an RFC 3339 time such as 2026-01-31T22:00:00Z", asOf))
				}
			}
			var w queryWriter
			switch format {
			case "table":
				w = newQueryTable(cmd.OutOrStdout())
			case "csv":
				w = newQueryCSV(cmd.OutOrStdout())
			case "jsonl":
				w = &queryJSONL{enc: json.NewEncoder(cmd.OutOrStdout())}
			default:
				return usageError(fmt.Errorf("--format %q: want table, csv or jsonl", format))
			}
			cfg, err := config.Load(lookup)
			if err != nil {
				return err
			}
			st, err := openStore(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.Query(cmd.Context(), f, w.write); err != nil {
				return err
			}
			return w.flush()
		},
	}
	cmd.Flags().StringArrayVar(&f.Securities, "security", nil, "only this security (repeat for several)")
	cmd.Flags().StringArrayVar(&f.Fields, "field", nil, "only this field (repeat for several)")
	cmd.Flags().StringVar(&from, "from", "", "first `date` (YYYY-MM-DD)")
	cmd.Flags().StringVar(&to, "to", "", "last `date` (YYYY-MM-DD)")
	cmd.Flags().StringVar(&asOf, "as-of", "", "answer as known at this `time` (RFC 3339)")
	cmd.Flags().StringVar(&format, "format", "table", "table, csv or jsonl")
	return cmd
}

func parseDay(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: want YYYY-MM-DD", flag, s)
	}
	return t, nil
}

// queryWriter prints query rows in one format.
type queryWriter interface {
	write(r *chstore.Row) error
	flush() error
}

// queryJSON is one row of --format jsonl: parse's observation keys, and where it came from.
type queryJSON struct {
	obs.JSON
	SnapshotAt string `json:"snapshot_at,omitempty"`
	Version    uint64 `json:"version"`
}

type queryJSONL struct{ enc *json.Encoder }

func (w *queryJSONL) write(r *chstore.Row) error {
	q := queryJSON{JSON: r.ToJSON(r.Program, r.JobID), Version: r.Version}
	if !r.SnapshotAt.IsZero() {
		q.SnapshotAt = r.SnapshotAt.Format(time.RFC3339)
	}
	return w.enc.Encode(q)
}

func (w *queryJSONL) flush() error { return nil }

var queryColumns = []string{"security", "field", "date", "value", "flag", "program", "snapshot_at", "job_id", "version"}

// cells returns a row's values as text, in queryColumns' order.
func cells(r *chstore.Row) []string {
	value := ""
	switch v := r.Value().(type) {
	case float64:
		value = strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		value = v
	case json.RawMessage:
		value = string(v)
	}
	snap := ""
	if !r.SnapshotAt.IsZero() {
		snap = r.SnapshotAt.Format(time.RFC3339)
	}
	return []string{r.Security, r.Field, r.Date.String(), value, r.Flag, r.Program, snap, r.JobID,
		strconv.FormatUint(r.Version, 10)}
}

type queryCSV struct{ w *csv.Writer }

func newQueryCSV(out io.Writer) *queryCSV {
	w := csv.NewWriter(out)
	w.Write(queryColumns)
	return &queryCSV{w}
}

func (c *queryCSV) write(r *chstore.Row) error { return c.w.Write(cells(r)) }

func (c *queryCSV) flush() error {
	c.w.Flush()
	return c.w.Error()
}

// queryTable aligns its columns in blocks of rows, so a long answer streams.
type queryTable struct {
	out io.Writer
	tw  *tabwriter.Writer
	n   int
}

func newQueryTable(out io.Writer) *queryTable { return &queryTable{out: out} }

func (t *queryTable) write(r *chstore.Row) error {
	if t.n%1000 == 0 {
		if err := t.flush(); err != nil {
			return err
		}
		t.tw = tabwriter.NewWriter(t.out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(t.tw, "SECURITY\tFIELD\tDATE\tVALUE\tFLAG\tPROGRAM\tSNAPSHOT AT\tJOB\tVERSION")
	}
	t.n++
	c := cells(r)
	_, err := fmt.Fprintf(t.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8])
	return err
}

func (t *queryTable) flush() error {
	if t.tw == nil {
		return nil
	}
	return t.tw.Flush()
}

// usageError is a bad flag value: exit 2, nothing queried.
func usageError(err error) error { return &exitError{code: exitInvalid, err: err} }
