// Command collector runs the collector stage: it downloads each ready output into the raw store.
package main

import (
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/services/collector"
)

func main() {
	service.Main(collector.Name, "downloads each ready vendor output into the raw store", collector.Build)
}
