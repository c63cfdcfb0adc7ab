package chstore

import (
	"context"
	"fmt"
	"time"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// FieldStat summarizes one field's loaded observations of a job.
type FieldStat struct {
	Field        string `json:"field"` // "" for return-code records
	Observations uint64 `json:"observations"`
	Securities   uint64 `json:"securities"`
	FirstDate    string `json:"first_date"`
	LastDate     string `json:"last_date"`
	Numeric      uint64 `json:"numeric"` // observations with a numeric value
	Flagged      uint64 `json:"flagged"` // observations carrying a marker or return code
}

// FieldSummary returns, per field, what one run of a job (its version) stored in observations,
// each row once (FINAL collapses a batch inserted twice; version is in the key, so the filter
// may run before it). Readers see these rows once the run is committed.
func (s *Store) FieldSummary(ctx context.Context, jobID string, version uint64) ([]FieldStat, error) {
	rows, err := s.conn.Query(ctx, "SELECT field, count(), uniqExact(security), min(date), max(date), "+
		"countIf(value_kind = ?), countIf(flag != '') FROM "+s.table("observations")+
		" FINAL WHERE job_id = ? AND version = ? GROUP BY field ORDER BY field", uint8(obs.Number), jobID, version)
	if err != nil {
		return nil, fmt.Errorf("summarize observations of job %s: %w", jobID, err)
	}
	defer rows.Close()
	var out []FieldStat
	for rows.Next() {
		var f FieldStat
		var first, last time.Time
		if err := rows.Scan(&f.Field, &f.Observations, &f.Securities, &first, &last, &f.Numeric, &f.Flagged); err != nil {
			return nil, fmt.Errorf("summarize observations of job %s: %w", jobID, err)
		}
		f.FirstDate, f.LastDate = first.Format(time.DateOnly), last.Format(time.DateOnly)
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("summarize observations of job %s: %w", jobID, err)
	}
	return out, nil
}
