package coverage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/marketpipe/marketpipe/pkg/events"
)

// KV is the key-value bucket events.CoverageBucket as a Store uses it.
type KV interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

// Record is one key's value: what committed runs of Dataset loaded for Security. The names are
// kept beside their hashes (Key) so the value reads on its own and a collision is caught.
type Record struct {
	Dataset  string  `json:"dataset"`
	Security string  `json:"security"`
	Fields   Covered `json:"fields"`
}

// Key is the key of a dataset's security: both hashed, since datasets and identifiers hold
// characters a key may not ("gethistory[currency=EUR]", "IBM US Equity"). The dataset's hash
// comes first, so one dataset's keys share a prefix.
func Key(dataset, security string) string {
	d := sha256.Sum256([]byte(dataset))
	s := sha256.Sum256([]byte(security))
	return hex.EncodeToString(d[:8]) + "." + hex.EncodeToString(s[:16])
}

// Parallel is how many keys a Store reads or writes at once: a universe of 100,000 securities
// is as many keys, which one at a time would take minutes.
const Parallel = 64

// Store reads and extends the coverage in the bucket.
type Store struct{ KV KV }

// Read returns the coverage of each of securities in dataset; a security no committed run
// loaded is not in the result.
func (s Store) Read(ctx context.Context, dataset string, securities []string) (map[string]Covered, error) {
	recs := make([]*Record, len(securities))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(Parallel)
	for i, sec := range securities {
		g.Go(func() error {
			rec, _, err := s.get(gctx, dataset, sec)
			recs[i] = rec
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make(map[string]Covered, len(securities))
	for i, rec := range recs {
		if rec != nil {
			out[securities[i]] = rec.Fields
		}
	}
	return out, nil
}

// Add records that a committed run of dataset loaded fields of securities for the dates of r.
// It is idempotent (adding what a key holds writes nothing) and safe from several loaders at
// once: each key is updated at the revision it was read at, and read again when another
// writer got there first.
func (s Store) Add(ctx context.Context, dataset string, securities, fields []string, r Range) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(Parallel)
	for _, sec := range securities {
		g.Go(func() error { return s.add(gctx, dataset, sec, fields, r) })
	}
	return g.Wait()
}

// maxConflicts bounds the attempts at one key that other writers keep changing.
const maxConflicts = 100

func (s Store) add(ctx context.Context, dataset, security string, fields []string, r Range) error {
	key := Key(dataset, security)
	for range maxConflicts {
		rec, rev, err := s.get(ctx, dataset, security)
		if err != nil {
			return err
		}
		next := Record{Dataset: dataset, Security: security, Fields: Covered{}}
		changed := rec == nil
		if rec != nil {
			maps.Copy(next.Fields, rec.Fields)
		}
		for _, f := range fields {
			if !next.Fields[f].Contains(r) {
				next.Fields[f] = next.Fields[f].Add(r)
				changed = true
			}
		}
		if !changed {
			return nil
		}
		b, err := json.Marshal(next)
		if err != nil {
			return fmt.Errorf("coverage of %s in %s: %w", security, dataset, err)
		}
		if rec == nil {
			_, err = s.KV.Create(ctx, key, b)
		} else {
			_, err = s.KV.Update(ctx, key, b, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("record coverage of %s in %s (%s %s): %w", security, dataset, events.CoverageBucket, key, err)
		}
		// Another writer changed the key since it was read: read it again.
	}
	return fmt.Errorf("record coverage of %s in %s (%s %s): %d conflicting writes in a row", security, dataset,
		events.CoverageBucket, key, maxConflicts)
}

// get returns a security's record and its revision; nil when it has none.
func (s Store) get(ctx context.Context, dataset, security string) (*Record, uint64, error) {
	key := Key(dataset, security)
	e, err := s.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read coverage of %s in %s (%s %s): %w", security, dataset, events.CoverageBucket, key, err)
	}
	var rec Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, 0, fmt.Errorf("read coverage of %s in %s (%s %s): %w", security, dataset, events.CoverageBucket, key, err)
	}
	if rec.Dataset != dataset || rec.Security != security {
		return nil, 0, fmt.Errorf("coverage key %s of %s in %s holds %s in %s: a hash collision", key, security, dataset,
			rec.Security, rec.Dataset)
	}
	return &rec, e.Revision(), nil
}
