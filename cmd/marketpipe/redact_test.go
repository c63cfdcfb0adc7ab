package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNoSecretInOutput runs commands that fail on NATS_URL, with a password and a token in it:
// neither may appear in what they print or in their error.
func TestNoSecretInOutput(t *testing.T) {
	const password, token = "pa55word", "t0ken"
	unreachable := "nats://alice:" + password + "@127.0.0.1:1,nats://" + token + "@127.0.0.1:2"
	malformed := "nats://alice:" + password + "@127.0.0.1:port"
	for _, tt := range []struct {
		name    string
		natsURL string
		args    []string
	}{
		{"dlq list, unreachable", unreachable, []string{"dlq", "list"}},
		{"dlq redrive, unreachable", unreachable, []string{"dlq", "redrive", "--all"}},
		{"dlq list, malformed", malformed, []string{"dlq", "list", "--json"}},
		{"dlq list, token, malformed", "nats://" + token + "@127.0.0.1:port", []string{"dlq", "list"}},
		{"dev, malformed", malformed, []string{"dev", "--state-dir", filepath.Join(t.TempDir(), "s")}},
		{"dev, two URLs", unreachable, []string{"dev", "--state-dir", filepath.Join(t.TempDir(), "s")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			env := map[string]string{"NATS_URL": tt.natsURL, "HTTP_ADDR": "127.0.0.1:0"}
			var out bytes.Buffer
			root := newRootCmd(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &out, &out)
			root.SetArgs(tt.args)
			err := root.ExecuteContext(ctx)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out.String())
			}
			all := out.String() + "\n" + err.Error()
			for _, secret := range []string{password, token} {
				if strings.Contains(all, secret) {
					t.Errorf("%q in the output or error:\n%s", secret, all)
				}
			}
			if !strings.Contains(all, "127.0.0.1") {
				t.Errorf("the error no longer says which server:\n%s", all)
			}
		})
	}
}
