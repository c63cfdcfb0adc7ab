package events

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// newVersion is the one place a run's version is assigned: the time the run starts, in
// nanoseconds, so a later run of the same keys has a higher version and supersedes an earlier
// one once it is committed.
func newVersion(now time.Time) uint64 { return uint64(now.UnixNano()) }

// NewRun returns the first run (generation 0) of a job submitted at now, in state Submitted.
func NewRun(id string, spec Spec, now time.Time, deadline time.Duration) Job {
	now = now.UTC()
	j := Job{ID: id, Spec: spec, Version: newVersion(now), Deadline: now.Add(deadline)}
	return j.Advance(Submitted, now)
}

// Rerun returns a new run of the job whose stored input event of a stage is j: generation
// latestGen+1, a new version, the outcome of the earlier run cleared, in state input (the event
// the stage consumes). from is the stage that reprocesses it: from "requester" a new vendor
// request is made, so the earlier request's identifiers are dropped.
func (j Job) Rerun(latestGen int, from, input string, now time.Time) Job {
	now = now.UTC()
	j.Generation = latestGen + 1
	j.Version = newVersion(now)
	j.Error = ""
	j.Warnings = nil
	j.LoadedAt, j.FailedAt, j.TransformedAt = time.Time{}, time.Time{}, time.Time{}
	j.Batches, j.RowsParsed, j.RowsLoaded, j.RowsRejected = 0, 0, 0, 0
	if j.Deadline.Before(now) {
		j.Deadline = now.Add(j.Deadline.Sub(j.SubmittedAt))
	}
	if from == "requester" {
		j.VendorRequestID, j.ResponseKey, j.ResponseDigest, j.ResponseSize = "", "", "", 0
		j.Parts = nil // planned again, as requests of the new generation
	}
	return j.Advance(input, now)
}

// Outcomes of a finished run, as the jobs table and `marketpipe status` show them.
const (
	OutcomeLoaded         = "loaded"
	OutcomeLoadedWarnings = "loaded with warnings"
	OutcomeFailed         = "failed"
)

// Outcome returns the run's state for people: its event name, except that a loaded run whose
// file carried warnings is "loaded with warnings".
func (j *Job) Outcome() string {
	if j.State == Loaded && !j.Warnings.Empty() {
		return OutcomeLoadedWarnings
	}
	return j.State
}

// StateFromOutcome is Outcome's inverse: the event name of a state the jobs table shows.
func StateFromOutcome(outcome string) string {
	if outcome == OutcomeLoadedWarnings {
		return Loaded
	}
	return outcome
}

// Warnings are what a reply file said was wrong with some of the data it was asked for. A run
// with warnings still loads, unless its job is strict (Spec.Strict), when it fails instead.
type Warnings struct {
	// UnknownFields are the fields the vendor marked FLD UNKNOWN, sorted.
	UnknownFields []string `json:"unknown_fields,omitempty"`
	// ReturnCodes counts the securities answered with a non-zero return code, by code
	// ("RC=10": 3).
	ReturnCodes map[string]int64 `json:"return_codes,omitempty"`
	// RejectedLines counts the lines of the file that could not be read (the rejects table
	// holds them).
	RejectedLines int64 `json:"rejected_lines,omitempty"`
}

// Empty reports whether there is nothing to warn about; a nil Warnings is empty.
func (w *Warnings) Empty() bool {
	return w == nil || len(w.UnknownFields) == 0 && len(w.ReturnCodes) == 0 && w.RejectedLines == 0
}

// Add merges o into w: the union of the unknown fields, the sums of the counts.
func (w *Warnings) Add(o *Warnings) {
	if o.Empty() {
		return
	}
	for _, f := range o.UnknownFields {
		if !slices.Contains(w.UnknownFields, f) {
			w.UnknownFields = append(w.UnknownFields, f)
		}
	}
	slices.Sort(w.UnknownFields)
	for code, n := range o.ReturnCodes {
		if w.ReturnCodes == nil {
			w.ReturnCodes = map[string]int64{}
		}
		w.ReturnCodes[code] += n
	}
	w.RejectedLines += o.RejectedLines
}

// OrNil returns w, or nil when it is empty, so that an event without warnings carries none.
func (w *Warnings) OrNil() *Warnings {
	if w.Empty() {
		return nil
	}
	return w
}

// String says what the warnings count, for people: "2 unknown fields (FOO, BAR); 3 securities
// with return codes (RC=10: 2, RC=9: 1); 5 rejected lines". Empty warnings give "".
func (w *Warnings) String() string {
	if w.Empty() {
		return ""
	}
	var parts []string
	if n := len(w.UnknownFields); n > 0 {
		parts = append(parts, fmt.Sprintf("%d unknown %s (%s)", n, plural(n, "field"), strings.Join(w.UnknownFields, ", ")))
	}
	if len(w.ReturnCodes) > 0 {
		var total int64
		var codes []string
		for _, code := range slices.Sorted(maps.Keys(w.ReturnCodes)) {
			total += w.ReturnCodes[code]
			codes = append(codes, fmt.Sprintf("%s: %d", code, w.ReturnCodes[code]))
		}
		parts = append(parts, fmt.Sprintf("%d %s with return codes (%s)", total, plural(int(total), "security"), strings.Join(codes, ", ")))
	}
	if w.RejectedLines > 0 {
		parts = append(parts, fmt.Sprintf("%d rejected %s", w.RejectedLines, plural(int(w.RejectedLines), "line")))
	}
	return strings.Join(parts, "; ")
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	if strings.HasSuffix(word, "y") {
		return word[:len(word)-1] + "ies"
	}
	return word + "s"
}
