// Command mpsvc runs one marketpipe stage exactly as its own main does (service.Run with the
// stage's Build, the environment and the flags), optionally under a CPU profile, for the
// benchmark harness (bench/cmd/mpbench):
//
//	mpsvc <requester|poller|collector|transformer|loader> [service flags]
//
// With MPBENCH_CPUPROFILE=<file> set, the process writes a pprof CPU profile of its whole life
// to that file when it stops (SIGTERM or SIGINT). With MPBENCH_HEAPPROFILE=<file>, it writes a
// heap profile there each time the heap in use has grown by a quarter over the last one
// written, so the file holds the heap near its peak.
//
//	mpsvc nats <store dir> <port>
//
// runs a JetStream-enabled NATS server on 127.0.0.1:<port> until SIGTERM (pkg/natstest's
// settings), so that the broker has a process of its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/services"
)

// lookupService returns the pipeline service called name (services.All).
func lookupService(name string) (services.Service, bool) {
	for _, s := range services.All {
		if s.Name == name {
			return s, true
		}
	}
	return services.Service{}, false
}

func main() {
	if _, ok := lookupService(safeArg(1)); len(os.Args) < 2 || (!ok && os.Args[1] != "nats") {
		fmt.Fprintln(os.Stderr, "usage: mpsvc <requester|poller|collector|transformer|loader> [flags]")
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "nats" && len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: mpsvc nats <dir> <port>")
		os.Exit(2)
	}
	if path := os.Getenv("MPBENCH_HEAPPROFILE"); path != "" {
		go heapProfiles(path)
	}
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
	if name == "nats" {
		code := runNATS(os.Args[2], os.Args[3])
		pprof.StopCPUProfile()
		os.Exit(code)
	}
	svc, _ := lookupService(name)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := service.Run(ctx, name, name+" (benchmark wrapper)", os.Args[2:], config.OS, os.Stderr, svc.Build, svc.Own()...)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// heapProfiles writes a heap profile to path whenever the heap in use exceeds by 25% the size
// at the last profile written.
func heapProfiles(path string) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var last uint64 = 16 << 20
	for {
		time.Sleep(20 * time.Millisecond)
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		if v := sample[0].Value.Uint64(); v > last+last/4 {
			last = v
			f, err := os.Create(path + ".tmp")
			if err != nil {
				return
			}
			err = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
			if err == nil {
				os.Rename(path+".tmp", path)
			}
		}
	}
}

// runNATS serves NATS with JetStream in dir on 127.0.0.1:port until SIGTERM or SIGINT.
func runNATS(dir, port string) int {
	p, err := strconv.Atoi(port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mpsvc nats: port %q: %v\n", port, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s, err := natstest.Run(dir, p)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mpsvc nats: %v\n", err)
		return 1
	}
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return 0
}

// safeArg returns os.Args[i], or "" when there is none.
func safeArg(i int) string {
	if len(os.Args) > i {
		return os.Args[i]
	}
	return ""
}
