// Package events defines the job events that connect the five stages, the subjects they are
// published on and the streams that keep them.
//
// A job event carries the whole state of one job run so far: each stage copies the event it
// consumed, adds what it did and publishes the result under the next event name. The latest
// event of a job is therefore its current state, which is what the jobs table records.
//
// Subjects:
//
//	mp.job.<job id>.<event>   job events (JSON, small, readable with the nats CLI)   stream MP_JOBS
//	mp.rows.<job id>          row batches (binary, columnar, compressed)              stream MP_ROWS
//	mp.chunk.<job id>         chunk tasks: one part of a large file to transform      stream MP_CHUNKS
//	mp.dlq.<stage>            dead-letter records                                     stream MP_DLQ
//	mp.schedule.timer.<name>  a schedule, fired by the NATS server (message schedules) stream MP_SCHEDULES
//	mp.schedule.fire.<name>   its firings: each becomes one job                       stream MP_SCHEDULES
//	mp.schedule.purge.<name>  requests to remove a schedule's message (pause, delete) stream MP_SCHEDULES
package events

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"
)

// Event names, in pipeline order.
const (
	Submitted   = "submitted"   // by the CLI → requester
	Requested   = "requested"   // by the requester → poller
	Ready       = "ready"       // by the poller → collector
	Collected   = "collected"   // by the collector → transformer
	Transformed = "transformed" // by the transformer → loader (completion)
	Loaded      = "loaded"      // by the loader: the run is committed, its rows visible
	Failed      = "failed"      // by any stage: the job ended with Error
	Cancelled   = "cancelled"   // by `marketpipe cancel`: the job ended; its rows never become visible
)

// Stream and subject names.
const (
	JobsStream    = "MP_JOBS"
	RowsStream    = "MP_ROWS"
	DLQStream     = "MP_DLQ"
	ChunksStream  = "MP_CHUNKS"
	JobsSubjects  = "mp.job.>"
	RowsSubjects  = "mp.rows.>"
	DLQSubjects   = "mp.dlq.>"
	ChunkSubjects = "mp.chunk.>"
	RawBucket     = "mp_raw"    // object store of downloaded reply files
	LedgerBucket  = "mp_ledger" // KV: row batches already loaded, per job
	ChunksBucket  = "mp_chunks" // KV: what each transformed chunk of a job run published
	SpecsBucket   = "mp_specs"  // object store: securities lists too long for a job event

	SchedulesStream  = "MP_SCHEDULES"
	ScheduleSubjects = "mp.schedule.>"
	ScheduleFirings  = "mp.schedule.fire.>"
	SchedulesBucket  = "mp_schedules" // KV: each schedule's job file and state, by name
	SubmitsBucket    = "mp_submits"   // KV: job files submitted in the last 24 hours, by content
	EndsBucket       = "mp_ends"      // KV: how each job run ended (committed or cancelled), first writer wins
	OutputsBucket    = "mp_outputs"   // KV: vendor outputs known ready, by vendor request identifier
	CoverageBucket   = "mp_coverage"  // KV: what committed history runs loaded, by dataset and security
	BackfillsBucket  = "mp_backfills" // KV: each backfill's parts, by name
)

// ScheduleTimer returns the subject of a schedule's message schedule: the server fires it.
func ScheduleTimer(name string) string { return "mp.schedule.timer." + name }

// ScheduleFire returns the subject a schedule's firings arrive on.
func ScheduleFire(name string) string { return "mp.schedule.fire." + name }

// SchedulePurge returns the subject of a request to remove a schedule's message.
func SchedulePurge(name string) string { return "mp.schedule.purge." + name }

// ScheduleOfFiring returns the schedule name of a firing's subject.
func ScheduleOfFiring(subject string) (string, bool) {
	name, ok := strings.CutPrefix(subject, ScheduleFire(""))
	return name, ok && name != "" && !strings.Contains(name, ".")
}

// MaxPayload is the broker's max_payload: the largest message a client may publish, headers
// included. deploy/nats/nats.conf, the Kubernetes NATS configuration, `marketpipe dev` and the
// tests' servers all use it (tests/deploy checks the files), so a message that passes the tests
// passes in production. It holds a row batch (rowcodec: at most 1 MB) and a job event.
const MaxPayload = 2 << 20

