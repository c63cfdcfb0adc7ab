package natstest

import (
	"fmt"

	"github.com/marketpipe/marketpipe/pkg/tlstest"
)

// TLSBlock is the nats-server tls block with c's server certificate that requires TLS and a
// client certificate signed by c's CA (mutual TLS).
func TLSBlock(c tlstest.Files) string {
	return fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n  ca_file: %q\n  verify: true\n  timeout: 5\n}\n",
		c.ServerCert, c.ServerKey, c.CA)
}
