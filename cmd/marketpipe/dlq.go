package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/telemetry"
)

// dialJS connects to NATS and JetStream without binding anything: for the reads `status` adds
// to what ClickHouse says. Its errors never hold the secrets of NATS_URL.
func dialJS(cfg config.Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := natsx.Connect(cfg.NATS, name, telemetry.Discard())
	if err != nil {
		return nil, nil, config.RedactError(err, cfg.NATS.URL)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// tracedJS is connectJS for a command that publishes job events: with the tracing of
// OTEL_TRACES_EXPORTER, so a job's trace starts at the CLI. done closes both.
func tracedJS(ctx context.Context, cfg config.Config, name string) (tr *telemetry.Tracing, js jetstream.JetStream, done func(), err error) {
	tr, err = telemetry.NewTracing(ctx, cfg.OTEL, "marketpipe")
	if err != nil {
		return nil, nil, nil, err
	}
	nc, js, err := connectJS(ctx, cfg, name)
	if err != nil {
		tr.Shutdown(context.WithoutCancel(ctx))
		return nil, nil, nil, err
	}
	return tr, js, func() { nc.Close(); tr.Shutdown(context.WithoutCancel(ctx)) }, nil
}

// connectJS connects to NATS and binds the pipeline's streams, which `marketpipe migrate`
// created. Its errors never hold the secrets of NATS_URL.
func connectJS(ctx context.Context, cfg config.Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, js, err := dialJS(cfg, name)
	if err != nil {
		return nil, nil, err
	}
	bindCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := natsx.Bind(bindCtx, js); err != nil {
		defer nc.Close()
		if refused := natsx.Refused(nc); refused != nil {
			return nil, nil, refused
		}
		if errors.Is(err, natsx.ErrNotSetUp) {
			return nil, nil, config.RedactError(err, cfg.NATS.URL)
		}
		return nil, nil, config.RedactError(fmt.Errorf("is NATS running at %s? %w", config.RedactURL(cfg.NATS.URL), err), cfg.NATS.URL)
	}
	return nc, js, nil
}

func newDLQCmd(lookup config.Lookup) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Dead-lettered messages: list them with their reasons, send them back",
		Long: `A message is dead-lettered when it is poison (undecodable, invalid) or when its stage gave up
after MaxDeliver deliveries. The record keeps the stage, the reason, the delivery count, and the
original subject, headers and payload. Fix the cause (or accept it), then redrive: the message
is published again on its original subject, and its dead-letter record is removed.

Every stage that reads that subject sees a redriven message again (the jobs stage, which records
every job event, always does). So a redrive also removes the records that other stages made of
the same message: each publishes one again if it still cannot handle it, and the message is
published once, however many records it had.`,
	}
	var asJSON bool
	var stageName string
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead-lettered messages with their reasons",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkStageName(stageName); err != nil {
				return &exitError{code: exitInvalid, err: err}
			}
			cfg, err := config.Load(lookup)
			if err != nil {
				return err
			}
			nc, js, err := connectJS(cmd.Context(), cfg, "marketpipe-dlq")
			if err != nil {
				return err
			}
			defer nc.Close()
			stream, err := js.Stream(cmd.Context(), events.DLQStream)
			if err != nil {
				return fmt.Errorf("dead-letter stream: %w", err)
			}
			var p deadLetterPrinter = &tablePrinter{w: cmd.OutOrStdout()}
			if asJSON {
				p = &jsonPrinter{w: cmd.OutOrStdout()}
			}
			subject := "" // every stage's
			if stageName != "" {
				subject = events.DLQSubject(stageName)
			}
			if err := stage.EachDeadLetter(cmd.Context(), stream, subject, p.print); err != nil {
				return err // what was printed is not closed: a reader sees it is cut short
			}
			return p.finish()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	list.Flags().StringVar(&stageName, "stage", "", "only this `stage`'s dead letters")

	var ids []uint
	var all bool
	redrive := &cobra.Command{
		Use:   "redrive (--id ID ... | --all [--stage STAGE])",
		Short: "Publish dead-lettered messages again on their original subjects",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all == (len(ids) > 0) {
				return &exitError{code: exitInvalid, err: errors.New("give either --id (one or more) or --all")}
			}
			if err := checkStageName(stageName); err != nil {
				return &exitError{code: exitInvalid, err: err}
			}
			cfg, err := config.Load(lookup)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			nc, js, err := connectJS(ctx, cfg, "marketpipe-dlq")
			if err != nil {
				return err
			}
			defer nc.Close()
			stream, err := js.Stream(ctx, events.DLQStream)
			if err != nil {
				return fmt.Errorf("dead-letter stream: %w", err)
			}
			return redriveDeadLetters(ctx, stream, stage.NewPublisher(js), ids, stageName, cmd.OutOrStdout())
		},
	}
	redrive.Flags().UintSliceVar(&ids, "id", nil, "`ID` of a dead letter, as marketpipe dlq list shows it (repeat the flag or separate with commas)")
	redrive.Flags().BoolVar(&all, "all", false, "every dead letter (of --stage, if given)")
	redrive.Flags().StringVar(&stageName, "stage", "", "with --all: only this `stage`'s dead letters")
	cmd.AddCommand(list, redrive)
	return cmd
}

