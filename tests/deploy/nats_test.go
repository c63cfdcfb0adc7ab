package deploy_test

import (
	cryptotls "crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/services"
)

// natsOptions loads a NATS server configuration with the server's own parser, so a key the
// server does not accept, or a value it cannot use, fails here as it would at start-up.
// env sets the environment variables the file refers to ($SERVER_NAME).
func natsOptions(t *testing.T, rel string, env map[string]string) *server.Options {
	t.Helper()
	return natsOptionsFromFile(t, path(t, rel), env)
}

func natsOptionsFromText(t *testing.T, text string, env map[string]string) *server.Options {
	t.Helper()
	f := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return natsOptionsFromFile(t, f, env)
}

func natsOptionsFromFile(t *testing.T, file string, env map[string]string) *server.Options {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats-server rejects %s: %v", file, err)
	}
	return opts
}

// checkJetStream holds for every NATS configuration marketpipe ships.
func checkJetStream(t *testing.T, opts *server.Options) {
	t.Helper()
	if !opts.JetStream {
		t.Error("JetStream is not enabled")
	}
	if !filepath.IsAbs(opts.StoreDir) {
		t.Errorf("store_dir %q is not an absolute path", opts.StoreDir)
	}
	if opts.JetStreamMaxStore <= 0 {
		t.Errorf("max_file_store %d: set a file storage budget", opts.JetStreamMaxStore)
	}
	// One max_payload everywhere: the tests and `marketpipe dev` run with events.MaxPayload.
	if opts.MaxPayload != events.MaxPayload {
		t.Errorf("max_payload %d bytes; want events.MaxPayload (%d), what the tests and dev run with", opts.MaxPayload, events.MaxPayload)
	}
	// Row batches are up to 1 MB, plus headers.
	if opts.MaxPayload < 1<<20+64<<10 {
		t.Errorf("max_payload %d bytes; want more than 1MB (row batches are up to 1 MB plus headers)", opts.MaxPayload)
	}
	if opts.MaxPayload > 8<<20 {
		t.Errorf("max_payload %d bytes; above 8MB NATS warns and memory use grows", opts.MaxPayload)
	}
	if opts.HTTPPort != 8222 {
		t.Errorf("http monitoring port %d; want 8222", opts.HTTPPort)
	}
	if opts.ServerName == "" {
		t.Error("no server_name: JetStream needs a stable one")
	}
	if opts.LameDuckDuration <= 0 {
		t.Error("no lame_duck_duration")
	}
}

func TestNATSConfCompose(t *testing.T) {
	opts := natsOptions(t, "deploy/nats/nats.conf", nil)
	checkJetStream(t, opts)
	if opts.Port != 4222 {
		t.Errorf("client port %d; want 4222 (NATS_URL in docker-compose.yml)", opts.Port)
	}
	if len(opts.Routes) != 0 {
		t.Errorf("the single-node configuration has %d routes", len(opts.Routes))
	}
	if len(opts.TrustedOperators) > 0 || len(opts.Users) > 0 {
		t.Error("deploy/nats/nats.conf authenticates: the default compose stack is anonymous, docker-compose.auth.yml adds auth")
	}
}

// TestNATSConfComposeAuth loads docker-compose.auth.yml's NATS configuration, with the include
// a real `marketpipe auth init` writes next to it, in nats-server's own parser: the same
// single-node server, with the operator, the accounts and the resolver.
func TestNATSConfComposeAuth(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(t.TempDir(), "creds")
	if _, err := auth.Init(creds, services.Identities()); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.InitTLS(creds, auth.DefaultTLSHosts); err != nil {
		t.Fatal(err)
	}
	// The certificates from where the compose file mounts them (/etc/nats/tls) to here.
	for _, f := range []string{"nats.conf", "nats-auth-mode.conf"} {
		conf := strings.ReplaceAll(string(readFile(t, "deploy/nats/"+f)), "/etc/nats/tls/", creds+"/")
		if err := os.WriteFile(filepath.Join(dir, f), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	inc, err := os.ReadFile(filepath.Join(creds, auth.ServerInclude))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, auth.ServerInclude), inc, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := natsOptionsFromFile(t, filepath.Join(dir, "nats-auth-mode.conf"), nil)
	checkJetStream(t, opts)
	if len(opts.TrustedOperators) != 1 || opts.SystemAccount == "" || opts.AccountResolver == nil {
		t.Error("nats-auth-mode.conf does not take the operator, system account and resolver of nats-auth.conf")
	}
	if opts.MaxControlLine < auth.MaxControlLine {
		t.Errorf("max_control_line %d; the identities' JWTs need %d", opts.MaxControlLine, auth.MaxControlLine)
	}
	if opts.TLSConfig == nil || opts.TLSConfig.ClientAuth != cryptotls.RequireAndVerifyClientCert {
		t.Error("nats-auth-mode.conf does not require TLS with a verified client certificate")
	}
}
