// Command vendorsim serves a simulated vendor data web service (Bloomberg HAPI) for
// development, demos and tests. See package vendorsim.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/marketpipe/marketpipe/services/vendorsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := realMain(ctx, os.Args[1:])
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vendorsim:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("vendorsim", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: vendorsim [flags]\n\n"+
			"Serves a simulated Bloomberg Data License REST API (HAPI) under /eap: catalogs,\n"+
			"request creation, response listing and reply-file downloads generated from -seed.\n"+
			"Every /eap request needs the header api-version: 2. Securities starting with BAD\n"+
			"come back with return code 10, those whose first word is RC<n> with return code n\n"+
			"(RC11 X Equity: 11). Mnemonics starting with NOSUCH are unknown fields (FLD UNKNOWN);\n"+
			"mnemonics ending in _LIST, _MEMBERS, _SCHEDULE or _BULK give bulk cells, _DT or DATE\n"+
			"dates, _TIME times, NAME, _DES, CRNCY or TICKER text, others numbers; about one cell\n"+
			"in 37 is N.A., N.S., N.D. or blank. ActionsRequest (getactions) gives each security\n"+
			"corporate actions in its dateRange (fieldList optional: DVD_CASH, DVD_STOCK, STOCK_SPLT,\n"+
			"SPIN, ACQUIS); RC300/RC400 securities get 4-column rows. -layouts picks the reply-file layouts; every\n"+
			"layout holds the same observations. Each output is prepared once, when first listed or downloaded\n"+
			"after it is ready: its reply file is stored gzipped in -dir; gzip downloads copy that file, others\n"+
			"are decoded from it. GET /eap/notifications/sse is the notification stream: a DistributionPublished\n"+
			"event when each output gets ready (once a client has listened), replayed after Last-Event-ID,\n"+
			"heartbeats when idle, at most 16 streams.\n"+
			"GET /healthz answers ok.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	addr := fs.String("addr", ":8081", "listen `address`")
	logLevel := fs.String("log-level", "info", "log level: debug (one line per request), info, warn, error")
	var opts vendorsim.Options
	opts.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	opts.Logger = log

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	sim := vendorsim.NewServer(opts)
	defer func() {
		if err := sim.Close(); err != nil {
			log.Warn("vendorsim: removing the prepared files", "error", err)
		}
	}()
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("vendorsim listening", "addr", ln.Addr().String(), "account", opts.Account,
		"ready_after", opts.ReadyAfter, "seed", opts.Seed, "auth", opts.Credentials != nil)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("vendorsim shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
