package backfill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
)

// MaxNameLen bounds a backfill's name: its window's job ids (jobspec.BackfillJobID) add at most
// a dozen bytes, within events.MaxJobIDLen.
const MaxNameLen = 100

// ValidName reports whether name can name a backfill: letters, digits, '-' and '_', as a job
// id's prefix and a key-value key.
func ValidName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("backfill name %q: want 1 to %d letters, digits, '-' or '_'", name, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("backfill name %q: byte %d is %q (only letters, digits, '-' and '_')", name, i, c)
		}
	}
	return nil
}

// Request is what a backfill asks for besides its dates, as digests: a job file changed under
// the same backfill name is refused, saying which of these differ.
type Request struct {
	Program       string        `json:"program"`
	Dataset       string        `json:"dataset"`
	SecurityCount int           `json:"security_count"`
	Securities    string        `json:"securities"` // SHA-256 of the list
	FieldCount    int           `json:"field_count"`
	Fields        string        `json:"fields"`  // SHA-256 of the list
	Options       string        `json:"options"` // SHA-256 of the request options
	Deadline      time.Duration `json:"deadline"`
	Strict        bool          `json:"strict,omitempty"`
}

// RequestOf digests spec (its dates ignored) and the job's deadline.
func RequestOf(spec events.Spec, deadline time.Duration) Request {
	digest := func(v any) string {
		b, _ := json.Marshal(v)
		h := sha256.Sum256(b)
		return hex.EncodeToString(h[:])
	}
	return Request{Program: spec.Program, Dataset: spec.Dataset(), SecurityCount: spec.SecurityCount(),
		Securities: digest(spec.Securities), FieldCount: len(spec.Fields), Fields: digest(spec.Fields),
		Options: digest(spec.Options), Deadline: deadline, Strict: spec.Strict}
}

// differences says how now differs from r, "" when it does not.
func (r Request) differences(now Request) string {
	var d []string
	if r.Program != now.Program {
		d = append(d, fmt.Sprintf("program %s then, %s now", r.Program, now.Program))
	}
	if r.Securities != now.Securities {
		d = append(d, fmt.Sprintf("securities (%d then, %d now)", r.SecurityCount, now.SecurityCount))
	}
	if r.Fields != now.Fields {
		d = append(d, fmt.Sprintf("fields (%d then, %d now)", r.FieldCount, now.FieldCount))
	}
	if r.Options != now.Options {
		d = append(d, fmt.Sprintf("request options (stored as %s then, %s now)", r.Dataset, now.Dataset))
	}
	if r.Deadline != now.Deadline {
		d = append(d, fmt.Sprintf("deadline %s then, %s now", r.Deadline, now.Deadline))
	}
	if r.Strict != now.Strict {
		d = append(d, fmt.Sprintf("strict %t then, %t now", r.Strict, now.Strict))
	}
	return strings.Join(d, "; ")
}

// Part is one window of a backfill and what is known of its job.
type Part struct {
	Window
	// Attempt counts the jobs made for the window: the job of attempt n is
	// jobspec.BackfillJobID(name, window, n). A failed or cancelled job is followed by a new
	// attempt when the backfill runs again.
	Attempt int `json:"attempt"`
	// State is the job's state when last seen ("" before its job is submitted), Rows what it
	// loaded, Error why it failed.
	State string `json:"state,omitempty"`
	Rows  int64  `json:"rows,omitempty"`
	Error string `json:"error,omitempty"`
}

// Loaded reports whether the part's job loaded: it is never asked for again.
func (p *Part) Loaded() bool { return p.State == events.Loaded }

// Record is a backfill as kept in events.BackfillsBucket under its name.
type Record struct {
	Name string `json:"name"`
	Job  string `json:"job"`  // the job file's name:
	File string `json:"file"` // its path when the backfill was planned
	From string `json:"from"`
	To   string `json:"to"`
	// MaxPoints is the budget of one request the windows were cut for
	// (VENDOR_MAX_POINTS_PER_REQUEST then); a rerun keeps the plan even if it changed.
	MaxPoints int64     `json:"max_points"`
	Request   Request   `json:"request"`
	Created   time.Time `json:"created"`
	Parts     []Part    `json:"parts"`
}

// JobID is the id of part i's (0-based) current job.
func (r *Record) JobID(i int) string {
	return jobspec.BackfillJobID(r.Name, i+1, max(r.Parts[i].Attempt, 1))
}

// LoadedCount counts the parts loaded, and the rows they loaded.
func (r *Record) LoadedCount() (parts int, rows int64) {
	for i := range r.Parts {
		if r.Parts[i].Loaded() {
			parts++
			rows += r.Parts[i].Rows
		}
	}
	return parts, rows
}