// MaxHeaderBytes is the room kept in every message for its headers (Nats-Msg-Id, traceparent,
// the stages' own).
const MaxHeaderBytes = 64 << 10

// MaxJobEventBytes bounds a job event: what the broker admits with its headers. A larger one
// cannot be published, so a stage treats one as poison.
const MaxJobEventBytes = MaxPayload - MaxHeaderBytes

// JobSubject returns the subject of a job's event.
func JobSubject(jobID, event string) string { return "mp.job." + jobID + "." + event }

// JobFilter returns the subject filter matching one event of every job.
func JobFilter(event string) string { return "mp.job.*." + event }

// RowsSubject returns the subject of a job's row batches.
func RowsSubject(jobID string) string { return "mp.rows." + jobID }

// MoreRowsHeader, set to "1" on a row batch, says that the transform that published it was
// still reading its file: more batches of the job follow. The loader then waits longer to fill
// an INSERT (LOADER_MAX_LINGER) instead of inserting what it has after LOADER_LINGER. A batch
// without it is the last of its transform (or of an earlier version's).
const MoreRowsHeader = "Marketpipe-More-Rows"

// ChunkSubject returns the subject of a job's chunk tasks.
func ChunkSubject(jobID string) string { return "mp.chunk." + jobID }

// DLQSubject returns the dead-letter subject for a stage.
func DLQSubject(stage string) string { return "mp.dlq." + stage }

// ParseJobSubject splits mp.job.<id>.<event>.
func ParseJobSubject(subject string) (jobID, event string, ok bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[0] != "mp" || parts[1] != "job" {
		return "", "", false
	}
	return parts[2], parts[3], true
}

// JobIDOfSubject returns the job id in a job event's, row batches' or chunk tasks' subject;
// ok is false for a subject that names no job. The id is returned unchecked (ValidJobID).
// The stage runtime is given it to label logs, spans and attempt records.
func JobIDOfSubject(subject string) (id string, ok bool) {
	if id, _, ok := ParseJobSubject(subject); ok {
		return id, true
	}
	if rest, ok := strings.CutPrefix(subject, RowsSubject("")); ok {
		return rest, true
	}
	if rest, ok := strings.CutPrefix(subject, ChunkSubject("")); ok {
		return rest, true
	}
	return "", false
}

// Subjects is the pipeline's subject naming as the stage runtime is given it
// (stage.Options.Subjects), which knows no subject of its own.
type Subjects struct{}

// JobID returns the job a subject names (JobIDOfSubject), or "" for a subject that names none.
// An id that ValidJobID refuses comes back with its error.
func (Subjects) JobID(subject string) (string, error) {
	id, ok := JobIDOfSubject(subject)
	if !ok {
		return "", nil
	}
	return id, ValidJobID(id)
}

// Kind is SubjectKind.
func (Subjects) Kind(subject string) string { return SubjectKind(subject) }

// DeadLetter is DLQSubject.
func (Subjects) DeadLetter(stage string) string { return DLQSubject(stage) }

// SubjectKind names what a subject carries without its job id, for span names of bounded
// cardinality: "requested", "rows", "chunk", "dlq.loader".
func SubjectKind(subject string) string {
	if _, event, ok := ParseJobSubject(subject); ok {
		return event
	}
	if strings.HasPrefix(subject, RowsSubject("")) {
		return "rows"
	}
	if strings.HasPrefix(subject, ChunkSubject("")) {
		return "chunk"
	}
	if rest, ok := strings.CutPrefix(subject, "mp."); ok {
		return rest
	}
	return subject
}

// FileMark is a record boundary of a file: the offset of a line where a chunk may start, and
// the line's number (1-based).
type FileMark struct {
	Offset int64 `json:"offset"`
	Line   int64 `json:"line"`
}

// MaxFileMarks bounds a job's FileMarks.
const MaxFileMarks = 128

