// Command mpsvc runs one marketpipe stage exactly as its own main does (service.Run with the
// stage's Build, the environment and the flags), optionally under a CPU profile, for the
// benchmark harness (bench/cmd/mpbench):
//
//	mpsvc <requester|poller|collector|transformer|loader> [service flags]
//
// With MPBENCH_CPUPROFILE=<file> set, the process writes a pprof CPU profile of its whole life
// to that file when it stops (SIGTERM or SIGINT).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/services/collector"
	"github.com/marketpipe/marketpipe/services/loader"
	"github.com/marketpipe/marketpipe/services/poller"
	"github.com/marketpipe/marketpipe/services/requester"
	"github.com/marketpipe/marketpipe/services/transformer"
)

var builds = map[string]service.Build{
	"requester":   requester.Build,
	"poller":      poller.Build,
	"collector":   collector.Build,
	"transformer": transformer.Build,
	"loader":      loader.Build,
}

func main() {
	if len(os.Args) < 2 || builds[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: mpsvc <requester|poller|collector|transformer|loader> [flags]")
		os.Exit(2)
	}
	name := os.Args[1]
	if path := os.Getenv("MPBENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mpsvc: %v\n", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "mpsvc: %v\n", err)
			os.Exit(1)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := service.Run(ctx, name, name+" (benchmark wrapper)", os.Args[2:], config.OS, os.Stderr, builds[name])
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
