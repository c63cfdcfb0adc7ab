package loader

import (
	"context"
	"sync"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chstore"
)

// Inserter writes row batches to ClickHouse in one INSERT.
type Inserter interface {
	Insert(ctx context.Context, batches []chstore.Batch) (int, error)
}

// groupCommit gathers the batches that concurrent handlers hand it into one large columnar
// INSERT (ClickHouse prefers few large inserts to many small ones), and tells every handler
// the outcome of the insert that carried its batch, so each message is acked only once its
// rows are durable.
type groupCommit struct {
	ins     Inserter
	maxRows int           // flush when this many rows wait
	linger  time.Duration // or when the oldest has waited this long
	timeout time.Duration // bound on one INSERT

	mu      sync.Mutex
	pending []pendingBatch
	rows    int
	timer   *time.Timer
}

type pendingBatch struct {
	b    chstore.Batch
	done chan error
}

// Insert queues b and waits for the INSERT that carries it.
func (g *groupCommit) Insert(ctx context.Context, b chstore.Batch) error {
	p := pendingBatch{b: b, done: make(chan error, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, p)
	g.rows += len(b.Obs) + len(b.Rejects)
	if g.rows >= g.maxRows {
		items := g.takeLocked()
		g.mu.Unlock()
		go g.flush(items)
	} else {
		if g.timer == nil {
			g.timer = time.AfterFunc(g.linger, func() {
				g.mu.Lock()
				items := g.takeLocked()
				g.mu.Unlock()
				g.flush(items)
			})
		}
		g.mu.Unlock()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The insert may still succeed; the redelivery then finds the batch in the ledger or
		// inserts the same rows again, which FINAL collapses.
		return ctx.Err()
	}
}

func (g *groupCommit) takeLocked() []pendingBatch {
	items := g.pending
	g.pending, g.rows = nil, 0
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	return items
}

func (g *groupCommit) flush(items []pendingBatch) {
	if len(items) == 0 {
		return
	}
	batches := make([]chstore.Batch, len(items))
	for i, it := range items {
		batches[i] = it.b
	}
	// The insert serves several handlers, so it is bounded by its own timeout, not by the
	// context of whichever handler happened to trigger it.
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	_, err := g.ins.Insert(ctx, batches)
	cancel()
	for _, it := range items {
		it.done <- err
	}
}
