package rawstore_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
)

// TestReadsOutliveTheLeader reads a stored file slowly from an R3 object store, from its start
// (nats.go's reader) and from an offset (OpenObjectAt's), and shuts down the stream's leader
// after the first 2 MB. Each read must end either with the file's exact bytes or with an
// error, and never wait for bytes much longer than StallTimeout, however long nats.go's reader
// takes to recover.
func TestReadsOutliveTheLeader(t *testing.T) {
	defer func(d time.Duration) { rawstore.StallTimeout = d }(rawstore.StallTimeout)
	rawstore.StallTimeout = 3 * time.Second
	// nats.go's reader gives up a Read after 5 s without a chunk; stallReader looks then.
	const bound = 3*time.Second + 5*time.Second + 2*time.Second
	var b strings.Builder
	for i := 0; b.Len() < 16<<20; i++ {
		fmt.Fprintf(&b, "line %d of the file, %x\n", i, i*7919)
	}
	file := []byte(b.String())
	for _, offset := range []int64{0, 1000} {
		t.Run(fmt.Sprintf("from %d", offset), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			servers := natstest.StartCluster(t, 3)
			_, js := natstest.ConnectURL(t, natstest.ClusterURL(servers))
			st, err := natsx.Setup(ctx, js, natsx.Retention{Replicas: 3})
			if err != nil {
				t.Fatal(err)
			}
			store := &rawstore.Store{Objects: st.Raw, JS: js}
			info, err := store.Put(ctx, "f", rawstore.Meta{}, bytes.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			var r io.ReadCloser
			if offset == 0 {
				r, err = store.Open(ctx, "f")
			} else {
				r, err = store.OpenAt(ctx, info, offset)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			want := file[offset:]
			buf := make([]byte, 256<<10)
			var got []byte
			killed := false
			for {
				start := time.Now()
				n, err := r.Read(buf)
				if took := time.Since(start); took > bound {
					t.Errorf("a Read took %s; want at most %s", took.Round(time.Millisecond), bound)
				}
				got = append(got, buf[:n]...)
				if err == io.EOF {
					if !bytes.Equal(got, want) {
						t.Fatalf("read %d bytes that are not the file's %d", len(got), len(want))
					}
					t.Logf("the whole file read")
					break
				}
				if err != nil {
					t.Logf("the read failed after %d of %d bytes: %v", len(got), len(want), err)
					if !bytes.Equal(got, want[:len(got)]) {
						t.Fatalf("the %d bytes read before the failure are not the file's", len(got))
					}
					break
				}
				if !killed && len(got) > 2<<20 {
					killed = true
					s, err := js.Stream(ctx, natsx.ObjectStream(events.RawBucket))
					if err != nil {
						t.Fatal(err)
					}
					leader := s.CachedInfo().Cluster.Leader
					for _, srv := range servers {
						if srv.Name() == leader {
							srv.Shutdown()
						}
					}
					t.Logf("shut down %s, the leader, after %d bytes", leader, len(got))
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
