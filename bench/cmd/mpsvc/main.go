// Command mpsvc runs one marketpipe stage exactly as its own main does (service.Run with the
// stage's Build, the environment and the flags), optionally under a CPU profile, for the
// benchmark harness (bench/cmd/mpbench):
//
//	mpsvc <requester|poller|collector|transformer|loader> [service flags]
//
// With MPBENCH_RAW_GET_TIMEOUT=<duration>, reads of the raw object store get a context with
// that deadline: nats.go bounds an object read whose context has no deadline by its default
// API timeout (5s) for the whole object, so larger files fail to read. This applies the fix
// the benchmark recommends for the transformer, without changing it; mpbench uses it only
// after the unchanged stage failed, and says so.
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
//
//	mpsvc chunk <nats url> <raw object> <size> <i> <n> <job id> <program>
//
// transforms chunk i of n of a stored raw file (pkg/chunk) as the transformer would: reads it
// from the raw store, parses it, publishes its row batches on mp.rows.<job id> (sequence
// numbers i<<20 + the chunk's own), prints the observation count and exits. It is a
// prototype of the chunked transformer, to measure what splitting gives.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/chunk"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/stage"
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
	if len(os.Args) == 4 && os.Args[1] == "nats" {
		os.Exit(runNATS(os.Args[2], os.Args[3]))
	}
	if len(os.Args) == 9 && os.Args[1] == "chunk" {
		os.Exit(runChunk(os.Args[2:]))
	}
	if len(os.Args) < 2 || builds[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: mpsvc <requester|poller|collector|transformer|loader> [flags]")
		os.Exit(2)
	}
	name := os.Args[1]
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
	build := builds[name]
	if v := os.Getenv("MPBENCH_RAW_GET_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mpsvc: MPBENCH_RAW_GET_TIMEOUT: %v\n", err)
			os.Exit(2)
		}
		inner := build
		build = func(ctx context.Context, env *service.Env) ([]service.Runner, error) {
			env.Streams.Raw = deadlineStore{ObjectStore: env.Streams.Raw, d: d}
			return inner(ctx, env)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := service.Run(ctx, name, name+" (benchmark wrapper)", os.Args[2:], config.OS, os.Stderr, build)
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

// deadlineStore gives every Get a context with a deadline, kept until the object is closed.
type deadlineStore struct {
	jetstream.ObjectStore
	d time.Duration
}

func (s deadlineStore) Get(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) (jetstream.ObjectResult, error) {
	ctx, cancel := context.WithTimeout(ctx, s.d)
	r, err := s.ObjectStore.Get(ctx, name, opts...)
	if err != nil {
		cancel()
		return nil, err
	}
	return cancelOnClose{ObjectResult: r, cancel: cancel}, nil
}

type cancelOnClose struct {
	jetstream.ObjectResult
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ObjectResult.Close()
	c.cancel()
	return err
}

func runChunk(args []string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "mpsvc chunk: %v\n", err)
		return 1
	}
	url, key, jobID, program := args[0], args[1], args[5], args[6]
	size, err1 := strconv.ParseInt(args[2], 10, 64)
	i, err2 := strconv.Atoi(args[3])
	n, err3 := strconv.Atoi(args[4])
	if err := errors.Join(err1, err2, err3); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	nc, err := nats.Connect(url)
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	raw, err := js.ObjectStore(ctx, events.RawBucket)
	if err != nil {
		return fail(err)
	}
	obj, err := raw.Get(ctx, key) // ctx has a deadline: the whole object may take longer than 5s
	if err != nil {
		return fail(err)
	}
	defer obj.Close()
	cr, err := chunk.Open(obj, size, i, n)
	if err != nil {
		return fail(err)
	}
	rd, err := dlformat.NewReader(cr)
	if err != nil {
		return fail(err)
	}
	b := rowcodec.NewBuilder(jobID, program, 0, uint64(time.Now().UnixNano()))
	async := stage.NewPublisher(js).Async()
	var rows int64
	flush := func() error {
		batch, data, err := b.Flush()
		if err != nil || batch == nil {
			return err
		}
		return async.Publish(ctx, events.RowsSubject(jobID), natsx.LedgerKey(jobID, 0, i<<20+batch.Seq), data, nil)
	}
	for {
		o, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail(err)
		}
		if err := b.Add(o); err != nil {
			return fail(err)
		}
		rows++
		for b.Full() {
			if err := flush(); err != nil {
				return fail(err)
			}
		}
	}
	for b.Len() > 0 {
		if err := flush(); err != nil {
			return fail(err)
		}
	}
	if err := async.Wait(ctx); err != nil {
		return fail(err)
	}
	fmt.Println(rows)
	return 0
}
