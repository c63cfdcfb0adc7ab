//go:build unix

package chserver_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/marketpipe/marketpipe/pkg/chserver"
)

// What `marketpipe dev` does: use the configured server if one answers, else start one.
func Example() {
	ctx := context.Background()
	addr := "127.0.0.1:9000"
	if err := chserver.Ping(ctx, addr); err != nil {
		srv, err := chserver.Start(ctx, chserver.Options{Dir: os.ExpandEnv("$HOME/.marketpipe/clickhouse"), Stderr: os.Stderr})
		if err != nil {
			log.Fatal(err)
		}
		defer srv.Stop()
		addr = srv.Addr()
	}
	fmt.Println("ClickHouse at", addr)
}
