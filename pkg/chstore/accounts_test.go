package chstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chserver"
	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// TestAccounts runs a server with docs/clickhouse-users.xml, the accounts README documents for
// ClickHouse 18.16: the admin migrates, the loader inserts and commits but may not change the
// schema, and the reader reads but may not insert.
func TestAccounts(t *testing.T) {
	bin := chtest.Binary(t)
	doc, err := os.ReadFile("../../docs/clickhouse-users.xml")
	if err != nil {
		t.Fatal(err)
	}
	passwords := map[string]string{"admin": "admin-pw", "loader": "loader-pw", "reader": "reader-pw"}
	users := string(doc)
	for who, pw := range passwords {
		sum := sha256.Sum256([]byte(pw))
		users = strings.ReplaceAll(users, "REPLACE_WITH_SHA256_OF_"+strings.ToUpper(who)+"_PASSWORD", hex.EncodeToString(sum[:]))
	}
	// chserver pings as default to know the server is up: loopback only, no rights here.
	users = strings.Replace(users, "</users>", `<default><password></password><networks><ip>127.0.0.1</ip></networks>
            <profile>marketpipe_reader</profile><quota>default</quota><allow_databases><database>system</database></allow_databases></default>
    </users>`, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := chserver.Start(ctx, chserver.Options{Dir: t.TempDir(), Binary: bin, UsersXML: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	open := func(who string) *chstore.Store {
		t.Helper()
		s, err := chstore.Open(ctx, chstore.Config{Addr: srv.Addr(), Database: "marketpipe",
			User: "marketpipe_" + who, Password: passwords[who], DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("open as %s: %v", who, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	if err := open("admin").Migrate(ctx); err != nil {
		t.Fatalf("migrate as admin: %v", err)
	}
	batch := chstore.Batch{JobID: "acct-1", Program: events.GetHistory, Version: 1,
		Cols: obs.ColumnsOf([]obs.Observation{{Security: "IBM US Equity", Field: "PX_LAST", Date: obs.MakeDate(2026, 1, 2), Kind: obs.Number, Num: 291.5}})}

	loader := open("loader")
	if _, err := loader.Insert(ctx, []chstore.Batch{batch}); err != nil {
		t.Fatalf("loader insert: %v", err)
	}
	if err := loader.Commit(ctx, batch.JobID, batch.Version, time.Now()); err != nil {
		t.Fatalf("loader commit: %v", err)
	}
	if err := loader.RecordJob(ctx, events.Job{ID: "acct-1", State: events.Loaded, Version: 1}, 1); err != nil {
		t.Fatalf("loader records a job: %v", err)
	}
	if err := loader.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "DDL queries are prohibited") {
		t.Errorf("the loader's account ran the migration's DDL: %v, want refused", err)
	}

	reader := open("reader")
	n := 0
	if err := reader.Query(ctx, chstore.Filter{}, func(*chstore.Row) error { n++; return nil }); err != nil {
		t.Fatalf("reader query: %v", err)
	}
	if n != 1 {
		t.Errorf("reader sees %d observations, want 1", n)
	}
	batch.JobID = "acct-2"
	if _, err := reader.Insert(ctx, []chstore.Batch{batch}); err == nil {
		t.Error("the reader's account inserted, want refused")
	} else if !strings.Contains(strings.ToLower(err.Error()), "readonly") {
		t.Errorf("reader insert refused with %v, want a readonly error", err)
	}
}
