package main

import (
	"context"
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

// connectJS connects to NATS and declares the pipeline's streams.
func connectJS(ctx context.Context, cfg config.Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := natsx.Connect(cfg.NATS, name, telemetry.Discard())
	if err != nil {
		return nil, nil, err
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
		return nil, nil, fmt.Errorf("is NATS running at %s? %w", cfg.NATS.URL, err)
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

func newDLQCmd(lookup config.Lookup) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Dead-lettered messages: list them with their reasons, send them back",
		Long: `A message is dead-lettered when it is poison (undecodable, invalid) or when its stage gave up
after MaxDeliver deliveries. The record keeps the stage, the reason, the delivery count, and the
original subject, headers and payload. Fix the cause (or accept it), then redrive: the message
is published again on its original subject, and its dead-letter record is removed.`,
	}
	var asJSON bool
	var stageName string
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead-lettered messages with their reasons",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(lookup)
			if err != nil {
				return err
			}
			nc, js, err := connectJS(cmd.Context(), cfg, "marketpipe-dlq")
			if err != nil {
				return err
			}
			defer nc.Close()
			dls, err := deadLetters(cmd.Context(), js, stageName)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), dls)
			}
			printDeadLetters(cmd.OutOrStdout(), dls)
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	list.Flags().StringVar(&stageName, "stage", "", "only this stage's dead letters")

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
			dls, err := deadLetters(ctx, js, stageName)
			if err != nil {
				return err
			}
			byID := map[uint64]DeadLetter{}
			for _, d := range dls {
				byID[d.ID] = d
			}
			todo := dls
			if !all {
				todo = nil
				for _, id := range ids {
					d, ok := byID[uint64(id)]
					if !ok {
						return fmt.Errorf("no dead letter with id %d (see `marketpipe dlq list`)", id)
					}
					todo = append(todo, d)
				}
			}
			stream, err := js.Stream(ctx, events.DLQStream)
			if err != nil {
				return fmt.Errorf("dead-letter stream: %w", err)
			}
			pub := stage.NewPublisher(js)
			for _, d := range todo {
				if err := redriveOne(ctx, pub, stream, d); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "redriven %d: %s → %s\n", d.ID, d.Stage, d.Subject)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d message(s) redriven\n", len(todo))
			return nil
		},
	}
	redrive.Flags().UintSliceVar(&ids, "id", nil, "dead letter id(s) from `dlq list`")
	redrive.Flags().BoolVar(&all, "all", false, "every dead letter (of --stage, if given)")
	redrive.Flags().StringVar(&stageName, "stage", "", "with --all: only this stage's dead letters")
	cmd.AddCommand(list, redrive)
	return cmd
}

// deadLetters reads the dead-letter stream, oldest first.
func deadLetters(ctx context.Context, js jetstream.JetStream, stageName string) ([]DeadLetter, error) {
	stream, err := js.Stream(ctx, events.DLQStream)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream: %w", err)
	}
	var out []DeadLetter
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // removed by an earlier redrive
		}
		if err != nil {
			return nil, fmt.Errorf("read dead letter %d: %w", seq, err)
		}
		d := DeadLetter{ID: m.Sequence, Time: m.Time, Stage: m.Header.Get(stage.HdrDLQStage),
			Subject: m.Header.Get(stage.HdrDLQSubject), Reason: m.Header.Get(stage.HdrDLQReason),
			Bytes: len(m.Data), msg: m}
		d.Deliveries, _ = strconv.Atoi(m.Header.Get(stage.HdrDLQDeliveries))
		if stageName == "" || d.Stage == stageName {
			out = append(out, d)
		}
	}
	return out, nil
}

// redriveOne publishes the original message again, then removes its dead-letter record. A new
// message id is used, since the original one may still be inside the duplicate window.
func redriveOne(ctx context.Context, pub *stage.Publisher, stream jetstream.Stream, d DeadLetter) error {
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
	origID := d.msg.Header.Get(stage.HdrDLQMsgID)
	msgID := fmt.Sprintf("%s.redrive.%d", origID, d.ID)
	if err := pub.Publish(ctx, d.Subject, msgID, d.msg.Data, hdr); err != nil {
		return fmt.Errorf("redrive %d: %w", d.ID, err)
	}
	if err := stream.DeleteMsg(ctx, d.ID); err != nil {
		return fmt.Errorf("redrive %d: published again, but removing the record failed (it may be redriven twice; the stages deduplicate): %w", d.ID, err)
	}
	return nil
}

func printDeadLetters(w io.Writer, dls []DeadLetter) {
	if len(dls) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tSTAGE\tSUBJECT\tDELIVERIES\tBYTES\tREASON")
	for _, d := range dls {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\n", d.ID, d.Time.UTC().Format(time.DateTime), d.Stage, d.Subject,
			d.Deliveries, d.Bytes, d.Reason)
	}
	tw.Flush()
}
