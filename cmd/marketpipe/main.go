// Command marketpipe is the operator's CLI: run everything locally (dev), submit jobs and watch
// them, look at their status, create the ClickHouse schema, and read vendor files offline.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/marketpipe/marketpipe/pkg/config"
)

// exitError carries a specific exit status out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newRootCmd(config.OS, os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "marketpipe:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

func newRootCmd(lookup config.Lookup, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "marketpipe",
		Short: "Pull market data from a vendor's asynchronous web service into ClickHouse",
		Long: `marketpipe pulls market data from a vendor's asynchronous web service into ClickHouse,
through five services (requester, poller, collector, transformer, loader) connected by NATS JetStream.

Configuration comes from the environment (NATS_URL, CLICKHOUSE_ADDR, VENDOR_URL, ...; see README.md).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newDevCmd(lookup),
		newSubmitCmd(lookup),
		newBackfillCmd(lookup),
		newStatusCmd(lookup),
		newMigrateCmd(lookup),
		newAuthCmd(),
		newDLQCmd(lookup),
		newReplayCmd(lookup),
		newParseCmd(),
		newQueryCmd(lookup),
		newScheduleCmd(lookup),
		newCancelCmd(lookup),
		newVendorCmd(lookup),
	)
	return root
}
