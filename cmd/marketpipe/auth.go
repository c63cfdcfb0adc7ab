package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/services"
)

func newAuthCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Credentials of a deployment"}
	var dir string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Write the NATS credentials of a deployment: one identity per service, operator and admin",
		Long: `Write into --dir what a deployment needs for NATS's decentralised auth:

  - nats-auth.conf: include it in nats-server's configuration (operator, system account and a
    memory resolver preloaded with the accounts);
  - one <identity>.creds per identity (requester, poller, collector, transformer, loader,
    operator, admin), each with the NATS permissions derived from what it declares it uses;
    give each service its own only (NATS_CREDS);
  - keys/: the operator's and accounts' seeds. Keep them offline.

To rotate, write a new directory and roll it out (see docs/security.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return fmt.Errorf("--dir is required")
			}
			files, err := auth.Init(dir, services.Identities())
			if err != nil {
				return err
			}
			for _, f := range files {
				fmt.Fprintln(cmd.OutOrStdout(), filepath.Join(dir, f))
			}
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "directory to write the credentials into (created, mode 0700)")
	cmd.AddCommand(initCmd)
	return cmd
}
