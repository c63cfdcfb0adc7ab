//go:build linux

package chstore_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chserver"
	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/zkserver"
)

// TestReplicatedLoad runs the schema and the loader's writes on two ClickHouse 18.16 servers,
// replicas of one shard coordinated by a ZooKeeper server: migrate ON CLUSTER creates
// Replicated tables on both; jobs are loaded through the store (Insert, then Commit, retried
// as the loader's redelivery retries them) while one replica is killed and later restarted;
// both must end with exactly the expected observations_current.
func TestReplicatedLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and two ClickHouse servers (about 12 s); not with -short")
	}
	bin := chtest.Binary(t)
	if _, err := zkserver.Find(); err != nil {
		if chtest.Required() {
			t.Fatalf("ZooKeeper is required here (CI=true or MARKETPIPE_REQUIRE_CLICKHOUSE=1) but %v", err)
		}
		t.Skipf("SKIPPED: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	begin := time.Now()

	zk, err := zkserver.Start(ctx, filepath.Join(t.TempDir(), "zk"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(zk.Stop)

	// The replicas name each other in remote_servers: their native ports are chosen first.
	const cluster = "mp"
	var addrs []string
	for range 2 {
		port, err := chserver.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", port))
	}
	var replicas []*chserver.Server
	for i, addr := range addrs {
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		srv, err := chserver.Start(ctx, chserver.Options{Dir: filepath.Join(t.TempDir(), fmt.Sprintf("r%d", i+1)),
			Binary: bin, TCPPort: port, Replication: &chserver.Replication{
				Cluster: cluster, Shards: [][]string{addrs}, Shard: "01", Replica: fmt.Sprintf("r%d", i+1),
				ZooKeeper: []string{zk.Addr()}, SessionTimeout: 3 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = srv.Stop()
			if t.Failed() {
				logTail(t, filepath.Join(srv.Dir(), "log", "server.err.log"))
				logTail(t, filepath.Join(srv.Dir(), "log", "stderr.log"))
			}
		})
		replicas = append(replicas, srv)
	}
	up := time.Now()
	t.Logf("zookeeper and two replicas up in %v", up.Sub(begin).Round(time.Millisecond))

	const db = "replicated"
	openOn := func(srv *chserver.Server) *chstore.Store {
		s, err := chstore.Open(ctx, chstore.Config{Addr: srv.Addr(), Database: db, Cluster: cluster,
			QuorumTimeout: 5 * time.Second, DialTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	loader, reader := openOn(replicas[0]), openOn(replicas[1])
	if err := loader.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// ON CLUSTER made every table on both replicas, replicated.
	for i, s := range []*chstore.Store{loader, reader} {
		engines, err := chstore.TableEngines(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		for _, table := range []string{"observations", "commits", "jobs", "rejects", "schema_migrations"} {
			if engines[table] != "ReplicatedReplacingMergeTree" {
				t.Errorf("replica %d: %s's engine is %q, want ReplicatedReplacingMergeTree", i+1, table, engines[table])
			}
		}
		if engines["observations_distributed"] != "Distributed" {
			t.Errorf("replica %d: observations_distributed is %q, want a Distributed table", i+1, engines["observations_distributed"])
		}
		if engines["observations_current"] != "View" {
			t.Errorf("replica %d: observations_current is %q, want a View", i+1, engines["observations_current"])
		}
	}
	migrated := time.Now()

	// Jobs: each rewrites the same keys with its own values, so the last committed one is
	// what observations_current must show; and each adds keys of its own.
	const jobs, rows = 8, 3000
	d0 := obs.MakeDate(2024, 1, 2)
	batch := func(j int) chstore.Batch {
		var os []obs.Observation
		for r := range rows {
			sec := fmt.Sprintf("SEC%04d", r%100)
			if r >= rows/2 {
				sec = fmt.Sprintf("J%d-%04d", j, r%100)
			}
			os = append(os, obs.Observation{Security: sec, Field: "PX_LAST", Date: d0 + obs.Date(r/100),
				Kind: obs.Number, Num: float64(j*1_000_000 + r)})
		}
		return chstore.Batch{JobID: fmt.Sprintf("job%d", j), Program: "gethistory", Version: uint64(j), Cols: obs.ColumnsOf(os)}
	}
	want := map[string]float64{}
	for j := 1; j <= jobs; j++ {
		b := batch(j)
		for i := range b.Cols.Len() {
			o := b.Cols.Row(i)
			want[o.Security+"|"+o.Date.String()] = o.Num
		}
	}

	// The loader: each job's INSERT and then its commit, each retried until it succeeds.
	var failures atomic.Int64
	committed := make(chan int, jobs)
	loadErr := make(chan error, 1)
	go func() {
		retry := func(what string, f func() error) error {
			for {
				err := f()
				if err == nil {
					return nil
				}
				failures.Add(1)
				t.Logf("%s: %v (retrying)", what, err)
				select {
				case <-ctx.Done():
					return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), err)
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
		for j := 1; j <= jobs; j++ {
			b := batch(j)
			if err := retry(fmt.Sprintf("insert job %d", j), func() error {
				_, err := loader.Insert(ctx, []chstore.Batch{b})
				return err
			}); err != nil {
				loadErr <- err
				return
			}
			if err := retry(fmt.Sprintf("commit job %d", j), func() error {
				return loader.Commit(ctx, b.JobID, b.Version, time.Now())
			}); err != nil {
				loadErr <- err
				return
			}
			committed <- j
		}
		loadErr <- nil
	}()

	// Kill the second replica once two jobs are in, keep it down until the loader has been
	// refused (its writes need both replicas), then restart it.
	for range 2 {
		select {
		case <-committed:
		case err := <-loadErr:
			t.Fatalf("loader ended early: %v", err)
		}
	}
	if err := replicas[1].Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for failures.Load() == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("no INSERT failed with a replica down: the writes do not wait for a quorum")
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := replicas[1].Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("replica 2 down for %v; %d refused writes", time.Since(killed).Round(time.Millisecond), failures.Load())
	if err := <-loadErr; err != nil {
		t.Fatal(err)
	}
	loaded := time.Now()

	// Both replicas converge on exactly the expected values.
	for i, s := range []*chstore.Store{loader, reader} {
		var got map[string]float64
		for {
			got = map[string]float64{}
			err := s.Query(ctx, chstore.Filter{}, func(r *chstore.Row) error {
				got[r.Security+"|"+r.Date.String()] = r.Num
				return nil
			})
			if err == nil && equalValues(got, want) {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("replica %d: %d rows, want %d, not converged (last error %v)", i+1, len(got), len(want), err)
			case <-time.After(200 * time.Millisecond):
			}
		}
		// The Distributed table gives the same rows, from whichever replica answers.
		var wantSum float64
		for _, v := range want {
			wantSum += v
		}
		if n, sum, err := chstore.CountSum(ctx, s, "observations_distributed"); err != nil || n != uint64(len(want)) || sum != wantSum {
			t.Errorf("replica %d: observations_distributed has %d rows summing to %v, %v; want %d summing to %v",
				i+1, n, sum, err, len(want), wantSum)
		}
		n, err := chstore.CommitCount(ctx, s)
		if err != nil || n != jobs {
			t.Errorf("replica %d: %d commits, %v; want %d", i+1, n, err, jobs)
		}
	}
	t.Logf("times: start %v, migrate %v, load %v, converge %v; total %v",
		up.Sub(begin).Round(time.Millisecond), migrated.Sub(up).Round(time.Millisecond),
		loaded.Sub(migrated).Round(time.Millisecond), time.Since(loaded).Round(time.Millisecond),
		time.Since(begin).Round(time.Millisecond))
}

func equalValues(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// logTail logs the end of a server's log, for a failed test.
func logTail(t *testing.T, file string) {
	b, err := os.ReadFile(file)
	if err != nil {
		return
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	t.Logf("%s:\n%s", file, b)
}
