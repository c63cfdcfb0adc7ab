package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://alice:s3cret@nats:4222", "nats://alice:xxxxx@nats:4222"},
		{"nats://T0KEN@nats:4222", "nats://xxxxx@nats:4222"},
		{"nats://a:p1@n1:4222, nats://T0KEN@n2:4222,nats://n3:4222",
			"nats://a:xxxxx@n1:4222, nats://xxxxx@n2:4222,nats://n3:4222"},
		{"alice:s3cret@nats:4222", "alice:xxxxx@nats:4222"},             // no scheme: nats.go adds one
		{"nats://alice:p@ss@nats:4222", "nats://alice:xxxxx@nats:4222"}, // an '@' in the password
		{"nats://alice:s3cret@nats:bad", "nats://alice:xxxxx@nats:bad"}, // does not parse as a URL
		{"https://u:s3cret@vendor.example/eap?x=a@b", "https://u:xxxxx@vendor.example/eap?x=a@b"},
		{"https://vendor.example/eap/a@b", "https://vendor.example/eap/a@b"}, // '@' in the path only
		{"", ""},
	} {
		got := RedactURL(tt.in)
		if got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		for _, secret := range []string{"s3cret", "p1", "T0KEN", "ss@"} {
			if strings.Contains(tt.in, secret) && strings.Contains(got, secret) {
				t.Errorf("RedactURL(%q) = %q keeps %q", tt.in, got, secret)
			}
		}
	}
}

func TestRedactError(t *testing.T) {
	const list = "nats://alice:s3cret@127.0.0.1:bad,nats://T0KEN@n2:4222"
	base := errors.New(`parse "nats://alice:s3cret@127.0.0.1:bad": invalid port; token T0KEN; quoted "nats://alice:s3cret@\"x"`)
	err := RedactError(fmt.Errorf("connect: %w", base), list)
	msg := err.Error()
	for _, secret := range []string{"s3cret", "T0KEN"} {
		if strings.Contains(msg, secret) {
			t.Errorf("RedactError kept %q: %s", secret, msg)
		}
	}
	if !strings.Contains(msg, "nats://alice:xxxxx@127.0.0.1:bad") || !strings.HasPrefix(msg, "connect: parse") {
		t.Errorf("RedactError lost the rest of the message: %s", msg)
	}
	if !errors.Is(err, base) {
		t.Error("RedactError hides the wrapped error from errors.Is")
	}
	if RedactError(nil, list) != nil {
		t.Error("RedactError(nil) != nil")
	}
	plain := errors.New("connection refused")
	if RedactError(plain, list) != plain {
		t.Error("RedactError wrapped an error that holds no secret")
	}
}
