package chstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
)

const jobColumns = "id, name, program, generation, state, spec, " +
	"submitted_at, requested_at, ready_at, collected_at, transformed_at, loaded_at, failed_at, deadline, " +
	"vendor_request_id, vendor_account, response_key, file_key, file_sha256, file_size, polls, " +
	"batches, rows_parsed, rows_loaded, rows_rejected, error, trace_id, version, updated"

// jobColumnsNow are the jobs table's columns today: jobColumns (schema 1's), the warnings
// (schema 2), schema 3's and schema 4's.
const jobColumnsNow = jobColumns + ", warnings, schedule, scheduled_for, cancelled_at, cancelled_by, points_requested"

// RecordJob writes the whole current state of a job run (one generation of the job). seq
// orders the writes of one run (use the job event's stream sequence): the row with the highest
// seq is the run's state, whatever order the writes arrive in, and writing the same (job, seq)
// twice is harmless. The state column holds the run's Outcome ("loaded with warnings").
//
// Timestamps are stored to the second (DateTime); the zero time is stored as 1970-01-01
// 00:00:00 and read back as the zero time.
func (s *Store) RecordJob(ctx context.Context, j events.Job, seq uint64) error {
	spec, err := json.Marshal(j.Spec)
	if err != nil {
		return fmt.Errorf("record job %s: encode spec: %w", j.ID, err)
	}
	var warnings []byte
	if !j.Warnings.Empty() {
		if warnings, err = json.Marshal(j.Warnings); err != nil {
			return fmt.Errorf("record job %s: encode warnings: %w", j.ID, err)
		}
	}
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table("jobs")+" ("+jobColumnsNow+")")
	if err != nil {
		return fmt.Errorf("record job %s: %w", j.ID, err)
	}
	defer batch.Close()
	err = batch.Append(j.ID, j.Spec.Name, j.Spec.Program, int64(j.Generation), j.Outcome(), string(spec),
		toDateTime(j.SubmittedAt), toDateTime(j.RequestedAt), toDateTime(j.ReadyAt), toDateTime(j.CollectedAt),
		toDateTime(j.TransformedAt), toDateTime(j.LoadedAt), toDateTime(j.FailedAt), toDateTime(j.Deadline),
		j.VendorRequestID, j.VendorAccount, j.ResponseKey, j.FileKey, j.FileSHA256, j.FileSize, int64(j.Polls),
		int64(j.Batches), j.RowsParsed, j.RowsLoaded, j.RowsRejected, j.Error, j.TraceID, j.Version, seq,
		string(warnings), j.Schedule, toDateTime(j.ScheduledFor), toDateTime(j.CancelledAt), j.CancelledBy, j.PointsRequested)
	if err != nil {
		batch.Abort()
		return fmt.Errorf("record job %s: %w", j.ID, err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("record job %s: %w", j.ID, err)
	}
	return nil
}

// Job returns the current state of a job's latest run; false if the job is unknown.
func (s *Store) Job(ctx context.Context, id string) (events.Job, bool, error) {
	jobs, err := s.queryJobs(ctx, "SELECT "+jobColumnsNow+" FROM "+s.table("jobs")+
		" FINAL WHERE id = ? ORDER BY generation DESC LIMIT 1", id)
	if err != nil {
		return events.Job{}, false, fmt.Errorf("read job %s: %w", id, err)
	}
	if len(jobs) == 0 {
		return events.Job{}, false, nil
	}
	return jobs[0], true, nil
}

// LatestJobNamed returns the latest run of the most recently submitted job of that name (the
// name: of its job file); false if there is none.
func (s *Store) LatestJobNamed(ctx context.Context, name string) (events.Job, bool, error) {
	jobs, err := s.queryJobs(ctx, "SELECT "+jobColumnsNow+" FROM "+s.table("jobs")+
		" FINAL WHERE name = ? ORDER BY submitted_at DESC, id DESC, generation DESC LIMIT 1", name)
	if err != nil {
		return events.Job{}, false, fmt.Errorf("read jobs named %s: %w", name, err)
	}
	if len(jobs) == 0 {
		return events.Job{}, false, nil
	}
	return jobs[0], true, nil
}

