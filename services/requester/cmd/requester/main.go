// Command requester runs the requester stage: it creates the vendor request of each submitted job.
package main

import (
	"github.com/marketpipe/marketpipe/services"
	"github.com/marketpipe/marketpipe/services/requester"
)

func main() {
	services.Main(requester.Name)
}