// checkStageName refuses a --stage that is not a stage name: it becomes a subject token.
func checkStageName(name string) error {
	if strings.ContainsAny(name, ".*> \t\r\n") {
		return fmt.Errorf("--stage %q: not a stage name (requester, poller, ...)", name)
	}
	return nil
}

// redriveDeadLetters redrives (stage.Redrive) and says what it did on out.
func redriveDeadLetters(ctx context.Context, stream stage.DeadLetterStream, pub *stage.Publisher, ids []uint,
	stageName string, out io.Writer) error {
	seqs := make([]uint64, len(ids))
	for i, id := range ids {
		seqs[i] = uint64(id)
	}
	messages, removed, err := stage.Redrive(ctx, stream, pub, seqs, stageName, func(r stage.Redriven) {
		fmt.Fprintf(out, "redriven %d: %s → %s", r.ID, r.Stage, r.Subject)
		if len(r.Others) > 0 {
			others := make([]string, len(r.Others))
			for i, o := range r.Others {
				others[i] = strconv.FormatUint(o, 10)
			}
			fmt.Fprintf(out, " (dead letter(s) %s of the same message removed too)", strings.Join(others, ", "))
		}
		fmt.Fprintln(out)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%d message(s) redriven, %d dead letter(s) removed\n", messages, removed)
	return nil
}

// deadLetterPrinter prints dead letters as they are read.
type deadLetterPrinter interface {
	print(d stage.DeadLetter) error
	finish() error
}

// tablePrinter prints a table, aligned by blocks of tableBlock rows so that it is printed as
// it is read.
type tablePrinter struct {
	w  io.Writer
	tw *tabwriter.Writer
	n  int
}

const tableBlock = 100

func (p *tablePrinter) print(d stage.DeadLetter) error {
	if p.tw == nil {
		p.tw = tabwriter.NewWriter(p.w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(p.tw, "ID\tTIME\tSTAGE\tSUBJECT\tDELIVERIES\tBYTES\tREASON")
	}
	fmt.Fprintf(p.tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\n", d.ID, d.Time.UTC().Format(time.DateTime), d.Stage, d.Subject,
		d.Deliveries, d.Bytes, d.Reason)
	p.n++
	if p.n%tableBlock == 0 {
		return p.tw.Flush()
	}
	return nil
}

func (p *tablePrinter) finish() error {
	if p.n == 0 {
		_, err := fmt.Fprintln(p.w, "no dead letters")
		return err
	}
	return p.tw.Flush()
}

// jsonPrinter prints a JSON array, one element a line.
type jsonPrinter struct {
	w io.Writer
	n int
}

func (p *jsonPrinter) print(d stage.DeadLetter) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	sep := ",\n"
	if p.n == 0 {
		sep = "[\n"
	}
	p.n++
	_, err = fmt.Fprintf(p.w, "%s  %s", sep, b)
	return err
}

func (p *jsonPrinter) finish() error {
	end := "\n]\n"
	if p.n == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(p.w, end)
	return err
}
