package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/config"
)

func openStore(ctx context.Context, cfg config.Config) (*chstore.Store, error) {
	return chstore.Open(ctx, chstore.Config{Addr: cfg.ClickHouse.Addr, Database: cfg.ClickHouse.Database,
		User: cfg.ClickHouse.User, Password: cfg.ClickHouse.Password, DialTimeout: 5 * time.Second,
		NoCompression: cfg.ClickHouse.Compression == "none"})
}

func newMigrateCmd(lookup config.Lookup) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the ClickHouse schema",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(lookup)
			if err != nil {
				return err
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
}
