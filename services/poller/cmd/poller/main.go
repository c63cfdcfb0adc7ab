// Command poller runs the poller stage: it polls the vendor until each request's output is ready.
package main

import (
	"github.com/marketpipe/marketpipe/services"
	"github.com/marketpipe/marketpipe/services/poller"
)

func main() {
	services.Main(poller.Name)
}