// ChunkTask asks the transformer to transform chunk Chunk of Chunks of the job's file
// (pkg/chunk). It is the job event with the chunk's fields added, so it reads like one.
//
// A chunk cut at the file's marks has its range: Start (zero for the first chunk, which starts
// at the data) and End, the next chunk's start (0 for the last chunk, which ends with the
// file). Without a range (a file collected without marks) the chunk is found by scanning the
// file from its start (pkg/chunk's Open).
//
// The chunks of a job of several parts (Job.Parts) are numbered across the parts' files, so
// that Chunk and Chunks count the job's chunks: PartFile is the chunk's file (part Part's), and
// FileChunk of FileChunks the chunk's place in it. Such a task carries its job without the
// parts (each task would otherwise repeat them all), so the "transformed" event the last chunk
// publishes has none either: the "collected" event keeps them. FileChunks is 0 for a job of
// one file, whose Chunk and Chunks are also the file's.
type ChunkTask struct {
	Job
	Chunk      int      `json:"chunk"`
	Chunks     int      `json:"chunks"`
	Start      FileMark `json:"start,omitzero"`
	End        int64    `json:"end,omitempty"`
	Part       int      `json:"part,omitempty"`
	PartFile   string   `json:"part_file,omitempty"`
	FileChunk  int      `json:"file_chunk,omitempty"`
	FileChunks int      `json:"file_chunks,omitempty"`
}

// AtMarks reports whether the task's chunk is cut at the file's marks (it has a range).
func (c *ChunkTask) AtMarks() bool { return c.Start.Offset > 0 || c.End > 0 }

// InFile returns the chunk's place in its file: FileChunk of FileChunks for a part's file,
// else Chunk of Chunks.
func (c *ChunkTask) InFile() (chunk, chunks int) {
	if c.FileChunks > 0 {
		return c.FileChunk, c.FileChunks
	}
	return c.Chunk, c.Chunks
}

// MsgID returns the task's Nats-Msg-Id: one task per chunk of a job run.
func (c *ChunkTask) MsgID() string {
	return fmt.Sprintf("%s.g%d.chunk%d", c.ID, c.Generation, c.Chunk)
}

// Encode returns the task's payload.
func (c *ChunkTask) Encode() ([]byte, error) { return json.Marshal(c) }

// DecodeChunkTask parses a chunk task's payload.
func DecodeChunkTask(data []byte) (ChunkTask, error) {
	var c ChunkTask
	if err := json.Unmarshal(data, &c); err != nil {
		return ChunkTask{}, fmt.Errorf("decode chunk task: %w", err)
	}
	if err := ValidJobID(c.ID); err != nil {
		return ChunkTask{}, fmt.Errorf("decode chunk task: %w", err)
	}
	if c.Chunks < 1 || c.Chunk < 0 || c.Chunk >= c.Chunks {
		return ChunkTask{}, fmt.Errorf("decode chunk task: job %q chunk %d of %d", c.ID, c.Chunk, c.Chunks)
	}
	fc, fn := c.InFile()
	if c.FileChunks > 0 && (fc < 0 || fc >= fn || c.Part < 0 || c.PartFile == "") {
		return ChunkTask{}, fmt.Errorf("decode chunk task: job %q chunk %d of %d: part %d chunk %d of %d", c.ID, c.Chunk, c.Chunks, c.Part, fc, fn)
	}
	if c.AtMarks() {
		first, last := fc == 0, fc == fn-1
		if first != (c.Start == FileMark{}) || !first && (c.Start.Offset <= 0 || c.Start.Line < 1) ||
			last != (c.End == 0) || !last && c.End <= c.Start.Offset {
			return ChunkTask{}, fmt.Errorf("decode chunk task: job %q chunk %d of %d: range %+v to %d", c.ID, c.Chunk, c.Chunks, c.Start, c.End)
		}
	}
	return c, nil
}

// Program names.
const (
	GetData    = "getdata"
	GetHistory = "gethistory"
	GetActions = "getactions" // corporate actions over a date range; fields optional
)

// InlineSecurities is the longest securities list a job event carries itself: a longer one is
// kept in the object store SpecsBucket and the event carries a reference (SecuritiesRef), so
// that job events stay small (a few tens of KB at most) whatever the job's size.
const InlineSecurities = 1000

