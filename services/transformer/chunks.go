package transformer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/chunk"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/telemetry"
)

// publish is the chunk stage's publish of what the collected stage's runtime publishes
// (stage.Jobs): next unless err, then Published.
func (h *Handler) publish(ctx context.Context, next *events.Job, err error) error {
	if err != nil || next == nil {
		return err
	}
	if err := h.Pub.PublishJob(ctx, next); err != nil {
		return err
	}
	h.Published(ctx, next)
	return nil
}

// HandleChunk implements the chunk stage's handler: it transforms one chunk of a job's file
// (pkg/chunk) with sequence numbers of its own (chunk<<20 + the chunk's), records what it
// published in the chunks bucket once JetStream has it all, and, if every chunk of the job run
// is then recorded, publishes "transformed" with the sums. Two chunks finishing together both
// publish it under the same message id: JetStream keeps one. A redelivered chunk already
// recorded only does that last step; one not recorded republishes the same batch ids.
func (h *Handler) HandleChunk(ctx context.Context, m *stage.Message) error {
	task, err := events.DecodeChunkTask(m.Data())
	if err != nil {
		return stage.Permanent(err)
	}
	j := &task.Job
	ctx = telemetry.WithJobID(ctx, j.ID)
	key := natsx.ChunkKey(j.ID, j.Generation, task.Chunk)
	if _, err := h.Chunks.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
		if ok, err := h.transformChunk(ctx, &task); !ok || err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("chunk record %s: %w", key, err)
	}
	return h.completeChunks(ctx, &task)
}

// transformChunk transforms and records one chunk. A chunk that cannot be read fails the job:
// then it returns false.
func (h *Handler) transformChunk(ctx context.Context, task *events.ChunkTask) (ok bool, err error) {
	j := &task.Job
	fc, fn := task.InFile()
	if task.FileChunks > 0 {
		// A part's file: the job seen as that file's.
		pj := task.Job
		pj.FileKey = task.PartFile
		j = &pj
	}
	if !task.AtMarks() && task.FileChunks == 0 {
		// Only earlier versions cut files without marks (by scanning them); a replay of the job
		// cuts it at its marks or transforms it in one piece.
		return false, h.publish(ctx, h.failed(j, fmt.Sprintf("chunk %d of %d of %s: a task not cut at marks, from an earlier version: replay the job",
			task.Chunk, task.Chunks, j.FileKey)), nil)
	}
	f, done, err := h.open(ctx, j)
	if err != nil {
		next, err := h.openFailed(j, err)
		return false, h.publish(ctx, next, err)
	}
	defer done()
	obj := &readErrs{r: f}
	var data *readErrs // the file from the chunk's start, when that is not obj
	seq := task.Chunk << 20
	st, err := func() (transformStats, error) {
		var (
			cs  chunkStream
			err error
		)
		if fn == 1 {
			// A part's file in one piece.
			return h.transform(ctx, j, obj, nil, seq)
		}
		if fc == 0 {
			cs, err = chunk.OpenFirst(obj, task.End, fn)
		} else {
			readCtx, cancel := context.WithTimeout(ctx, h.readTimeout())
			defer cancel()
			r, openErr := h.Raw.OpenAt(readCtx, f.Info, task.Start.Offset)
			if openErr != nil {
				return transformStats{}, openErr
			}
			defer r.Close()
			data = &readErrs{r: r}
			if cs, err = chunk.OpenAt(obj, data, chunk.Mark(task.Start), task.End, fc, fn); err == nil {
				// The header is read: stop the object's delivery, which would otherwise fill
				// the client's buffers with chunks nobody reads.
				done()
			}
		}
		if err != nil {
			return transformStats{}, err
		}
		c := cs.Chunk()
		return h.transform(ctx, j, cs, &c, seq)
	}()
	if err != nil {
		readErr := obj.err
		if data != nil && readErr == nil {
			readErr = data.err
		}
		next, err := h.transformFailed(j, readErr, err)
		return false, h.publish(ctx, next, err)
	}
	rec, err := json.Marshal(st)
	if err != nil {
		return false, err
	}
	key := natsx.ChunkKey(task.ID, task.Generation, task.Chunk)
	if _, err := h.Chunks.Put(ctx, key, rec); err != nil {
		return false, fmt.Errorf("record chunk %s: %w", key, err)
	}
	return true, nil
}

