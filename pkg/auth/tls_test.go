package auth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/telemetry"
	"github.com/marketpipe/marketpipe/pkg/tlstest"
)

// TestInitTLS runs a real nats-server with mutual TLS on InitTLS's certificates: the services'
// and the operator's client certificates connect (the server's is verified for 127.0.0.1), a
// client without a client certificate, or with one of another CA, is refused; keys are 0600;
// a second InitTLS into the same directory is refused.
func TestInitTLS(t *testing.T) {
	dir := t.TempDir()
	files, err := auth.InitTLS(dir, auth.DefaultTLSHosts)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 8 {
		t.Errorf("wrote %v; want the CA, its key and three certificates with their keys", files)
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if want := os.FileMode(0o644); strings.Contains(f, "key") {
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v; want 0600", f, fi.Mode().Perm())
			}
		} else if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v; want %v", f, fi.Mode().Perm(), want)
		}
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	srv := natstest.StartConf(t, dir, natstest.TLSBlock(tlstest.Files{CA: p(auth.TLSCA),
		ServerCert: p(auth.TLSServerCert), ServerKey: p(auth.TLSServerKey)}))
	url := srv.ClientURL()
	if !strings.Contains(url, "127.0.0.1") {
		t.Fatalf("server URL %s: the test verifies the certificate for 127.0.0.1", url)
	}
	connects := func(cfg config.NATS) bool {
		nc, err := natsx.Connect(cfg, "tls-test", telemetry.Discard())
		if err != nil {
			return false
		}
		defer nc.Close()
		// Refused shows as a flush that never completes (the connection retries).
		return nc.FlushTimeout(2*time.Second) == nil && nc.TLSRequired()
	}
	for _, c := range [][2]string{{auth.TLSClientCert, auth.TLSClientKey}, {auth.TLSCLICert, auth.TLSCLIKey}} {
		if !connects(config.NATS{URL: url, CA: p(auth.TLSCA), Cert: p(c[0]), Key: p(c[1])}) {
			t.Errorf("%s does not connect with mutual TLS", c[0])
		}
	}
	other := tlstest.New(t, t.TempDir())
	for name, cfg := range map[string]config.NATS{
		"no client certificate":  {URL: url, CA: p(auth.TLSCA)},
		"another CA's client":    {URL: url, CA: p(auth.TLSCA), Cert: other.ClientCert, Key: other.ClientKey},
		"the server not trusted": {URL: url, CA: other.CA, Cert: p(auth.TLSClientCert), Key: p(auth.TLSClientKey)},
	} {
		if connects(cfg) {
			t.Errorf("%s: connected, want refused", name)
		}
	}
	if _, err := auth.InitTLS(dir, auth.DefaultTLSHosts); err == nil {
		t.Error("a second InitTLS into the same directory succeeded; want refused")
	}
}