// ListRef names a list kept in the object store SpecsBucket: its object, its length and the
// SHA-256 of its content (one item per line), which the reader checks.
type ListRef struct {
	Object string `json:"object"`
	Count  int    `json:"count"`
	SHA256 string `json:"sha256"`
}

// Spec is what was asked of the vendor.
type Spec struct {
	Name    string `json:"name"`
	Program string `json:"program"`
	// Securities is the universe; empty when SecuritiesRef names it instead.
	Securities    []string `json:"securities,omitempty"`
	SecuritiesRef *ListRef `json:"securities_ref,omitempty"`
	Fields        []string `json:"fields"`
	Start         string   `json:"start,omitempty"` // YYYY-MM-DD, gethistory only
	End           string   `json:"end,omitempty"`
	// Strict fails a run whose reply file carries warnings instead of loading it.
	Strict bool `json:"strict,omitempty"`
	// Incremental (gethistory) asks the vendor only for the securities and dates that
	// committed runs of the same dataset have not loaded yet (package coverage).
	Incremental bool `json:"incremental,omitempty"`
	Options
}

// Options are what a request asks of the vendor besides securities, fields and dates (HAPI's
// names in parentheses). A security written "/ISIN/US0378331005" carries its identifier type
// (identifierType); one without a type is a TICKER.
type Options struct {
	// Overrides apply to every security (fieldOverrides), SecurityOverrides to one (by its
	// entry in Securities, overriding the universe's of the same mnemonic); getdata only.
	Overrides         map[string]string            `json:"overrides,omitempty"`
	SecurityOverrides map[string]map[string]string `json:"security_overrides,omitempty"`
	// PricingSource is the preferred pricing source (pricingSourceOptions.prefer), exclusive
	// when PricingSourceExclusive.
	PricingSource          string `json:"pricing_source,omitempty"`
	PricingSourceExclusive bool   `json:"pricing_source_exclusive,omitempty"`
	// Periodicity (period: daily when empty) and Currency (historyPriceCurrency) are gethistory's.
	Periodicity string `json:"periodicity,omitempty"`
	Currency    string `json:"currency,omitempty"`
}

// Clone returns a copy of o sharing no map with it.
func (o Options) Clone() Options {
	o.Overrides = maps.Clone(o.Overrides)
	if o.SecurityOverrides != nil {
		so := make(map[string]map[string]string, len(o.SecurityOverrides))
		for k, v := range o.SecurityOverrides {
			so[k] = maps.Clone(v)
		}
		o.SecurityOverrides = so
	}
	return o
}

// Dataset is what the observations of a run are kept under (their program column): the
// program, and the options that change what its values mean, so that two requests differing in
// them never overwrite each other's rows: "gethistory" for a plain request,
// "gethistory[currency=EUR,periodicity=weekly]" for weekly prices in euros.
func (s *Spec) Dataset() string {
	var parts []string
	if s.Currency != "" {
		parts = append(parts, "currency="+s.Currency)
	}
	if s.Periodicity != "" && s.Periodicity != "daily" {
		parts = append(parts, "periodicity="+s.Periodicity)
	}
	if s.PricingSource != "" {
		ps := "pricing_source=" + s.PricingSource
		if s.PricingSourceExclusive {
			ps += "!"
		}
		parts = append(parts, ps)
	}
	if len(parts) == 0 {
		return s.Program
	}
	return s.Program + "[" + strings.Join(parts, ",") + "]"
}

// SecurityCount returns the number of securities asked for, inline or by reference.
func (s *Spec) SecurityCount() int {
	if s.SecuritiesRef != nil {
		return s.SecuritiesRef.Count
	}
	return len(s.Securities)
}