// chunkStream is a chunk's stream for the parser: chunk.Reader or chunk.RangeReader.
type chunkStream interface {
	io.Reader
	Chunk() chunk.Chunk
}

// fileMarks converts a job's marks for pkg/chunk.
func fileMarks(fm []events.FileMark) []chunk.Mark {
	ms := make([]chunk.Mark, len(fm))
	for i, m := range fm {
		ms[i] = chunk.Mark(m)
	}
	return ms
}

// completeChunks publishes "transformed" when every chunk of the task's job run is recorded.
func (h *Handler) completeChunks(ctx context.Context, task *events.ChunkTask) error {
	j := &task.Job
	n, err := h.CountChunks(ctx, j.ID, j.Generation)
	if err != nil {
		return err
	}
	if n < task.Chunks {
		return nil // the last chunk recorded publishes it
	}
	var sum transformStats
	for i := range task.Chunks {
		key := natsx.ChunkKey(j.ID, j.Generation, i)
		e, err := h.Chunks.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("chunk record %s: %w", key, err)
		}
		var st transformStats
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			return stage.Permanent(fmt.Errorf("chunk record %s: %w", key, err))
		}
		sum.Batches += st.Batches
		sum.Rows += st.Rows
		sum.Rejects += st.Rejects
		sum.Warnings.Add(&st.Warnings)
	}
	return h.publish(ctx, h.transformed(j, sum), nil)
}

// publishPartChunks hands out the files of a job of several parts (Job.Parts) as chunk tasks:
// each file cut at its marks as a job's only file would be (or whole), the chunks numbered
// across the files so that every batch's sequence number, and so its ledger key, is unique in
// the job run. The chunk that finds every chunk recorded publishes "transformed" with the sums
// of all the parts (completeChunks); the tasks, and so that event, carry the job without its
// parts (events.ChunkTask). A part's file missing fails the job.
func (h *Handler) publishPartChunks(ctx context.Context, j *events.Job) (*events.Job, error) {
	// starts[i] cuts part i's file (chunk.Cut); nil: the file in one piece.
	starts := make([][]chunk.Mark, len(j.Parts))
	total := 0
	for i := range j.Parts {
		p := &j.Parts[i]
		info, err := h.Raw.Stat(ctx, p.FileKey)
		if err != nil {
			pj := *j
			pj.FileKey = p.FileKey
			return h.openFailed(&pj, err)
		}
		if n := chunk.Count(info.Size, h.ChunkBytes, MaxChunks); n > 1 && len(info.Marks) > 0 {
			starts[i] = chunk.Cut(fileMarks(info.Marks), info.Size, n)
		}
		total += len(starts[i]) + 1
	}
	next := 0
	for part, cuts := range starts {
		n := len(cuts) + 1
		for i := range n {
			task := events.ChunkTask{Job: *j, Chunk: next, Chunks: total, Part: part, PartFile: j.Parts[part].FileKey,
				FileChunk: i, FileChunks: n}
			task.Parts = nil
			if i > 0 {
				task.Start = events.FileMark(cuts[i-1])
			}
			if i < len(cuts) {
				task.End = cuts[i].Offset
			}
			if err := h.publishTask(ctx, &task); err != nil {
				return nil, err
			}
			next++
		}
	}
	return nil, nil
}

// MaxChunks bounds the chunks of one file.
const MaxChunks = 64

// publishChunksAt publishes one task per chunk of j's file cut at starts (chunk.Cut): the
// first chunk from the data to starts[0], chunk i from starts[i-1] to starts[i], the last to
// the end of the file.
func (h *Handler) publishChunksAt(ctx context.Context, j *events.Job, starts []chunk.Mark) error {
	n := len(starts) + 1
	for i := range n {
		task := events.ChunkTask{Job: *j, Chunk: i, Chunks: n}
		if i > 0 {
			task.Start = events.FileMark(starts[i-1])
		}
		if i < len(starts) {
			task.End = starts[i].Offset
		}
		if err := h.publishTask(ctx, &task); err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) publishTask(ctx context.Context, task *events.ChunkTask) error {
	data, err := task.Encode()
	if err != nil {
		return fmt.Errorf("encode chunk task of %s: %w", task.ID, err)
	}
	return h.Pub.Publish(ctx, events.ChunkSubject(task.ID), task.MsgID(), data, nil)
}
