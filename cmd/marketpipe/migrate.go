package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/telemetry"
	"github.com/marketpipe/marketpipe/services"
)

func openStore(ctx context.Context, cfg config.Config) (*chstore.Store, error) {
	tc, err := chstore.TLSConfig(cfg.ClickHouse.Secure == "true", cfg.ClickHouse.CA)
	if err != nil {
		return nil, err
	}
	return chstore.Open(ctx, chstore.Config{Addr: cfg.ClickHouse.Addr, Database: cfg.ClickHouse.Database,
		User: cfg.ClickHouse.User, Password: cfg.ClickHouse.Password, DialTimeout: 5 * time.Second,
		NoCompression: cfg.ClickHouse.Compression == "none", TLS: tc, Cluster: cfg.ClickHouse.Cluster})
}

func newMigrateCmd(lookup config.Lookup) *cobra.Command {
	var only string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the NATS streams, buckets, object stores and consumers, and the ClickHouse schema",
		Long: `Create or upgrade what the services bind to and never create themselves:

  - on NATS (with the admin's credentials, NATS_CREDS=admin.creds): the streams, key-value
    buckets and object stores (NATS_MAX_BYTES, NATS_REPLICAS) and every stage's durable
    consumer (ACK_WAIT, when set, replaces each stage's own);
  - on ClickHouse (with an account allowed DDL): the schema.

Run it before the services start, and again after an upgrade. --only nats or --only clickhouse
does one of the two.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(lookup)
			if err != nil {
				return err
			}
			if only != "" && only != "nats" && only != "clickhouse" {
				return fmt.Errorf("--only %q: want nats or clickhouse", only)
			}
			if only != "clickhouse" {
				if err := migrateNATS(cmd.Context(), cfg, lookup, cmd.OutOrStdout()); err != nil {
					return err
				}
			}
			if only == "nats" {
				return nil
			}
			st, err := openStore(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer st.Close()
			before, err := st.AppliedSchemaVersion(cmd.Context())
			if err != nil && !chstore.IsMissingDatabase(err) {
				return err
			}
			if err := st.Migrate(cmd.Context()); err != nil {
				return err
			}
			what := fmt.Sprintf("created at schema %d", chstore.SchemaVersion())
			switch {
			case before == chstore.SchemaVersion():
				what = fmt.Sprintf("already at schema %d: nothing to do", before)
			case before > 0:
				what = fmt.Sprintf("upgraded from schema %d to %d", before, chstore.SchemaVersion())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "database %s %s (ClickHouse %s at %s)\n",
				cfg.ClickHouse.Database, what, st.ServerVersion(), cfg.ClickHouse.Addr)
			return nil
		},
	}
	cmd.Flags().StringVar(&only, "only", "", "`nats` or `clickhouse`: migrate that one only")
	return cmd
}

// migrateNATS declares the streams, buckets, object stores and consumers (services.Setup),
// waiting up to a minute for JetStream.
func migrateNATS(ctx context.Context, cfg config.Config, lookup config.Lookup, out io.Writer) error {
	var proc service.Process
	if err := config.Read(lookup, &proc); err != nil {
		return err
	}
	nc, err := natsx.Connect(cfg.NATS, "marketpipe-migrate", telemetry.Discard())
	if err != nil {
		return config.RedactError(err, cfg.NATS.URL)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := services.Setup(setupCtx, js, natsx.RetentionFor(cfg.NATS, telemetry.Discard()), proc.AckWait); err != nil {
		if natsx.ReplicasUnsupported(err) {
			return natsx.ExplainReplicas(err, cfg.NATS.Replicas)
		}
		if refused := natsx.Refused(nc); refused != nil {
			return refused
		}
		return config.RedactError(fmt.Errorf("NATS at %s: %w", config.RedactURL(cfg.NATS.URL), err), cfg.NATS.URL)
	}
	consumers := 0
	for _, s := range services.All {
		consumers += len(s.Uses.Consumers)
	}
	fmt.Fprintf(out, "NATS at %s: %d streams, buckets and object stores and %d consumers declared\n",
		config.RedactURL(cfg.NATS.URL), len(natsx.StreamNames()), consumers)
	return nil
}
