// Command loader runs the loader stage: it loads row batches into ClickHouse and completes jobs.
package main

import (
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/services/loader"
)

func main() {
	service.Main(loader.Name, "loads row batches into ClickHouse, completes jobs and keeps the jobs table", loader.Build)
}
