package chstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/marketpipe/marketpipe/pkg/chinsert"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// observationTypes are the observations table's columns in observationColumns' order, as the
// server describes them for an INSERT.
var observationTypes = []chinsert.Column{
	{Name: "security", Type: "String"}, {Name: "field", Type: "String"}, {Name: "date", Type: "Date"},
	{Name: "value_num", Type: "Nullable(Float64)"}, {Name: "value_str", Type: "String"},
	{Name: "value_kind", Type: "UInt8"}, {Name: "flag", Type: "String"}, {Name: "program", Type: "String"},
	{Name: "job_id", Type: "String"}, {Name: "version", Type: "UInt64"}, {Name: "loaded_at", Type: "DateTime"},
}

// blockSink writes the INSERT through pkg/chinsert: each row's values are appended in
// ClickHouse's native format to the block's column buffers as the rows come, and the block
// is compressed and sent from them, with no Go value per row in between.
type blockSink struct {
	s        *Store
	loadedAt uint32
	conn     *chinsert.Conn
	ins      *chinsert.Insert
	blk      *obsBlock
	done     bool // the INSERT is finished
}

func (k *blockSink) add(b *Batch, os []obs.Observation) {
	if k.blk == nil {
		k.blk = obsBlockPool.Get().(*obsBlock)
	}
	k.blk.add(b, os)
}

func (k *blockSink) rows() int {
	if k.blk == nil {
		return 0
	}
	return k.blk.rows
}

func (k *blockSink) send(ctx context.Context) error {
	if k.ins == nil {
		var err error
		k.conn, k.ins, err = k.s.blocks.Insert(ctx, "INSERT INTO "+k.s.table("observations")+" ("+observationColumns+") VALUES",
			observationTypes)
		if err != nil {
			return fmt.Errorf("start: %w", err)
		}
	}
	blk := k.blk
	err := k.ins.WriteBlock(ctx, blk.rows, func(col int, dst []byte) []byte { return blk.column(col, dst, k.loadedAt) })
	blk.reset()
	return err
}

func (k *blockSink) finish(ctx context.Context) error {
	if err := k.ins.Finish(ctx); err != nil {
		return err
	}
	k.done = true
	return nil
}

func (k *blockSink) close() {
	if k.blk != nil {
		k.blk.reset()
		obsBlockPool.Put(k.blk)
		k.blk = nil
	}
	if k.conn != nil {
		// An unfinished INSERT has left the connection unusable (the server waits for the
		// rest): Put then closes it, and the server drops what it received.
		if !k.done {
			k.conn.Close()
		}
		k.s.blocks.Put(k.conn)
		k.conn = nil
	}
}

// obsBlock is one block of observations, column by column in ClickHouse's native format.
type obsBlock struct {
	rows                                                                       int
	security, field, date, null, num, str, kind, flag, program, jobID, version []byte
	// The last batch's program and job id, encoded, repeated on each of its rows.
	lastProgram, lastJobID string
	programEnc, jobIDEnc   []byte
}

var obsBlockPool = sync.Pool{New: func() any { return new(obsBlock) }}

// reset empties the block, keeping its buffers.
func (k *obsBlock) reset() {
	k.rows = 0
	for _, c := range k.columns() {
		*c = (*c)[:0]
	}
}

func (k *obsBlock) columns() []*[]byte {
	return []*[]byte{&k.security, &k.field, &k.date, &k.null, &k.num, &k.str, &k.kind, &k.flag,
		&k.program, &k.jobID, &k.version}
}

// add appends the rows os of batch b.
func (k *obsBlock) add(b *Batch, os []obs.Observation) {
	if k.programEnc == nil || b.Program != k.lastProgram {
		k.lastProgram, k.programEnc = b.Program, chinsert.AppendString(k.programEnc[:0], b.Program)
	}
	if k.jobIDEnc == nil || b.JobID != k.lastJobID {
		k.lastJobID, k.jobIDEnc = b.JobID, chinsert.AppendString(k.jobIDEnc[:0], b.JobID)
	}
	k.rows += len(os)
	for i := range os {
		o := &os[i]
		k.security = chinsert.AppendString(k.security, o.Security)
		k.field = chinsert.AppendString(k.field, o.Field)
		k.date = binary.LittleEndian.AppendUint16(k.date, uint16(o.Date))
		switch o.Kind {
		case obs.Number:
			k.null = append(k.null, 0)
			k.num = binary.LittleEndian.AppendUint64(k.num, math.Float64bits(o.Num))
			k.str = append(k.str, 0)
		case obs.String, obs.Bulk:
			k.null = append(k.null, 1)
			k.num = binary.LittleEndian.AppendUint64(k.num, 0)
			k.str = chinsert.AppendString(k.str, o.Str)
		default:
			k.null = append(k.null, 1)
			k.num = binary.LittleEndian.AppendUint64(k.num, 0)
			k.str = append(k.str, 0)
		}
		k.kind = append(k.kind, byte(o.Kind))
		k.flag = chinsert.AppendString(k.flag, o.Flag)
	}
	k.program = appendRepeated(k.program, k.programEnc, len(os))
	k.jobID = appendRepeated(k.jobID, k.jobIDEnc, len(os))
	var v [8]byte
	binary.LittleEndian.PutUint64(v[:], b.Version)
	k.version = appendRepeated(k.version, v[:], len(os))
}

// column appends column i (in observationColumns' order) to dst.
func (k *obsBlock) column(i int, dst []byte, loadedAt uint32) []byte {
	switch i {
	case 0:
		return append(dst, k.security...)
	case 1:
		return append(dst, k.field...)
	case 2:
		return append(dst, k.date...)
	case 3:
		return append(append(dst, k.null...), k.num...)
	case 4:
		return append(dst, k.str...)
	case 5:
		return append(dst, k.kind...)
	case 6:
		return append(dst, k.flag...)
	case 7:
		return append(dst, k.program...)
	case 8:
		return append(dst, k.jobID...)
	case 9:
		return append(dst, k.version...)
	case 10:
		var t [4]byte
		binary.LittleEndian.PutUint32(t[:], loadedAt)
		return appendRepeated(dst, t[:], k.rows)
	}
	panic(fmt.Sprintf("chstore: observations column %d", i))
}

// appendRepeated appends n copies of v to dst.
func appendRepeated(dst, v []byte, n int) []byte {
	if n == 0 || len(v) == 0 {
		return dst
	}
	start := len(dst)
	dst = append(dst, v...)
	// Double the copied run until it covers n copies.
	for have, want := len(v), n*len(v); have < want; have *= 2 {
		dst = append(dst, dst[start:start+min(have, want-have)]...)
	}
	return dst
}
