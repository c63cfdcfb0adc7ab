package chstore_test

import (
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/chstore"
)

// TestClusterDDL checks what Migrate sends under CLICKHOUSE_CLUSTER: every statement ON
// CLUSTER, every table replicated at its own ZooKeeper path with its version column kept.
// (TestReplicatedLoad runs them on two servers.)
func TestClusterDDL(t *testing.T) {
	stmts := chstore.ClusterDDL("mp", "md")
	want := map[string]string{
		"observations": "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/md/observations', '{replica}')\n",
		"jobs":         "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/md/jobs', '{replica}', updated)\n",
		"rejects":      "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/md/rejects', '{replica}')\n",
		"commits":      "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/md/commits', '{replica}')\n",
	}
	seen := 0
	for _, s := range stmts {
		head, _, _ := strings.Cut(s, "\n")
		if !strings.Contains(head, " ON CLUSTER `mp`") {
			t.Errorf("not ON CLUSTER: %s", head)
		}
		if strings.Contains(s, "ENGINE = ReplacingMergeTree") || strings.Contains(s, "{db}") {
			t.Errorf("not replicated, or {db} left: %s", s)
		}
		for table, engine := range want {
			if strings.HasPrefix(s, "CREATE TABLE IF NOT EXISTS `md`."+table+" ON CLUSTER `mp` (") {
				seen++
				if !strings.Contains(s, "ENGINE = "+engine) {
					t.Errorf("%s: want ENGINE = %s in\n%s", table, engine, s)
				}
			}
		}
	}
	if seen != len(want) {
		t.Errorf("%d of the %d tables found in\n%s", seen, len(want), strings.Join(stmts, "\n"))
	}
	if last := stmts[len(stmts)-1]; last != "CREATE TABLE IF NOT EXISTS `md`.observations_distributed ON CLUSTER `mp` AS `md`.observations_current ENGINE = Distributed(mp, md, observations_current)" {
		t.Errorf("distributed table: %s", last)
	}
}
