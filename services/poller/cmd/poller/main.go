// Command poller runs the poller stage: it polls the vendor until each request's output is ready.
package main

import (
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/services/poller"
)

func main() {
	service.Main(poller.Name, "polls the vendor until each request's output is ready (POLL_INTERVAL)", poller.Build)
}
