//go:build linux

package tests

import (
	"context"
	"fmt"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/chserver"
	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/tlstest"
	"github.com/marketpipe/marketpipe/pkg/zkserver"
	"github.com/marketpipe/marketpipe/services"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// TestReplicatedClickHouse runs the pipeline as a user runs it on replicated ClickHouse:
// ZooKeeper and two ClickHouse 18.16 servers, replicas of one shard; `marketpipe migrate` (the
// CLI) with CLICKHOUSE_CLUSTER; the five stages as processes with a loader on each replica; jobs
// submitted with the CLI. One replica is killed with SIGKILL while jobs load, more jobs are
// submitted while it is down, and it is started again. Every job must load, and each replica's
// observations_current, and observations_distributed read on each, must hold exactly the
// simulator's data.
func TestReplicatedClickHouse(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper, two ClickHouse servers and the pipeline; not with -short")
	}
	chBin := chtest.Binary(t)
	if _, err := zkserver.Find(); err != nil {
		if chtest.Required() {
			t.Fatalf("ZooKeeper is required here (CI=true or MARKETPIPE_REQUIRE_CLICKHOUSE=1) but %v", err)
		}
		t.Skipf("SKIPPED: %v", err)
	}
	bin(t, "marketpipe") // builds every binary before the clock starts
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	begin := time.Now()

	zk, err := zkserver.Start(ctx, filepath.Join(t.TempDir(), "zk"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(zk.Stop)
	const cluster = "marketpipe"
	var addrs []string
	for range 2 {
		port, err := chserver.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", port))
	}
	replicas := make([]*chserver.Server, len(addrs))
	for i, addr := range addrs {
		var port int
		fmt.Sscanf(addr, "127.0.0.1:%d", &port)
		srv, err := chserver.Start(ctx, chserver.Options{Dir: filepath.Join(t.TempDir(), fmt.Sprintf("ch%d", i+1)),
			Binary: chBin, TCPPort: port, Replication: &chserver.Replication{
				Cluster: cluster, Shards: [][]string{addrs}, Shard: "01", Replica: fmt.Sprintf("ch%d", i+1),
				ZooKeeper: []string{zk.Addr()}, SessionTimeout: 3 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = srv.Stop()
			if t.Failed() {
				for _, f := range []string{"server.err.log", "stderr.log"} {
					data, _ := os.ReadFile(filepath.Join(srv.Dir(), "log", f))
					t.Logf("---- ch%d %s ----\n%s", i+1, f, tail(data, 3000))
				}
			}
		})
		replicas[i] = srv
	}

	// NATS with `marketpipe auth init`'s credentials and mutual TLS, as startPipeline runs it.
	natsDir := t.TempDir()
	if _, err := auth.Init(natsDir, services.Identities()); err != nil {
		t.Fatal(err)
	}
	certs := tlstest.New(t, natsDir)
	ns := natstest.StartConf(t, natsDir, "include "+auth.ServerInclude+"\n"+natstest.TLSBlock(certs))
	runDate := obs.MakeDate(2026, 11, 20)
	sim := httptest.NewServer(vendorsim.NewServer(vendorsim.Options{
		Account: vendorsim.DefaultAccount, ReadyAfter: 500 * time.Millisecond, Seed: simSeed, RunDate: runDate.Time(),
	}))
	t.Cleanup(sim.Close)
	const db = "marketpipe"
	env := map[string]string{
		"NATS_URL": ns.ClientURL(), credsDirKey: natsDir, "NATS_CA": certs.CA, "NATS_CERT": certs.ClientCert, "NATS_KEY": certs.ClientKey,
		"CLICKHOUSE_ADDR": replicas[0].Addr(), "CLICKHOUSE_DATABASE": db, "CLICKHOUSE_CLUSTER": cluster,
		"VENDOR_URL": sim.URL + "/eap", "POLL_INTERVAL": "200ms", "HTTP_ADDR": "127.0.0.1:0",
		// A delivery held by a loader whose INSERT waits on a dead replica comes back soon.
		"ACK_WAIT": "10s",
		// Each job's file goes in a few chunk tasks, so both loaders get row batches of every job.
		"COLLECTOR_MARK_BYTES": "65536", "TRANSFORMER_CHUNK_BYTES": "131072",
	}
	up := time.Now()

	// `marketpipe migrate` as the admin, with CLICKHOUSE_CLUSTER: ON CLUSTER, so on both servers.
	migrateStart := time.Now()
	ensureMigrated(t, env)
	migrateTook := time.Since(migrateStart)
	for i, srv := range replicas {
		engines := tableEngines(t, ctx, srv, db)
		for _, table := range []string{"observations", "commits", "jobs", "rejects", "schema_migrations"} {
			if engines[table] != "ReplicatedReplacingMergeTree" {
				t.Errorf("ch%d: %s's engine is %q after migrate, want ReplicatedReplacingMergeTree", i+1, table, engines[table])
			}
		}
		if engines["observations_distributed"] != "Distributed" {
			t.Errorf("ch%d: observations_distributed's engine is %q, want Distributed", i+1, engines["observations_distributed"])
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The stages, a loader on each replica.
	for _, b := range []string{"requester", "poller", "collector", "transformer"} {
		startProc(t, b, b, env)
	}
	for i, srv := range replicas {
		e := maps.Clone(env)
		e["CLICKHOUSE_ADDR"] = srv.Addr()
		startProc(t, fmt.Sprintf("loader-%d", i+1), "loader", e)
	}

	js := connectAs(t, env, auth.AdminName)
	count := func(event string) int {
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		s, err := js.Stream(c, events.JobsStream)
		if err != nil {
			return -1
		}
		info, err := s.Info(c, jetstream.WithSubjectFilter(events.JobFilter(event)))
		if err != nil {
			return -1
		}
		return len(info.State.Subjects)
	}
	rowsOn := func(srv *chserver.Server) uint64 {
		var n uint64
		conn := chConn(t, srv)
		defer conn.Close()
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_ = conn.QueryRow(c, "SELECT count() FROM "+db+".observations").Scan(&n)
		return n
	}

	hj := &historyJobs{t: t, ctx: ctx, env: env, dir: t.TempDir(), name: "replicated", prefix: "R", secs: 10}
	hj.submit(4)
	// Kill the second replica once rows are loading and before every job is loaded.
	waitUntil(t, ctx, "rows in ClickHouse", func() bool { return rowsOn(replicas[0]) > 0 })
	loadedAtKill := count(events.Loaded)
	if loadedAtKill >= len(hj.jobs) {
		t.Fatalf("all %d jobs loaded before the kill: nothing in flight to test", loadedAtKill)
	}
	if err := replicas[1].Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	t.Logf("killed ch2 (SIGKILL) at %s with %d rows on ch1 and %d of %d jobs loaded", killedAt.Sub(begin).Round(100*time.Millisecond),
		rowsOn(replicas[0]), loadedAtKill, len(hj.jobs))
	hj.submit(2) // submitted while it is down
	// Down long enough for ZooKeeper to end its session and the loaders to meet the lost quorum.
	select {
	case <-time.After(8 * time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	loadedWhileDown := count(events.Loaded)
	// A replica killed during an INSERT may keep a part ZooKeeper does not list; when such
	// parts are most of a table's rows (a new table), ClickHouse refuses to start until told
	// to restore: the procedure docs/clickhouse-replication.md gives.
	if err := replicas[1].Restart(ctx); err != nil {
		if !strings.Contains(err.Error(), "doesn't look like the set of parts in ZooKeeper") {
			t.Fatal(err)
		}
		t.Logf("ch2 refused to start with unexpected parts; restarting it with flags/force_restore_data")
		flag := filepath.Join(replicas[1].Dir(), "data", "flags", "force_restore_data")
		if err := os.MkdirAll(filepath.Dir(flag), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(flag, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := replicas[1].Restart(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("restarted ch2 after %v down; %d of %d jobs loaded meanwhile", time.Since(killedAt).Round(100*time.Millisecond),
		loadedWhileDown, len(hj.jobs))
	hj.submit(2) // and while it catches up

	waitUntil(t, ctx, "every job loaded or failed", func() bool { return count(events.Loaded)+count(events.Failed) >= len(hj.jobs) })
	loadedAt := time.Now()
	if n := count(events.Failed); n != 0 {
		for _, j := range hj.jobs {
			if ev, ok, err := natsx.LastJobEvent(ctx, js, j.id); err == nil && ok && ev.State == events.Failed {
				t.Errorf("job %s failed: %s", j.id, ev.Error)
			}
		}
		t.Fatalf("%d jobs failed", n)
	}

	// What the simulator generated for every job (disjoint securities: each key once).
	var want []obs.Observation
	for _, j := range hj.jobs {
		want = append(want, expected(t, j.spec, runDate)...)
	}
	slices.SortFunc(want, cmpKey)
	jobIDs := map[string]bool{}
	for _, j := range hj.jobs {
		jobIDs[j.id] = true
	}

	// Both replicas converge on exactly that, in observations_current and through the
	// Distributed table.
	for i, srv := range replicas {
		store, err := chstore.Open(ctx, chstore.Config{Addr: srv.Addr(), Database: db, Cluster: cluster, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		current := func() ([]obs.Observation, error) {
			var got []obs.Observation
			err := store.Query(ctx, chstore.Filter{}, func(r *chstore.Row) error {
				if !jobIDs[r.JobID] {
					return fmt.Errorf("row %s %s %s of unknown job %q", r.Security, r.Field, r.Date, r.JobID)
				}
				got = append(got, r.Observation)
				return nil
			})
			slices.SortFunc(got, cmpKey)
			return got, err
		}
		distributed := func() ([]obs.Observation, error) { return distributedRows(ctx, srv, db) }
		for _, read := range []struct {
			name string
			rows func() ([]obs.Observation, error)
		}{{"observations_current", current}, {"observations_distributed", distributed}} {
			var got []obs.Observation
			var err error
			for {
				got, err = read.rows()
				if err == nil && sameObservations(got, want) {
					break
				}
				if ctx.Err() != nil {
					t.Errorf("ch%d %s: not the simulator's data within the time limit (last error: %v)", i+1, read.name, err)
					compare(t, got, want)
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			t.Logf("ch%d %s: %d observations, equal to the simulator's, at %s", i+1, read.name, len(got),
				time.Since(begin).Round(100*time.Millisecond))
		}
	}
	for _, d := range listDLQ(t, ctx, env) {
		t.Errorf("dead letter: %+v", d)
	}
	t.Logf("replicated test: %d jobs, %d observations; zookeeper and replicas up in %v, migrate %v, load %v, converge %v; total %v",
		len(hj.jobs), len(want), up.Sub(begin).Round(time.Millisecond), migrateTook.Round(time.Millisecond),
		loadedAt.Sub(up.Add(migrateTook)).Round(100*time.Millisecond), time.Since(loadedAt).Round(100*time.Millisecond),
		time.Since(begin).Round(100*time.Millisecond))
}

// sameObservations reports whether two key-ordered lists are equal.
func sameObservations(a, b []obs.Observation) bool {
	return slices.EqualFunc(a, b, func(x, y obs.Observation) bool { return x.Equal(&y) })
}

// chConn connects to a ClickHouse server as its default user.
func chConn(t *testing.T, srv *chserver.Server) clickhouse.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{srv.Addr()}, DialTimeout: 2 * time.Second, MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// tableEngines returns the engine of each table of database db on srv.
func tableEngines(t *testing.T, ctx context.Context, srv *chserver.Server, db string) map[string]string {
	t.Helper()
	conn := chConn(t, srv)
	defer conn.Close()
	rows, err := conn.Query(ctx, "SELECT name, engine FROM system.tables WHERE database = ?", db)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	engines := map[string]string{}
	for rows.Next() {
		var name, engine string
		if err := rows.Scan(&name, &engine); err != nil {
			t.Fatal(err)
		}
		engines[name] = engine
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return engines
}

// distributedRows reads every observation of observations_distributed on srv, in key order.
func distributedRows(ctx context.Context, srv *chserver.Server, db string) ([]obs.Observation, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{srv.Addr()}, DialTimeout: 2 * time.Second, MaxOpenConns: 1})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, "SELECT security, field, date, value_num, value_str, value_kind, flag FROM "+db+
		".observations_distributed ORDER BY security, field, date")
	if err != nil {
		return nil, fmt.Errorf("read observations_distributed: %w", err)
	}
	defer rows.Close()
	var out []obs.Observation
	for rows.Next() {
		var (
			o    obs.Observation
			date time.Time
			num  *float64
			kind uint8
		)
		if err := rows.Scan(&o.Security, &o.Field, &date, &num, &o.Str, &kind, &o.Flag); err != nil {
			return nil, fmt.Errorf("read observations_distributed: %w", err)
		}
		o.Date, o.Kind = obs.DateOf(date), obs.Kind(kind)
		if num != nil {
			o.Num = *num
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read observations_distributed: %w", err)
	}
	slices.SortFunc(out, cmpKey)
	return out, nil
}
