//go:build unix

package chserver_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chserver"
	"github.com/marketpipe/marketpipe/pkg/chtest"
)

func TestStartStopRestart(t *testing.T) {
	srv := chtest.StartPrivate(t)
	t.Logf("server %s started in %v", srv.Addr(), srv.StartupTime())
	ctx := context.Background()

	conn, err := chtest.Conn(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "CREATE TABLE default.kept (x UInt64) ENGINE = MergeTree ORDER BY x"); err != nil {
		t.Fatal(err)
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO default.kept (x)")
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Column(0).Append([]uint64{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name string
		do   func() error
	}{
		{"restart", func() error { return srv.Restart(ctx) }},
		{"kill then restart", func() error {
			if err := srv.Kill(); err != nil {
				return err
			}
			if srv.Running() {
				t.Error("running after Kill")
			}
			if err := chserver.Ping(ctx, srv.Addr()); err == nil {
				t.Error("ping answered after Kill")
			}
			return srv.Restart(ctx)
		}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			addr := srv.Addr()
			if err := step.do(); err != nil {
				t.Fatal(err)
			}
			t.Logf("back in %v", srv.StartupTime())
			if srv.Addr() != addr {
				t.Errorf("address changed from %s to %s", addr, srv.Addr())
			}
			// The pool's old connections are dead; the driver must dial anew.
			var n uint64
			var err error
			for range 3 {
				if err = conn.QueryRow(ctx, "SELECT count() FROM default.kept").Scan(&n); err == nil {
					break
				}
			}
			if err != nil || n != 3 {
				t.Fatalf("count after %s = %d, %v; want 3 rows kept", step.name, n, err)
			}
		})
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if srv.Running() {
		t.Fatal("running after Stop")
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := srv.Kill(); !errors.Is(err, chserver.ErrNotRunning) {
		t.Fatalf("Kill of a stopped server = %v, want ErrNotRunning", err)
	}
}

func TestStartOnUsedPorts(t *testing.T) {
	bin := chtest.Binary(t)
	first := chtest.StartPrivate(t)
	// A second server on the same ports cannot bind them: Start must fail fast with the
	// server's own complaint, and leave no process behind.
	_, port, _ := strings.Cut(first.Addr(), ":")
	tcp := atoi(t, port)
	_, hport, _ := strings.Cut(first.HTTPAddr(), ":")
	begin := time.Now()
	_, err := chserver.Start(context.Background(), chserver.Options{
		Dir: t.TempDir(), Binary: bin, TCPPort: tcp, HTTPPort: atoi(t, hport),
		StartTimeout: 10 * time.Second,
	})
	if err == nil {
		t.Fatal("second server on the same ports started")
	}
	t.Logf("failed in %v: %v", time.Since(begin), err)
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error does not say the address is in use: %v", err)
	}
	if err := chserver.Ping(context.Background(), first.Addr()); err != nil {
		t.Errorf("first server harmed: %v", err)
	}
}

func TestStartOfFailingBinary(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "clickhouse-server")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'Code: 999, e.displayText() = broken install' >&2\nexit 70\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	_, err := chserver.Start(context.Background(), chserver.Options{Dir: dir, Binary: script})
	if err == nil {
		t.Fatal("Start succeeded with a binary that exits")
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("Start took %v to notice the exit", d)
	}
	for _, want := range []string{"server exited", "exit status 70", "server log tail", "broken install"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestStartTimeout(t *testing.T) {
	// A "server" that never answers: Start must give up within its timeout and kill it.
	dir := t.TempDir()
	script := filepath.Join(dir, "clickhouse-server")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho pretending >&2\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	_, err := chserver.Start(context.Background(), chserver.Options{Dir: dir, Binary: script, StartTimeout: 500 * time.Millisecond})
	if err == nil {
		t.Fatal("Start succeeded against a silent process")
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("Start took %v to give up", d)
	}
	if !strings.Contains(err.Error(), "pretending") {
		t.Errorf("error lacks the process's stderr: %v", err)
	}
}

func TestFailedStartLeavesNoProcess(t *testing.T) {
	// A silent "server" that ignores SIGTERM and has a child: a failed Start must kill the
	// whole process group.
	dir := t.TempDir()
	script := filepath.Join(dir, "clickhouse-server")
	body := "#!/bin/sh\ntrap '' TERM\nsleep 60 &\necho $! > " + filepath.Join(dir, "child.pid") + "\nwait\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := chserver.Start(context.Background(), chserver.Options{Dir: dir, Binary: script, StartTimeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("Start succeeded against a silent process")
	}
	data, err := os.ReadFile(filepath.Join(dir, "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid := atoi(t, strings.TrimSpace(string(data)))
	deadline := time.Now().Add(2 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d of the failed server survived", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func TestFind(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	bin, err := chserver.Find()
	if err != nil {
		if !errors.Is(err, chserver.ErrNotFound) || !strings.Contains(err.Error(), "apt-get install clickhouse-server") {
			t.Fatalf("Find error = %v; want ErrNotFound with install advice", err)
		}
		return
	}
	// Debian's /usr/sbin is searched even when it is not on PATH.
	if !strings.HasPrefix(bin, "/usr/") {
		t.Fatalf("Find = %s", bin)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("bad port %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// BenchmarkStart measures a start on a fresh directory, from exec to the first answered ping,
// and the Stop after it.
//
//	go test ./pkg/chserver -run '^$' -bench Start -benchtime 10x
func BenchmarkStart(b *testing.B) {
	bin := chtest.Binary(b)
	var start, stop time.Duration
	for range b.N {
		srv, err := chserver.Start(context.Background(), chserver.Options{Dir: b.TempDir(), Binary: bin})
		if err != nil {
			b.Fatal(err)
		}
		start += srv.StartupTime()
		begin := time.Now()
		if err := srv.Stop(); err != nil {
			b.Fatal(err)
		}
		stop += time.Since(begin)
	}
	b.ReportMetric(float64(start.Milliseconds())/float64(b.N), "start-ms")
	b.ReportMetric(float64(stop.Milliseconds())/float64(b.N), "stop-ms")
}
