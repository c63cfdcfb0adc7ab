//go:build unix

package chtest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func TestSharedServerAndDatabases(t *testing.T) {
	srv := chtest.Start(t)
	if again := chtest.Start(t); again != srv {
		t.Fatal("Start under Main gave a second server")
	}
	a, b := chtest.NewDatabase(t, srv), chtest.NewDatabase(t, srv)
	if a == b || !strings.HasPrefix(a, "t_testsharedserveranddatabases_") {
		t.Fatalf("databases %q and %q", a, b)
	}
	conn, err := chtest.Conn(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM system.databases WHERE name IN (?, ?)", a, b).Scan(&n); err != nil || n != 2 {
		t.Fatalf("databases found: %d, %v", n, err)
	}
	t.Run("dropped after the test", func(t *testing.T) {
		chtest.NewDatabase(t, srv)
	})
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM system.databases WHERE name LIKE 't_testsharedserveranddatabases_dropped%'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("subtest's database left behind: %d, %v", n, err)
	}
}

func TestRequired(t *testing.T) {
	tests := []struct {
		name, ci, require string
		want              bool
	}{
		{"nothing set", "", "", false},
		{"CI", "true", "", true},
		{"explicit", "", "1", true},
		{"CI false", "false", "0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			t.Setenv("MARKETPIPE_REQUIRE_CLICKHOUSE", tt.require)
			if got := chtest.Required(); got != tt.want {
				t.Fatalf("Required() = %v, want %v", got, tt.want)
			}
		})
	}
}
