package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

func newVendorCmd(lookup config.Lookup) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vendor",
		Short: "Check the vendor connection: credentials, catalogs, account",
	}
	var timeout time.Duration
	check := &cobra.Command{
		Use:   "check",
		Short: "Authenticate, list the catalogs and say which account requests would go to; creates no request",
		Long: `Reads VENDOR_URL, VENDOR_CREDENTIALS, VENDOR_TOKEN_URL and VENDOR_ACCOUNT as the requester, poller
and collector do, authenticates to the vendor by listing its catalogs (GET /catalogs/, the one
call made: nothing is created, nothing is billed), prints them and the account requests would go
to: VENDOR_ACCOUNT when set (it must be a scheduled account of the list), else the list's only
scheduled account. Fails, saying why, when the stages could not work: no credentials for a
vendor that is not the simulator, a credentials file that cannot sign, expired credentials,
credentials the vendor refuses, or no account to use. See docs/going-live.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return vendorCheck(ctx, lookup, cmd.OutOrStdout())
		},
	}
	check.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long (retries included)")
	cmd.AddCommand(check)
	return cmd
}

func vendorCheck(ctx context.Context, lookup config.Lookup, out io.Writer) error {
	cfg, err := config.Load(lookup)
	if err != nil {
		return err
	}
	vc, err := service.VendorConfig(cfg)
	if err != nil {
		return err
	}
	vc.MaxRetries = 2 // a check answers quickly rather than waiting out a long outage
	client, err := vendor.New(vc)
	if err != nil {
		return config.RedactError(fmt.Errorf("vendor client: %w", err), cfg.VendorURL, cfg.VendorTokenURL)
	}
	kv := func(k, v string) { fmt.Fprintf(out, "%-15s%s\n", k, v) }
	kv("vendor", config.RedactURL(cfg.VendorURL))
	kv("auth", authDescription(cfg, vc.Credentials))

	cats, err := client.Catalogs(ctx)
	if err != nil {
		var api *vendor.APIError
		if errors.As(err, &api) && (api.StatusCode == 401 || api.StatusCode == 403) {
			err = fmt.Errorf("the vendor refused the credentials (%d): check VENDOR_CREDENTIALS (and VENDOR_TOKEN_URL): %w", api.StatusCode, err)
		}
		return config.RedactError(err, cfg.VendorURL, cfg.VendorTokenURL)
	}
	kv("authenticated", "yes (the catalog list answered)")
	kv("catalogs", fmt.Sprint(len(cats)))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  IDENTIFIER\tSUBSCRIPTION\tTITLE")
	for _, c := range cats {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Identifier, c.SubscriptionType, c.Title)
	}
	tw.Flush()
	acct, err := vendor.ChooseAccount(cats, cfg.VendorAccount)
	if err != nil {
		return fmt.Errorf("%w (set VENDOR_ACCOUNT to one of the scheduled accounts above)", err)
	}
	how := "the only scheduled account listed"
	if cfg.VendorAccount != "" {
		how = "VENDOR_ACCOUNT"
	}
	kv("account", acct+" ("+how+")")
	fmt.Fprintln(out, "no request was created")
	return nil
}

// authDescription says how the stages would authenticate, without any secret.
func authDescription(cfg config.Config, creds *vendor.Credentials) string {
	if creds == nil {
		return "none (the simulator without credentials)"
	}
	s := "per-request JWT"
	if cfg.VendorTokenURL != "" {
		s = "OAuth2 client credentials from " + config.RedactURL(cfg.VendorTokenURL)
	}
	s += ", client_id " + creds.ClientID
	if exp, ok := creds.Expires(); ok {
		left := time.Until(exp)
		s += ", expires " + exp.Format(time.DateOnly)
		if left < 30*24*time.Hour {
			s += fmt.Sprintf(" (in %d days: renew them)", int(left.Hours()/24))
		}
	}
	return s
}