// Job is the state of one job run; every job event carries it.
type Job struct {
	ID         string `json:"id"`
	Generation int    `json:"generation"` // 0 for the first run; a replay increments it
	Spec       Spec   `json:"spec"`
	State      string `json:"state"` // the name of the latest event
	// Version orders the rows this run loads against those of other runs of the same keys: it
	// is fixed when the run starts (NewRun, Rerun), so redeliveries keep it, and the loader
	// loads a row batch only if it carries its run's version.
	Version  uint64    `json:"version"`
	Deadline time.Time `json:"deadline"`

	SubmittedAt   time.Time `json:"submitted_at,omitzero"`
	RequestedAt   time.Time `json:"requested_at,omitzero"`
	ReadyAt       time.Time `json:"ready_at,omitzero"`
	CollectedAt   time.Time `json:"collected_at,omitzero"`
	TransformedAt time.Time `json:"transformed_at,omitzero"`
	LoadedAt      time.Time `json:"loaded_at,omitzero"`
	FailedAt      time.Time `json:"failed_at,omitzero"`
	CancelledAt   time.Time `json:"cancelled_at,omitzero"`
	// CancelledBy says who cancelled the job (user@host of `marketpipe cancel`).
	CancelledBy string `json:"cancelled_by,omitempty"`

	// Schedule names the schedule whose firing made the job; empty for a job submitted by hand.
	Schedule string `json:"schedule,omitempty"`
	// ScheduledFor is the firing's time in the schedule (a time its cron gives), whenever the
	// firing was handled; zero for a job submitted by hand.
	ScheduledFor time.Time `json:"scheduled_for,omitzero"`

	VendorRequestID string `json:"vendor_request_id,omitempty"` // our identifier at the vendor
	VendorAccount   string `json:"vendor_account,omitempty"`
	ResponseKey     string `json:"response_key,omitempty"`    // the vendor's output file name
	ResponseDigest  string `json:"response_digest,omitempty"` // the vendor's Digest header, e.g. sha512=...
	// ResponseSize is the output's size as the vendor's listing gave it (decoded bytes), which
	// bounds the download; 0 when the ready event did not carry it (or the file is empty).
	ResponseSize int64  `json:"response_size,omitempty"`
	FileKey      string `json:"file_key,omitempty"` // object name in the raw store
	FileSHA256   string `json:"file_sha256,omitempty"`
	FileSize     int64  `json:"file_size,omitempty"`
	// FileMarks are record boundaries spread over the stored file (pkg/chunk's Marks, at most
	// MaxFileMarks), a copy of those kept with the file (pkg/rawstore), which the transformer
	// reads; it uses these only for a file stored without them by an earlier version.
	FileMarks []FileMark `json:"file_marks,omitempty"`
	Polls     int        `json:"polls,omitempty"`
	// PointsRequested is what the run asked of the vendor in data points (securities × fields
	// × dates), set by the requester; 0 for an incremental run that found nothing missing.
	PointsRequested int64 `json:"points_requested,omitempty"`
	// Parts are the vendor requests of a job too large for one (pkg/vendor's Plan); nil for a
	// job of one request, whose request, output and file are the fields above.
	Parts []Part `json:"parts,omitempty"`

	Batches      int   `json:"batches,omitempty"` // row batches published by the transformer
	RowsParsed   int64 `json:"rows_parsed,omitempty"`
	RowsLoaded   int64 `json:"rows_loaded,omitempty"`
	RowsRejected int64 `json:"rows_rejected,omitempty"`
	// Warnings are what the reply file said was wrong (set by the transformer).
	Warnings *Warnings `json:"warnings,omitempty"`
	Error    string    `json:"error,omitempty"`
	TraceID  string    `json:"trace_id,omitempty"`
}

// Part is one vendor request of a job split into several (Job.Parts): the securities
// [SecFrom, SecTo) of the securities the run asked (the job's resolved universe, Spec.Securities
// or SecuritiesRef's list; for an incremental run, its securities with anything missing, group
// after group) and
// the fields [FieldFrom, FieldTo) of Spec.Fields (both 0 for getactions without fields),
// between Start and End, and its data points. As the job advances, each stage fills in what it
// did for the part: the vendor's output (poller), the stored file (collector).
type Part struct {
	SecFrom   int    `json:"sec_from"`
	SecTo     int    `json:"sec_to"`
	FieldFrom int    `json:"field_from"`
	FieldTo   int    `json:"field_to"`
	Start     string `json:"start,omitempty"`
	End       string `json:"end,omitempty"`
	Points    int64  `json:"points"`
	// VendorRequestID is the part's identifier at the vendor (jobspec.PartRequestID).
	VendorRequestID string `json:"vendor_request_id"`
	ResponseKey     string `json:"response_key,omitempty"`
	ResponseDigest  string `json:"response_digest,omitempty"`
	ResponseSize    int64  `json:"response_size,omitempty"`
	FileKey         string `json:"file_key,omitempty"`
	FileSHA256      string `json:"file_sha256,omitempty"`
	FileSize        int64  `json:"file_size,omitempty"`
}