// JobRuns returns the state of every run of a job, oldest first.
func (s *Store) JobRuns(ctx context.Context, id string) ([]events.Job, error) {
	jobs, err := s.queryJobs(ctx, "SELECT "+jobColumnsNow+" FROM "+s.table("jobs")+
		" FINAL WHERE id = ? ORDER BY generation", id)
	if err != nil {
		return nil, fmt.Errorf("read runs of job %s: %w", id, err)
	}
	return jobs, nil
}

// RecentJobs returns the current state of the latest run of the limit most recently submitted
// jobs, newest first.
func (s *Store) RecentJobs(ctx context.Context, limit int) ([]events.Job, error) {
	if limit <= 0 {
		return nil, nil
	}
	jobs, err := s.queryJobs(ctx, "SELECT "+jobColumnsNow+" FROM "+s.table("jobs")+
		" FINAL ORDER BY submitted_at DESC, id DESC, generation DESC LIMIT 1 BY id LIMIT ?", limit)
	if err != nil {
		return nil, fmt.Errorf("read recent jobs: %w", err)
	}
	return jobs, nil
}

func (s *Store) queryJobs(ctx context.Context, query string, args ...any) ([]events.Job, error) {
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []events.Job
	for rows.Next() {
		var (
			j                                      events.Job
			name, program, spec                    string
			generation, polls, batches             int64
			sub, req, ready, coll, trans, load, fl time.Time
			deadline                               time.Time
			updated                                uint64
			warnings                               string
			scheduledFor, cancelledAt              time.Time
		)
		err := rows.Scan(&j.ID, &name, &program, &generation, &j.State, &spec,
			&sub, &req, &ready, &coll, &trans, &load, &fl, &deadline,
			&j.VendorRequestID, &j.VendorAccount, &j.ResponseKey, &j.FileKey, &j.FileSHA256, &j.FileSize, &polls,
			&batches, &j.RowsParsed, &j.RowsLoaded, &j.RowsRejected, &j.Error, &j.TraceID, &j.Version, &updated,
			&warnings, &j.Schedule, &scheduledFor, &cancelledAt, &j.CancelledBy, &j.PointsRequested)
		if err != nil {
			return nil, err
		}
		if spec != "" {
			if err := json.Unmarshal([]byte(spec), &j.Spec); err != nil {
				return nil, fmt.Errorf("job %s: decode spec: %w", j.ID, err)
			}
		}
		if warnings != "" {
			j.Warnings = new(events.Warnings)
			if err := json.Unmarshal([]byte(warnings), j.Warnings); err != nil {
				return nil, fmt.Errorf("job %s: decode warnings: %w", j.ID, err)
			}
		}
		j.State = events.StateFromOutcome(j.State)
		// The columns are the source of truth for what they hold (and what operators query).
		j.Spec.Name, j.Spec.Program = name, program
		j.Generation, j.Polls, j.Batches = int(generation), int(polls), int(batches)
		j.SubmittedAt, j.RequestedAt, j.ReadyAt = fromDateTime(sub), fromDateTime(req), fromDateTime(ready)
		j.CollectedAt, j.TransformedAt, j.LoadedAt = fromDateTime(coll), fromDateTime(trans), fromDateTime(load)
		j.FailedAt, j.Deadline = fromDateTime(fl), fromDateTime(deadline)
		j.ScheduledFor, j.CancelledAt = fromDateTime(scheduledFor), fromDateTime(cancelledAt)
		out = append(out, j)
	}
	return out, rows.Err()
}

// epoch is what a DateTime column holds for "no time".
var epoch = time.Unix(0, 0).UTC()

// toDateTime maps a time to what DateTime can hold: the zero time (and anything before 1970)
// to the epoch, others to the second, in UTC.
func toDateTime(t time.Time) time.Time {
	if t.IsZero() || t.Before(epoch) {
		return epoch
	}
	return t.UTC().Truncate(time.Second)
}

// fromDateTime reverses toDateTime: the epoch is the zero time; times come back in UTC
// whatever the server's time zone.
func fromDateTime(t time.Time) time.Time {
	if t.Unix() <= 0 {
		return time.Time{}
	}
	return t.UTC()
}
