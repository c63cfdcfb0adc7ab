//go:build unix

// Package chtest gives tests a real ClickHouse server (pkg/chserver) and a fresh database per
// test, so that the ClickHouse code is tested against the server it runs on, not a fake.
//
// A package that calls Main from its TestMain shares one server among all its tests; it is
// stopped, and its directory removed, when the tests end. Without Main, Start gives each test
// its own server (a start costs about a fifth of a second), stopped by the test's cleanup.
//
// When no server binary is installed, tests skip with a loud message, except in CI (CI=true)
// or when MARKETPIPE_REQUIRE_CLICKHOUSE=1, where they fail: a missing server must not turn
// into a green build.
package chtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/marketpipe/marketpipe/pkg/chserver"
)

// shared is the package-wide server when Main is in use.
var shared struct {
	enabled bool
	once    sync.Once
	srv     *chserver.Server
	dir     string
	err     error
}

// Main runs the tests of a package with one shared ClickHouse server, started on first use by
// Start, and stops it afterwards. Call it from TestMain:
//
//	func TestMain(m *testing.M) { chtest.Main(m) }
func Main(m *testing.M) {
	removeStale()
	shared.enabled = true
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "chtest: %v\n", err)
		}
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// removeStale removes the directories of shared servers whose test binary died without
// cleaning up (a test timeout panics past Main's cleanup; the server itself dies with the
// binary, see chserver). A running server keeps a status file naming its live PID, and a
// cleanly stopped one removes it; a directory with neither a live PID nor recent changes is
// left over.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "chtest-*"))
	for _, dir := range dirs {
		status, err := os.ReadFile(filepath.Join(dir, "data", "status"))
		if err == nil {
			var pid int
			if _, err := fmt.Sscanf(string(status), "PID: %d", &pid); err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
				continue // running, or not a status we understand
			}
		} else if fi, err := os.Stat(dir); err != nil || time.Since(fi.ModTime()) < 10*time.Minute {
			continue // possibly another package's server on its way up
		}
		os.RemoveAll(dir)
	}
}

// Required reports whether the environment demands a real server (CI=true or
// MARKETPIPE_REQUIRE_CLICKHOUSE=1), in which case a missing binary fails tests.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("MARKETPIPE_REQUIRE_CLICKHOUSE") == "1"
}

// Binary returns the server binary, or skips (fails, when Required) the test without one.
func Binary(tb testing.TB) string {
	tb.Helper()
	bin, err := chserver.Find()
	if err == nil {
		return bin
	}
	if Required() {
		tb.Fatalf("ClickHouse is required here (CI=true or MARKETPIPE_REQUIRE_CLICKHOUSE=1) but %v", err)
	}
	tb.Skipf("\n"+
		"***************************************************************\n"+
		"*** SKIPPED: no ClickHouse server: %v\n"+
		"*** Set MARKETPIPE_REQUIRE_CLICKHOUSE=1 to make this a failure.\n"+
		"***************************************************************", err)
	return ""
}

// Start returns a running server for the test: the package's shared one under Main, else a
// new one stopped at the end of the test.
func Start(tb testing.TB) *chserver.Server {
	tb.Helper()
	bin := Binary(tb)
	if shared.enabled {
		shared.once.Do(func() {
			dir, err := os.MkdirTemp("", "chtest-")
			if err != nil {
				shared.err = err
				return
			}
			shared.dir = dir
			shared.srv, shared.err = startServer(dir, bin)
		})
		if shared.err != nil {
			tb.Fatalf("chtest: %v", shared.err)
		}
		return shared.srv
	}
	srv, err := startServer(tb.TempDir(), bin)
	if err != nil {
		tb.Fatalf("chtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			tb.Errorf("chtest: %v", err)
		}
	})
	return srv
}

// StartPrivate starts a server of the test's own, never the shared one, for tests that stop,
// kill or restart it. It is stopped at the end of the test.
func StartPrivate(tb testing.TB) *chserver.Server {
	tb.Helper()
	bin := Binary(tb)
	srv, err := startServer(tb.TempDir(), bin)
	if err != nil {
		tb.Fatalf("chtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			tb.Errorf("chtest: %v", err)
		}
	})
	return srv
}

func startServer(dir, bin string) (*chserver.Server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return chserver.Start(ctx, chserver.Options{Dir: dir, Binary: bin})
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_]+`)

// NewDatabase creates a uniquely named, empty database on srv for the test, and drops it when
// the test ends. The name starts with the test's name, for reading the server's logs.
func NewDatabase(tb testing.TB, srv *chserver.Server) string {
	tb.Helper()
	base := strings.ToLower(unsafeName.ReplaceAllString(tb.Name(), "_"))
	if len(base) > 40 {
		base = base[:40]
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		tb.Fatalf("chtest: %v", err)
	}
	name := "t_" + base + "_" + hex.EncodeToString(rnd[:])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := Conn(srv)
	if err != nil {
		tb.Fatalf("chtest: %v", err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		tb.Fatalf("chtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if !srv.Running() {
			return // a fault test stopped it; its directory goes anyway
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := Conn(srv)
		if err != nil {
			tb.Errorf("chtest: drop database %s: %v", name, err)
			return
		}
		defer conn.Close()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			tb.Errorf("chtest: drop database %s: %v", name, err)
		}
	})
	return name
}

// Conn opens a native-protocol connection pool to srv as the default user, for tests that
// look at the server directly. The caller closes it.
func Conn(srv *chserver.Server) (clickhouse.Conn, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{srv.Addr()},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to clickhouse %s: %w", srv.Addr(), err)
	}
	return conn, nil
}

// ProcessCPU returns the CPU time (user and system) this process has used: benchmarks of
// ClickHouse clients report their own CPU per row with it, the server's being in another
// process.
func ProcessCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
