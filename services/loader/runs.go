package loader

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/singleflight"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// Reasons a row batch is refused (the label of marketpipe_batches_refused_total).
const (
	refusedSubject = "wrong_subject" // the batch names another job than its subject
	refusedRun     = "unknown_run"   // no such job run in the job events
	refusedVersion = "wrong_version" // the run exists with another version
)

// refused is a batch that no retry can make authentic: it is dead-lettered with the reason.
type refused struct {
	reason string
	err    error
}

func (r *refused) Error() string { return r.err.Error() }

// runVersions gives the version of each run of a job (natsx.RunVersions).
type runVersions func(ctx context.Context, jobID string) (map[int]uint64, error)

// runCache remembers the runs' versions the loader has looked up: a job's batches need one
// look-up per run and replica, not one per batch. A run not yet cached is looked up again, so a
// replay's new run is found.
type runCache struct {
	lookup runVersions
	// flight makes the handlers that miss on one job at once (a job's first batches arrive
	// together) share one look-up.
	flight singleflight.Group

	mu   sync.Mutex
	runs map[string]map[int]uint64 // by job id, then generation
}

// maxCachedJobs bounds the cache; past it, it starts over.
const maxCachedJobs = 4096

// check returns nil if the batch hdr, delivered on subject, is one of a run known from the job
// events, carrying that run's version, on the subject of its job; a *refused if it is not; or
// the look-up's error.
func (c *runCache) check(ctx context.Context, subject string, hdr rowcodec.Header) error {
	if subject != events.RowsSubject(hdr.JobID) {
		return &refused{refusedSubject, fmt.Errorf("row batch of job %q on subject %s", hdr.JobID, subject)}
	}
	c.mu.Lock()
	v, ok := c.runs[hdr.JobID][hdr.Generation]
	c.mu.Unlock()
	if !ok {
		found, err, _ := c.flight.Do(hdr.JobID, func() (any, error) {
			runs, err := c.lookup(ctx, hdr.JobID)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			if c.runs == nil || len(c.runs) >= maxCachedJobs {
				c.runs = map[string]map[int]uint64{}
			}
			c.runs[hdr.JobID] = runs
			c.mu.Unlock()
			return runs, nil
		})
		if err != nil {
			return err
		}
		runs := found.(map[int]uint64)
		if v, ok = runs[hdr.Generation]; !ok {
			return &refused{refusedRun, fmt.Errorf("row batch of job %s generation %d: no such run in the job events (never collected, or no longer kept)",
				hdr.JobID, hdr.Generation)}
		}
	}
	if v != hdr.Version {
		return &refused{refusedVersion, fmt.Errorf("row batch of job %s generation %d has version %d; the run was given %d",
			hdr.JobID, hdr.Generation, hdr.Version, v)}
	}
	return nil
}

// asPermanent turns a refusal into a dead letter, counting it.
func (h *RowsHandler) asPermanent(r *refused) error {
	if h.Refused != nil {
		h.Refused(r.reason)
	}
	return stage.Permanent(fmt.Errorf("refused: %w", r))
}
