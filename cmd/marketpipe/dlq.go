package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
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

// connectJS connects to NATS and declares the pipeline's streams. Its errors never hold the
// secrets of NATS_URL.
func connectJS(ctx context.Context, cfg config.Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := natsx.Connect(cfg.NATS, name, telemetry.Discard())
	if err != nil {
		return nil, nil, config.RedactError(err, cfg.NATS.URL)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	setupCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := natsx.Setup(setupCtx, js, natsx.RetentionFor(cfg.NATS, telemetry.Discard())); err != nil {
		nc.Close()
		return nil, nil, config.RedactError(fmt.Errorf("is NATS running at %s? %w", config.RedactURL(cfg.NATS.URL), err), cfg.NATS.URL)
	}
	return nc, js, nil
}

// DeadLetter is one entry of the dead-letter stream.
type DeadLetter struct {
	ID         uint64    `json:"id"` // sequence in MP_DLQ: what redrive --id takes
	Time       time.Time `json:"time"`
	Stage      string    `json:"stage"`
	Subject    string    `json:"subject"` // where it came from and where redrive sends it
	Deliveries int       `json:"deliveries"`
	Reason     string    `json:"reason"`
	Bytes      int       `json:"bytes"`

	msg *jetstream.RawStreamMsg
}

// origin identifies the message a dead letter was made of: every stage that reads its subject
// and could not handle it made one of the same origin.
type origin struct {
	stream string
	seq    string
}

func (d DeadLetter) origin() origin {
	o := origin{d.msg.Header.Get(stage.HdrDLQStream), d.msg.Header.Get(stage.HdrDLQSeq)}
	if o.stream == "" || o.seq == "" {
		return origin{stream: events.DLQStream, seq: strconv.FormatUint(d.ID, 10)} // its own
	}
	return o
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
			if err := eachDeadLetter(cmd.Context(), stream, stageName, p.print); err != nil {
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

// eachDeadLetter calls fn with each dead letter (of stageName, if given), oldest first,
// reading one at a time, so that a stream of any size takes little memory.
func eachDeadLetter(ctx context.Context, stream jetstream.Stream, stageName string, fn func(DeadLetter) error) error {
	filter := events.DLQSubjects
	if stageName != "" {
		filter = events.DLQSubject(stageName)
	}
	for seq := uint64(1); ; {
		// The next message at or after seq on filter: records removed by a redrive are skipped.
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read dead letters from %d: %w", seq, err)
		}
		d := DeadLetter{ID: m.Sequence, Time: m.Time, Stage: m.Header.Get(stage.HdrDLQStage),
			Subject: m.Header.Get(stage.HdrDLQSubject), Reason: m.Header.Get(stage.HdrDLQReason),
			Bytes: len(m.Data), msg: m}
		d.Deliveries, _ = strconv.Atoi(m.Header.Get(stage.HdrDLQDeliveries))
		if err := fn(d); err != nil {
			return err
		}
		seq = m.Sequence + 1
	}
}

// redriveDeadLetters publishes again the messages of the dead letters ids (or, with none, of
// every dead letter of stageName, or of all), each once, and removes every record of them.
func redriveDeadLetters(ctx context.Context, stream jetstream.Stream, pub *stage.Publisher, ids []uint,
	stageName string, out io.Writer) error {
	// First the index of every record by the message it was made of (no payloads): a
	// message's records are removed together.
	records := map[origin][]uint64{}
	stagesOf := map[origin][]string{} // the stages that dead-lettered each message
	wanted := map[uint64]bool{}
	for _, id := range ids {
		wanted[uint64(id)] = true
	}
	type record struct {
		id     uint64
		origin origin
	}
	var todo []record
	err := eachDeadLetter(ctx, stream, "", func(d DeadLetter) error {
		o := d.origin()
		records[o] = append(records[o], d.ID)
		if !slices.Contains(stagesOf[o], d.Stage) {
			stagesOf[o] = append(stagesOf[o], d.Stage)
		}
		if len(ids) > 0 && wanted[d.ID] || len(ids) == 0 && (stageName == "" || d.Stage == stageName) {
			todo = append(todo, record{d.ID, o})
			delete(wanted, d.ID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		if wanted[uint64(id)] {
			return fmt.Errorf("no dead letter with id %d (see marketpipe dlq list)", id)
		}
	}
	done := map[origin]bool{}
	var messages, removed int
	for _, r := range todo {
		id, o := r.id, r.origin
		if done[o] {
			continue // published already, for another record of the same message
		}
		m, err := stream.GetMsg(ctx, id)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // removed since it was listed, by another redrive
		}
		if err != nil {
			return fmt.Errorf("read dead letter %d: %w", id, err)
		}
		d := DeadLetter{ID: id, Stage: m.Header.Get(stage.HdrDLQStage), Subject: m.Header.Get(stage.HdrDLQSubject), msg: m}
		if err := republish(ctx, pub, d, stagesOf[o]); err != nil {
			return err
		}
		done[o] = true
		messages++
		var others []string
		for _, rid := range records[o] {
			if err := stream.DeleteMsg(ctx, rid); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				return fmt.Errorf("redrive %d: published again, but removing dead letter %d failed (it may be redriven twice; the stages deduplicate): %w", id, rid, err)
			}
			removed++
			if rid != id {
				others = append(others, strconv.FormatUint(rid, 10))
			}
		}
		fmt.Fprintf(out, "redriven %d: %s → %s", id, d.Stage, d.Subject)
		if len(others) > 0 {
			fmt.Fprintf(out, " (dead letter(s) %s of the same message removed too)", strings.Join(others, ", "))
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "%d message(s) redriven, %d dead letter(s) removed\n", messages, removed)
	return nil
}

// republish publishes the original message of d again, for the stages that dead-lettered it
// (stage.HdrRedriveStages): the other stages that read its subject handled it already. A new
// message id is used, since the original one may still be inside the duplicate window.
func republish(ctx context.Context, pub *stage.Publisher, d DeadLetter, stages []string) error {
	if d.Subject == "" {
		return fmt.Errorf("dead letter %d has no original subject", d.ID)
	}
	hdr := nats.Header{}
	for k, v := range d.msg.Header {
		if strings.HasPrefix(k, "Mp-Dlq-") {
			continue
		}
		hdr[k] = v
	}
	slices.Sort(stages)
	hdr.Set(stage.HdrRedriveStages, strings.Join(stages, ","))
	origID := d.msg.Header.Get(stage.HdrDLQMsgID)
	msgID := fmt.Sprintf("%s.redrive.%d", origID, d.ID)
	if err := pub.Publish(ctx, d.Subject, msgID, d.msg.Data, hdr); err != nil {
		return fmt.Errorf("redrive %d: %w", d.ID, err)
	}
	return nil
}

// deadLetterPrinter prints dead letters as they are read.
type deadLetterPrinter interface {
	print(d DeadLetter) error
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

func (p *tablePrinter) print(d DeadLetter) error {
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

func (p *jsonPrinter) print(d DeadLetter) error {
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
