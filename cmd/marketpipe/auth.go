package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/services"
)

func newAuthCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Credentials of a deployment"}
	var (
		dir      string
		tlsHosts []string
	)
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Write the NATS credentials of a deployment: one identity per service, operator and admin",
		Long: `Write into --dir what a deployment needs for NATS's decentralised auth:

  - nats-auth.conf: include it in nats-server's configuration (operator, system account and a
    memory resolver preloaded with the accounts);
  - one <identity>.creds per identity (requester, poller, collector, transformer, loader,
    operator, admin), each with the NATS permissions derived from what it declares it uses;
    give each service its own only (NATS_CREDS);
  - keys/: the operator's and accounts' seeds. Keep them offline;
  - for NATS with mutual TLS (docs/security.md, TLS): ca.pem, a CA of its own; nats.pem and
    nats-key.pem, the server's certificate for the --tls-host names (also a client
    certificate, for cluster routes); client.pem and client-key.pem for the services, and
    operator.pem and operator-key.pem for the CLI (NATS_CA, NATS_CERT, NATS_KEY); the CA's key
    in keys/ca-key.pem. Valid one year.

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
			tlsFiles, err := auth.InitTLS(dir, tlsHosts)
			if err != nil {
				return err
			}
			for _, f := range append(files, tlsFiles...) {
				fmt.Fprintln(cmd.OutOrStdout(), filepath.Join(dir, f))
			}
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "directory to write the credentials into (created, mode 0700)")
	initCmd.Flags().StringSliceVar(&tlsHosts, "tls-host", auth.DefaultTLSHosts,
		"a name (DNS or IP) clients reach NATS by, for its TLS certificate; repeat or comma-separate")
	permsCmd := &cobra.Command{
		Use:   "permissions [IDENTITY]...",
		Short: "Print the NATS permissions each identity gets (derived from what it declares it uses)",
		RunE: func(cmd *cobra.Command, args []string) error {
			ids := services.Identities()
			out := cmd.OutOrStdout()
			found := 0
			for _, id := range ids {
				if len(args) > 0 && !slices.Contains(args, id.Name) {
					continue
				}
				found++
				p := auth.Permissions(id, ids)
				fmt.Fprintf(out, "%s\n", id.Name)
				for _, l := range []struct {
					what string
					list []string
				}{{"publish allow", p.Pub.Allow}, {"publish deny", p.Pub.Deny}, {"subscribe allow", p.Sub.Allow}} {
					for _, s := range l.list {
						fmt.Fprintf(out, "  %-16s %s\n", l.what, s)
					}
				}
			}
			if found < len(args) {
				return fmt.Errorf("no identity among %v; identities: %s", args, identityNames(ids))
			}
			return nil
		},
	}
	cmd.AddCommand(initCmd, permsCmd)
	return cmd
}

func identityNames(ids []auth.Identity) string {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = id.Name
	}
	return strings.Join(names, ", ")
}
