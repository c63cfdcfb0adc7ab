package main

import (
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/natstest"
)

// TestRefusedByNATS: a CLI command whose user the server refuses says so, with the server's
// reason and what to check, instead of "connection closed"; the password never shows.
func TestRefusedByNATS(t *testing.T) {
	srv := natstest.StartConf(t, t.TempDir(), "authorization { users: [ {user: ops, password: right-pw} ] }")
	env := map[string]string{"NATS_URL": srv.ClientURL(), "NATS_USER": "ops", "NATS_PASSWORD": "wrong-pw"}
	for _, args := range [][]string{{"dlq", "list"}, {"migrate", "--only", "nats"}} {
		out, err := runRoot(t, env, args...)
		if err == nil {
			t.Fatalf("%s with a refused password succeeded:\n%s", args, out)
		}
		msg := err.Error()
		if !strings.Contains(msg, "Authorization Violation") || !strings.Contains(msg, "NATS_CREDS") {
			t.Errorf("%s with a refused password: %q, want the server's refusal and what to check", args, msg)
		}
		if strings.Contains(msg+out, "wrong-pw") {
			t.Errorf("%s: the password shows: %q", args, msg+out)
		}
	}
}
