// Command loader runs the loader stage: it loads row batches into ClickHouse and completes jobs.
package main

import (
	"github.com/marketpipe/marketpipe/services"
	"github.com/marketpipe/marketpipe/services/loader"
)

func main() {
	services.Main(loader.Name)
}