// Fields returns the part's fields of spec.
func (p *Part) Fields(s *Spec) []string {
	if p.FieldTo > len(s.Fields) || p.FieldFrom > p.FieldTo {
		return nil
	}
	return s.Fields[p.FieldFrom:p.FieldTo]
}

// Progress says how far the part is: "collected" once its file is stored, "ready" once its
// output is, else "requested".
func (p *Part) Progress() string {
	switch {
	case p.FileKey != "":
		return Collected
	case p.ResponseKey != "":
		return Ready
	}
	return Requested
}

// Stage timestamps by event name, for display.
func (j *Job) StageTimes() []struct {
	Event string
	At    time.Time
} {
	return []struct {
		Event string
		At    time.Time
	}{
		{Submitted, j.SubmittedAt}, {Requested, j.RequestedAt}, {Ready, j.ReadyAt},
		{Collected, j.CollectedAt}, {Transformed, j.TransformedAt}, {Loaded, j.LoadedAt},
		{Failed, j.FailedAt}, {Cancelled, j.CancelledAt},
	}
}

// MsgID returns the Nats-Msg-Id for this job's event: the same run publishing the same event
// twice is deduplicated by JetStream; a replay (a new generation) is not.
func (j *Job) MsgID(event string) string {
	return fmt.Sprintf("%s.g%d.%s", j.ID, j.Generation, event)
}

// Advance returns a copy of j in state event, stamped at now.
func (j Job) Advance(event string, now time.Time) Job {
	j.State = event
	now = now.UTC()
	switch event {
	case Submitted:
		j.SubmittedAt = now
	case Requested:
		j.RequestedAt = now
	case Ready:
		j.ReadyAt = now
	case Collected:
		j.CollectedAt = now
	case Transformed:
		j.TransformedAt = now
	case Loaded:
		j.LoadedAt = now
	case Failed:
		j.FailedAt = now
	case Cancelled:
		j.CancelledAt = now
	}
	return j
}

// Finished reports whether the run has ended: loaded, failed or cancelled.
func (j *Job) Finished() bool {
	return j.State == Loaded || j.State == Failed || j.State == Cancelled
}

// Cancel returns a copy of j cancelled by who at now.
func (j Job) Cancel(who string, now time.Time) Job {
	j = j.Advance(Cancelled, now)
	j.CancelledBy = who
	return j
}

// Fail returns a copy of j failed with reason.
func (j Job) Fail(reason string, now time.Time) Job {
	j = j.Advance(Failed, now)
	j.Error = reason
	return j
}

// Route returns where j is published as the event named by j.State, and its Nats-Msg-Id
// (MsgID); with Encode it makes *Job a stage.Event. A job whose id is not valid is refused.
func (j *Job) Route() (subject, msgID string, err error) {
	if err := ValidJobID(j.ID); err != nil {
		return "", "", fmt.Errorf("publish job event %s: %w", j.State, err)
	}
	return JobSubject(j.ID, j.State), j.MsgID(j.State), nil
}

// Encode returns the event payload.
func (j *Job) Encode() ([]byte, error) { return json.Marshal(j) }

// Decode parses an event payload. A job id that ValidJobID refuses is an error wrapping
// ErrInvalidJobID: no stage can handle such an event.
func Decode(data []byte) (Job, error) {
	var j Job
	if err := json.Unmarshal(data, &j); err != nil {
		return Job{}, fmt.Errorf("decode job event: %w", err)
	}
	if err := ValidJobID(j.ID); err != nil {
		return Job{}, fmt.Errorf("decode job event: %w", err)
	}
	return j, nil
}
