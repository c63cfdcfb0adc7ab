package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// runVendorCheck runs `marketpipe vendor check` with env as the whole environment.
func runVendorCheck(t *testing.T, env map[string]string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	root := newRootCmd(lookup, &out, &out)
	root.SetArgs([]string{"vendor", "check", "--timeout", "20s"})
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func writeCredentials(t *testing.T, c vendor.Credentials) string {
	t.Helper()
	type plain vendor.Credentials // Credentials' own MarshalJSON leaves the secret out
	data, err := json.Marshal(plain(c))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestVendorCheck runs `vendor check` against the simulator, without and with credentials
// (per-request JWT checked by the simulator), and checks it lists the catalogs, names the
// account, and creates no request, whatever the outcome.
func TestVendorCheck(t *testing.T) {
	creds := vendor.Credentials{ClientID: "check-client", ClientSecret: "00112233445566778899aabbccddeeff",
		ExpirationDate: time.Now().AddDate(1, 0, 0).UnixMilli()}
	wrong := creds
	wrong.ClientSecret = "ffeeddccbbaa99887766554433221100"
	expired := creds
	expired.ExpirationDate = time.Now().AddDate(0, 0, -1).UnixMilli()
	for _, tt := range []struct {
		name     string
		simCreds *vendor.Credentials
		env      map[string]string // besides VENDOR_URL
		want     []string          // in the output
		wantErr  string
	}{
		{name: "simulator without credentials", want: []string{"auth           none (the simulator without credentials)",
			"catalogs       2", "bbg", "sim-account", "scheduled", "account        sim-account (the only scheduled account listed)", "no request was created"}},
		{name: "with credentials", simCreds: &creds, env: map[string]string{"VENDOR_CREDENTIALS": writeCredentials(t, creds)},
			want: []string{"per-request JWT, client_id check-client, expires ", "authenticated  yes", "account        sim-account"}},
		{name: "VENDOR_ACCOUNT chosen", simCreds: &creds,
			env:  map[string]string{"VENDOR_CREDENTIALS": writeCredentials(t, creds), "VENDOR_ACCOUNT": "sim-account"},
			want: []string{"account        sim-account (VENDOR_ACCOUNT)"}},
		{name: "VENDOR_ACCOUNT not listed", env: map[string]string{"VENDOR_ACCOUNT": "other"},
			wantErr: `account "other" is not among the scheduled accounts listed (sim-account) (set VENDOR_ACCOUNT`},
		{name: "credentials refused", simCreds: &creds, env: map[string]string{"VENDOR_CREDENTIALS": writeCredentials(t, wrong)},
			wantErr: "the vendor refused the credentials (401)"},
		{name: "no credentials where the simulator wants them", simCreds: &creds,
			wantErr: "the vendor refused the credentials (401)"},
		{name: "expired credentials", env: map[string]string{"VENDOR_CREDENTIALS": writeCredentials(t, expired)},
			wantErr: "expired on"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sim := vendorsim.NewServer(vendorsim.Options{Credentials: tt.simCreds})
			srv := httptest.NewServer(sim)
			defer srv.Close()
			defer sim.Close()
			env := map[string]string{"VENDOR_URL": srv.URL + "/eap"}
			for k, v := range tt.env {
				env[k] = v
			}
			out, err := runVendorCheck(t, env)
			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want one containing %q; output:\n%s", err, tt.wantErr, out)
			case tt.wantErr == "" && err != nil:
				t.Errorf("err = %v; output:\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, creds.ClientSecret) || err != nil && strings.Contains(err.Error(), creds.ClientSecret) {
				t.Errorf("the secret was shown")
			}
			if r := sim.Requests(); len(r) != 0 {
				t.Errorf("vendor check created requests: %v", r)
			}
		})
	}
}

// TestVendorCheckRefusesARealVendorWithoutCredentials: like the stages, the check refuses a
// VENDOR_URL that is not the simulator without credentials, before any call.
func TestVendorCheckRefusesARealVendorWithoutCredentials(t *testing.T) {
	out, err := runVendorCheck(t, map[string]string{"VENDOR_URL": "https://vendor.example.com/eap"})
	if err == nil || !strings.Contains(err.Error(), "VENDOR_CREDENTIALS is not set: set VENDOR_CREDENTIALS") {
		t.Errorf("err = %v, want the refusal", err)
	}
	if out != "" {
		t.Errorf("printed before refusing:\n%s", out)
	}
}
