// Command transformer runs the transformer stage: it turns collected reply files into row batches.
package main

import (
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/services/transformer"
)

func main() {
	service.Main(transformer.Name, "turns collected reply files into row batches", transformer.Build)
}
