package chstore_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// The loader's use: open, migrate once at start, insert row batches; a redelivered batch
// collapses into the same rows.
func Example() {
	ctx := context.Background()
	s, err := chstore.Open(ctx, chstore.Config{Addr: "127.0.0.1:9000", Database: "marketpipe", DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	batch := chstore.Batch{JobID: "eod-prices-20260102", Program: "gethistory", Version: 1,
		Cols:    obs.ColumnsOf([]obs.Observation{{Security: "IBM US Equity", Field: "PX_LAST", Date: obs.MakeDate(2026, 1, 2), Kind: obs.Number, Num: 291.5}}),
		Rejects: []obs.Reject{{Line: 17, Raw: "IBM US Equity|x", Reason: "too few fields"}}}
	for range 2 { // a redelivery
		if _, err := s.Insert(ctx, []chstore.Batch{batch}); err != nil {
			log.Fatal(err)
		}
	}
	n, err := s.CountObservations(ctx, true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "observation")
}
