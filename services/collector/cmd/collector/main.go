// Command collector runs the collector stage: it downloads each ready output into the raw store.
package main

import (
	"github.com/marketpipe/marketpipe/services"
	"github.com/marketpipe/marketpipe/services/collector"
)

func main() {
	services.Main(collector.Name)
}
