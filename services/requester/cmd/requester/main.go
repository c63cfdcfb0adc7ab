// Command requester runs the requester stage: it creates the vendor request of each submitted job.
package main

import (
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/services/requester"
)

func main() {
	service.Main(requester.Name, "creates the vendor request of each submitted job", requester.Build)
}
