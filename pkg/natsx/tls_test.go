package natsx_test

import (
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/telemetry"
	"github.com/marketpipe/marketpipe/pkg/tlstest"
)

// TestConnectMutualTLS: against a server requiring TLS and a client certificate signed by its
// CA (certificates made on the fly), NATS_CA, NATS_CERT and NATS_KEY connect; without the
// client certificate, or without the CA, the connection is refused.
func TestConnectMutualTLS(t *testing.T) {
	dir := t.TempDir()
	certs := tlstest.New(t, dir)
	srv := natstest.StartConf(t, dir, natstest.TLSBlock(certs))
	url := srv.ClientURL()

	nc, err := natsx.Connect(config.NATS{URL: url, CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey}, "tls-test", telemetry.Discard())
	if err != nil {
		t.Fatalf("connect with mutual TLS: %v", err)
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatalf("flush over mutual TLS: %v", err)
	}
	if !nc.TLSRequired() {
		t.Error("the connection does not use TLS")
	}
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Errorf("TLS state: %v", err)
	}
	nc.Close()

	for name, cfg := range map[string]config.NATS{
		"no client certificate": {URL: url, CA: certs.CA},
		"no CA":                 {URL: url, Cert: certs.ClientCert, Key: certs.ClientKey},
	} {
		nc, err := natsx.Connect(cfg, "tls-test", telemetry.Discard())
		if err == nil {
			err = nc.FlushTimeout(2 * time.Second)
			nc.Close()
		}
		// The connection retries in the background (RetryOnFailedConnect): refused shows as
		// a flush that never completes.
		if err == nil {
			t.Errorf("%s: connected, want refused", name)
		}
	}
}
