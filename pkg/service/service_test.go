package service_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/service"
)

// TestHelpListsEnvironment checks that a service's -h names the variables every service reads.
func TestHelpListsEnvironment(t *testing.T) {
	var out bytes.Buffer
	none := func(string) (string, bool) { return "", false }
	err := service.Run(context.Background(), "stage", "does a stage's work", []string{"-h"}, none, &out, nil)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, v := range []string{"NATS_URL", "NATS_REPLICAS", "NATS_MAX_BYTES", "CLICKHOUSE_ADDR", "GOMEMLIMIT"} {
		if !strings.Contains(out.String(), "\n  "+v) {
			t.Errorf("-h does not list %s:\n%s", v, out.String())
		}
	}
}
