// Command transformer runs the transformer stage: it turns collected reply files into row batches.
package main

import (
	"github.com/marketpipe/marketpipe/services"
	"github.com/marketpipe/marketpipe/services/transformer"
)

func main() {
	services.Main(transformer.Name)
}