// NewRecord plans a backfill of the job file f from from to to (YYYY-MM-DD, already checked),
// in windows of at most maxPoints data points each.
func NewRecord(name string, f *jobspec.File, spec events.Spec, from, to time.Time, maxPoints int64, now time.Time) (*Record, error) {
	if f.Program != events.GetHistory {
		return nil, fmt.Errorf("%s is a %s job: only gethistory job files can be backfilled", f.Path, f.Program)
	}
	windows, err := Split(spec.SecurityCount(), len(spec.Fields), spec.Periodicity, from, to, maxPoints)
	if err != nil {
		return nil, err
	}
	r := &Record{Name: name, Job: f.Name, File: f.Path, From: from.Format(time.DateOnly), To: to.Format(time.DateOnly),
		MaxPoints: maxPoints, Request: RequestOf(spec, f.Deadline), Created: now.UTC()}
	for _, w := range windows {
		r.Parts = append(r.Parts, Part{Window: w, Attempt: 1})
	}
	return r, nil
}

// Store keeps the records in a key-value bucket (events.BackfillsBucket).
type Store struct{ KV jetstream.KeyValue }

// ErrChanged is wrapped by Open's error for a job file or a range that changed under the
// backfill's name.
var ErrChanged = errors.New("the backfill's request changed")

// Open returns the record of want's name, with its revision: the stored one when there is
// one (its plan kept; a different request is refused with ErrChanged, saying what differs, as
// is a different range), else want, stored.
func (s Store) Open(ctx context.Context, want *Record) (*Record, uint64, error) {
	for {
		have, rev, err := s.Get(ctx, want.Name)
		if err != nil {
			return nil, 0, err
		}
		if have != nil {
			if diff := have.Request.differences(want.Request); diff != "" {
				return nil, 0, fmt.Errorf("%w: backfill %s was planned on %s for another request: %s (give --name for a new backfill, or restore the file)",
					ErrChanged, have.Name, have.Created.Format(time.DateOnly), diff)
			}
			if have.From != want.From || have.To != want.To {
				return nil, 0, fmt.Errorf("%w: backfill %s is of %s to %s, not %s to %s (give another --name for a new backfill)",
					ErrChanged, have.Name, have.From, have.To, want.From, want.To)
			}
			return have, rev, nil
		}
		data, err := encode(want)
		if err != nil {
			return nil, 0, err
		}
		rev, err = s.KV.Create(ctx, want.Name, data)
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // planned meanwhile by another run: use its plan
		}
		if err != nil {
			return nil, 0, fmt.Errorf("record backfill %s in %s: %w", want.Name, events.BackfillsBucket, err)
		}
		return want, rev, nil
	}
}

// Get returns the record called name and its revision; nil when there is none.
func (s Store) Get(ctx context.Context, name string) (*Record, uint64, error) {
	e, err := s.KV.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read backfill %s from %s: %w", name, events.BackfillsBucket, err)
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("backfill %s in %s: %w", name, events.BackfillsBucket, err)
	}
	return &r, e.Revision(), nil
}

// List returns every record, by name.
func (s Store) List(ctx context.Context) ([]*Record, error) {
	keys, err := s.KV.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", events.BackfillsBucket, err)
	}
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	slices.Sort(names)
	var out []*Record
	for _, n := range names {
		r, _, err := s.Get(ctx, n)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// UpdatePart applies change to part i of the record called name, as stored now (another run
// of the same backfill may have written it meanwhile), and stores it. It returns the record
// as stored.
func (s Store) UpdatePart(ctx context.Context, name string, i int, change func(p *Part)) (*Record, error) {
	for {
		r, rev, err := s.Get(ctx, name)
		if err != nil {
			return nil, err
		}
		if r == nil || i >= len(r.Parts) {
			return nil, fmt.Errorf("backfill %s: no window %d in %s (removed meanwhile?)", name, i+1, events.BackfillsBucket)
		}
		before := r.Parts[i]
		change(&r.Parts[i])
		if r.Parts[i] == before {
			return r, nil
		}
		data, err := encode(r)
		if err != nil {
			return nil, err
		}
		_, err = s.KV.Update(ctx, name, data, rev)
		if isWrongRevision(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("record backfill %s window %d in %s: %w", name, i+1, events.BackfillsBucket, err)
		}
		return r, nil
	}
}

func isWrongRevision(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

func encode(r *Record) ([]byte, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode backfill %s: %w", r.Name, err)
	}
	if len(data) > events.MaxPayload-64<<10 {
		return nil, fmt.Errorf("backfill %s: its plan of %d windows takes %d bytes, more than one key-value entry holds", r.Name, len(r.Parts), len(data))
	}
	return data, nil
}
