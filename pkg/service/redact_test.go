package service

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestHelpHidesNATSSecrets: -h prints the -nats-url default, which comes from NATS_URL.
func TestHelpHidesNATSSecrets(t *testing.T) {
	env := map[string]string{"NATS_URL": "nats://alice:pa55word@nats:4222,nats://t0ken@nats2:4222"}
	var out bytes.Buffer
	err := Run(context.Background(), "svc", "a service", []string{"-h"},
		func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &out, nil)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Run -h: %v", err)
	}
	help := out.String()
	if strings.Contains(help, "pa55word") || strings.Contains(help, "t0ken") {
		t.Errorf("-h shows a secret of NATS_URL:\n%s", help)
	}
	if !strings.Contains(help, "nats://alice:xxxxx@nats:4222,nats://xxxxx@nats2:4222") {
		t.Errorf("-h does not show NATS_URL redacted:\n%s", help)
	}
}
