package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chstore"
)

// This file holds what several legs share; each leg is in leg_<name>.go.

// runID makes job ids unique across runs against the same servers.
var runID = strconv.FormatInt(time.Now().Unix()%1_000_000, 10)

// openStore opens the database db, creating the schema, with the INSERTs' compression of the
// run.
func (b *bench) openStore(ctx context.Context, db string) (*chstore.Store, error) {
	st, err := chstore.Open(ctx, chstore.Config{Addr: b.ch.Addr(), Database: db, NoCompression: b.res.CHCompression == "none"})
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// selfProfile starts a CPU profile of this process into <BENCH_PROFILE>/<name>.pprof, if
// profiles are asked for, and returns what stops it.
func (b *bench) selfProfile(name string) (stop func(), err error) {
	if b.profile == "" {
		return func() {}, nil
	}
	f, err := os.Create(filepath.Join(b.profile, name+".pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// selfCPU is the harness's own CPU time: the embedded NATS server and the vendor simulator.
func selfCPU() time.Duration {
	d, _ := cpuTime(os.Getpid())
	return d
}
