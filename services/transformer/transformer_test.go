package transformer_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/marketpipe/marketpipe/pkg/chunk"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
	"github.com/marketpipe/marketpipe/pkg/simdata"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/services/transformer"
)

func collected(t *testing.T, env *natstest.Env, id string, file []byte) events.Job {
	t.Helper()
	key := id + "/g0/file.bbg"
	if _, err := env.Streams.Raw.PutBytes(context.Background(), key, file); err != nil {
		t.Fatal(err)
	}
	j := events.Job{ID: id, Version: 42, FileKey: key, Spec: events.Spec{Program: "gethistory"}}
	return j.Advance(events.Collected, time.Now())
}

// eachRowBatch calls fn with every row batch message published for a job, in stream order.
func eachRowBatch(t *testing.T, env *natstest.Env, jobID string, fn func(m jetstream.Msg)) {
	t.Helper()
	ctx := context.Background()
	c, err := env.JS.OrderedConsumer(ctx, events.RowsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.RowsSubject(jobID)}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		msgs, err := c.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range msgs.Messages() {
			n++
			fn(m)
		}
		if n == 0 {
			return
		}
	}
}

// batches reads back every row batch published for a job.
func batches(t *testing.T, env *natstest.Env, jobID string) []rowcodec.Batch {
	t.Helper()
	var out []rowcodec.Batch
	eachRowBatch(t, env, jobID, func(m jetstream.Msg) {
		var b rowcodec.Batch
		if err := rowcodec.Decode(m.Data(), &b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	})
	return out
}

// moreRows reads, in stream order, whether each row batch published for a job carries
// events.MoreRowsHeader.
func moreRows(t *testing.T, env *natstest.Env, jobID string) []bool {
	t.Helper()
	var more []bool
	eachRowBatch(t, env, jobID, func(m jetstream.Msg) {
		more = append(more, m.Headers().Get(events.MoreRowsHeader) == "1")
	})
	return more
}

func TestTransformerPublishesEveryObservation(t *testing.T) {
	env := natstest.NewEnv(t)
	h := &transformer.Handler{Raw: &rawstore.Store{Objects: env.Streams.Raw}, Pub: stage.NewPublisher(env.JS), Now: time.Now}
	secs := make([]string, 150)
	for i := range secs {
		secs[i] = fmt.Sprintf("T%03d US Equity", i)
	}
	spec := events.Spec{Program: "gethistory", Securities: secs, Fields: []string{"PX_LAST", "PX_OPEN", "PX_HIGH", "PX_LOW", "PX_VOLUME"},
		Start: "2025-01-01", End: "2025-12-31"}
	runDate := obs.MakeDate(2026, 1, 5)
	var file bytes.Buffer
	if err := simdata.WriteReply(&file, spec, runDate, 3); err != nil {
		t.Fatal(err)
	}
	var want []obs.Observation
	simdata.Observations(spec, runDate, 3, func(o *obs.Observation) error { want = append(want, *o); return nil })

	j := collected(t, env, "job-t1", file.Bytes())
	m := env.DeliverJob(&j)
	if err := stage.Jobs(h.Pub, events.Decode, h).Handle(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got, _ := env.LastJob(j.ID)
	bs := batches(t, env, j.ID)
	if got.State != events.Transformed || got.Batches != len(bs) || got.RowsParsed != int64(len(want)) || got.RowsRejected != 0 {
		t.Fatalf("transformed event: state %q batches %d (published %d) rows %d (want %d) rejected %d",
			got.State, got.Batches, len(bs), got.RowsParsed, len(want), got.RowsRejected)
	}
	if len(bs) < 2 {
		t.Errorf("%d observations in %d batch: a large file must be split", len(want), len(bs))
	}
	var all []obs.Observation
	for i, b := range bs {
		if b.Seq != i || b.JobID != j.ID || b.Version != 42 || b.Program != "gethistory" {
			t.Errorf("batch %d: seq %d job %q version %d program %q", i, b.Seq, b.JobID, b.Version, b.Program)
		}
		all = append(all, b.Obs...)
	}
	if len(all) != len(want) {
		t.Fatalf("%d observations in batches, want %d", len(all), len(want))
	}
	for i := range want {
		if !all[i].Equal(&want[i]) {
			t.Fatalf("observation %d: %+v, want %+v", i, all[i], want[i])
		}
	}
	// Every batch but the last says that more follow, so the loader waits to fill an INSERT.
	if more := moreRows(t, env, j.ID); len(more) != len(bs) || more[len(bs)-1] || slices.Contains(more[:len(bs)-1], false) {
		t.Errorf("%s headers of the %d batches: %v; want all but the last", events.MoreRowsHeader, len(bs), more)
	}

	// A redelivery republishes the same batches under the same ids: JetStream drops them.
	if err := stage.Jobs(h.Pub, events.Decode, h).Handle(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if n := env.Count(events.RowsStream, events.RowsSubject(j.ID)); n != len(bs) {
		t.Errorf("%d batches after a redelivery, want %d", n, len(bs))
	}
}

func TestTransformerFailsUnreadableFiles(t *testing.T) {
	env := natstest.NewEnv(t)
	h := &transformer.Handler{Raw: &rawstore.Store{Objects: env.Streams.Raw}, Pub: stage.NewPublisher(env.JS), Now: time.Now}
	tests := []struct {
		name, file, want string
	}{
		{"no data section", "START-OF-FILE\nPROGRAMNAME=getdata\nSTART-OF-FIELDS\nPX_LAST\nEND-OF-FIELDS\n", "line"},
		{"not a reply file", "<html>gateway timeout</html>\n", "line"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := collected(t, env, fmt.Sprintf("job-bad%d", i), []byte(tc.file))
			if err := stage.Jobs(h.Pub, events.Decode, h).Handle(context.Background(), env.DeliverJob(&j)); err != nil {
				t.Fatal(err)
			}
			got, _ := env.LastJob(j.ID)
			if got.State != events.Failed || !strings.Contains(got.Error, tc.want) || !strings.Contains(got.Error, j.FileKey) {
				t.Errorf("state %q error %q", got.State, got.Error)
			}
		})
	}
	t.Run("missing raw file", func(t *testing.T) {
		j := events.Job{ID: "job-missing", FileKey: "job-missing/g0/nothing"}
		j = j.Advance(events.Collected, time.Now())
		if err := stage.Jobs(h.Pub, events.Decode, h).Handle(context.Background(), env.DeliverJob(&j)); err != nil {
			t.Fatal(err)
		}
		if got, _ := env.LastJob(j.ID); got.State != events.Failed || !strings.Contains(got.Error, "not in the raw store") {
			t.Errorf("state %q error %q", got.State, got.Error)
		}
	})
}

func TestTransformerRejectsBadLinesAndLoadsTheRest(t *testing.T) {
	env := natstest.NewEnv(t)
	h := &transformer.Handler{Raw: &rawstore.Store{Objects: env.Streams.Raw}, Pub: stage.NewPublisher(env.JS), Now: time.Now}
	file := "START-OF-FILE\nPROGRAMNAME=getdata\nDATEFORMAT=yyyymmdd\nRUNDATE=20260105\nSTART-OF-FIELDS\nPX_LAST\nPX_BID\nEND-OF-FIELDS\n" +
		"START-OF-DATA\nIBM US Equity|0|2|101.5|101.4|\nbroken line without delimiters\nAAPL US Equity|0|2|201.5|201.4|\nEND-OF-DATA\nEND-OF-FILE\n"
	j := collected(t, env, "job-rej", []byte(file))
	if err := stage.Jobs(h.Pub, events.Decode, h).Handle(context.Background(), env.DeliverJob(&j)); err != nil {
		t.Fatal(err)
	}
	got, _ := env.LastJob(j.ID)
	bs := batches(t, env, j.ID)
	if got.State != events.Transformed || got.RowsParsed != 4 || got.RowsRejected != 1 || len(bs) != 1 {
		t.Fatalf("state %q rows %d rejected %d batches %d", got.State, got.RowsParsed, got.RowsRejected, len(bs))
	}
	if r := bs[0].Rejects; len(r) != 1 || r[0].Line != 11 || r[0].Raw != "broken line without delimiters" {
		t.Errorf("rejects %+v, want line 11 with its raw text", r)
	}
}

// failingStore serves a reader that breaks partway, as the object store does on a timeout.
type failingStore struct{ rawstore.Objects }

type brokenObject struct {
	jetstream.ObjectResult
	r io.Reader
}

func (b brokenObject) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b brokenObject) Close() error               { return nil }
func (b brokenObject) Info() (*jetstream.ObjectInfo, error) {
	return &jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: "job-read/g0/f"},
		Digest: "SHA-256=" + base64.URLEncoding.EncodeToString(make([]byte, sha256.Size))}, nil
}

func (f failingStore) Get(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) (jetstream.ObjectResult, error) {
	if _, ok := ctx.Deadline(); ok {
		// rawstore bounds the read itself (StallTimeout, its context's deadline).
		return nil, errors.New("a deadline: a Read of nats.go's would block until it, however long")
	}
	head := "START-OF-FILE\nPROGRAMNAME=getdata\nSTART-OF-FIELDS\nPX_LAST\nEND-OF-FIELDS\nSTART-OF-DATA\nIBM US Equity|0|1|1.5|\n"
	return brokenObject{r: io.MultiReader(strings.NewReader(head), iotest.ErrReader(nats.ErrTimeout))}, nil
}

func TestTransformerRetriesStoreReadErrors(t *testing.T) {
	env := natstest.NewEnv(t)
	h := &transformer.Handler{Raw: &rawstore.Store{Objects: failingStore{env.Streams.Raw}}, Pub: stage.NewPublisher(env.JS), Now: time.Now}
	j := events.Job{ID: "job-read", FileKey: "job-read/g0/f"}
	j = j.Advance(events.Collected, time.Now())
	err := stage.Jobs(h.Pub, events.Decode, h).Handle(context.Background(), env.DeliverJob(&j))
	if err == nil || stage.IsPermanent(err) || !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("Handle = %v, want a transient error wrapping the read timeout", err)
	}
	if got, _ := env.LastJob(j.ID); got.State != events.Collected {
		t.Errorf("state %q: a store read failure must not fail the job", got.State)
	}
}

// chunkedFile is a gethistory reply of 120 securities with broken lines spread through its
// data section: rejects in several chunks.
func chunkedFile(t *testing.T) []byte {
	t.Helper()
	secs := make([]string, 120)
	for i := range secs {
		secs[i] = fmt.Sprintf("C%03d US Equity", i)
	}
	spec := events.Spec{Program: "gethistory", Securities: secs, Fields: []string{"PX_LAST", "PX_OPEN", "PX_VOLUME"},
		Start: "2025-01-01", End: "2025-12-31"}
	var file bytes.Buffer
	if err := simdata.WriteReply(&file, spec, obs.MakeDate(2026, 1, 5), 3); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(file.String(), "\n")
	var out strings.Builder
	data := false
	for i, l := range lines {
		out.WriteString(l)
		if strings.HasPrefix(l, "START-OF-DATA") {
			data = true
		}
		if data && strings.HasPrefix(l, "END-OF-DATA") {
			data = false
		}
		if data && i%2000 == 0 {
			fmt.Fprintf(&out, "broken line %d without delimiters\n", i)
		}
	}
	return []byte(out.String())
}

// handleChunks delivers every chunk task published for a job to the chunk handler, in the
// order given (indexes of the tasks as published), and returns the deliveries.
func handleChunks(t *testing.T, env *natstest.Env, h *transformer.Handler, jobID string, order []int) []*stage.Message {
	t.Helper()
	ctx := context.Background()
	cons, err := env.JS.CreateConsumer(ctx, events.ChunksStream, jetstream.ConsumerConfig{
		FilterSubject: events.ChunkSubject(jobID), AckPolicy: jetstream.AckExplicitPolicy, InactiveThreshold: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(len(order), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*stage.Message
	for m := range batch.Messages() {
		msgs = append(msgs, stage.NewMessage(m))
	}
	if len(msgs) != len(order) {
		t.Fatalf("%d chunk tasks published, want %d", len(msgs), len(order))
	}
	for _, i := range order {
		if err := h.HandleChunk(ctx, msgs[i]); err != nil {
			t.Fatalf("chunk task %d: %v", i, err)
		}
	}
	return msgs
}

func chunkHandler(env *natstest.Env, chunkBytes int64) *transformer.Handler {
	return &transformer.Handler{Raw: &rawstore.Store{Objects: env.Streams.Raw, JS: env.JS}, Pub: stage.NewPublisher(env.JS), Now: time.Now,
		ChunkBytes: chunkBytes, Chunks: env.Streams.Chunks,
		CountChunks: func(ctx context.Context, id string, gen int) (int, error) {
			return natsx.RecordedChunks(ctx, env.JS, id, gen)
		}}
}

func TestTransformerChunksAddUpToTheWholeFile(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx := context.Background()
	file := chunkedFile(t)

	// The whole file in one piece, as a reference.
	whole := collected(t, env, "job-whole", file)
	whole.FileSize = int64(len(file))
	hw := chunkHandler(env, 0)
	if err := stage.Jobs(hw.Pub, events.Decode, hw).Handle(ctx, env.DeliverJob(&whole)); err != nil {
		t.Fatal(err)
	}
	ref, _ := env.LastJob(whole.ID)
	refBatches := batches(t, env, whole.ID)

	// Cut at the marks stored with the file (the event carries none) and read from their
	// offset, of a file stored compressed as the collector stores it (S2); cut at the marks of
	// the event, of a file stored plain in full chunks without marks, as earlier versions
	// stored them; and cut at the stored marks but read from the start (no JS for OpenAt).
	for _, variant := range []string{"marks", "marks-full-layout", "marks-without-openat"} {
		t.Run(variant, func(t *testing.T) {
			const n = 5
			h := chunkHandler(env, int64(len(file)/n+1))
			rec := tracetest.NewSpanRecorder()
			h.Raw.Tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
			var j events.Job
			switch variant {
			case "marks-full-layout":
				j = collectedAt(t, env, "job-chunked-"+variant, file, rawstore.ChunkLayoutFull)
				ms, err := chunk.Marks(bytes.NewReader(file), int64(len(file)/40), events.MaxFileMarks)
				if err != nil || len(ms) < 20 {
					t.Fatalf("%d marks, %v", len(ms), err)
				}
				for _, m := range ms {
					j.FileMarks = append(j.FileMarks, events.FileMark(m))
				}
			default:
				j = stored(t, env, "job-chunked-"+variant, file)
				if variant == "marks-without-openat" {
					h.Raw.JS = nil
				}
			}
			j.FileSize = int64(len(file))
			if err := stage.Jobs(h.Pub, events.Decode, h).Handle(ctx, env.DeliverJob(&j)); err != nil {
				t.Fatal(err)
			}
			if got, _ := env.LastJob(j.ID); got.State != events.Collected {
				t.Fatalf("state %q after the chunk tasks were published", got.State)
			}
			msgs := handleChunks(t, env, h, j.ID, []int{3, 0, 4, 1, 2})
			got, _ := env.LastJob(j.ID)
			if got.State != events.Transformed || ref.State != events.Transformed {
				t.Fatalf("state %q (whole file: %q)", got.State, ref.State)
			}
			bs := batches(t, env, j.ID)
			if got.Batches != len(bs) || got.RowsParsed != ref.RowsParsed || got.RowsRejected != ref.RowsRejected || ref.RowsRejected < n {
				t.Errorf("chunked: %d batches (published %d), %d rows, %d rejects; whole file: %d rows, %d rejects",
					got.Batches, len(bs), got.RowsParsed, got.RowsRejected, ref.RowsParsed, ref.RowsRejected)
			}
			// The same observations and rejects in the same order, with unique sequence numbers.
			slices.SortFunc(bs, func(a, b rowcodec.Batch) int { return a.Seq - b.Seq })
			seqs := map[int]bool{}
			chunks := map[int]bool{}
			var gotObs, refObs []obs.Observation
			var gotRej, refRej []obs.Reject
			for _, b := range bs {
				if seqs[b.Seq] {
					t.Errorf("seq %d twice", b.Seq)
				}
				seqs[b.Seq] = true
				chunks[b.Seq>>20] = true
				gotObs, gotRej = append(gotObs, b.Obs...), append(gotRej, b.Rejects...)
			}
			for _, b := range refBatches {
				refObs, refRej = append(refObs, b.Obs...), append(refRej, b.Rejects...)
			}
			if len(chunks) != n {
				t.Errorf("batches of %d chunks, want %d", len(chunks), n)
			}
			if len(gotObs) != len(refObs) {
				t.Fatalf("%d observations, whole file %d", len(gotObs), len(refObs))
			}
			for i := range refObs {
				if !gotObs[i].Equal(&refObs[i]) {
					t.Fatalf("observation %d: %+v, whole file %+v", i, gotObs[i], refObs[i])
				}
			}
			if !slices.Equal(gotRej, refRej) {
				t.Errorf("rejects\n%+v\nwhole file\n%+v", gotRej, refRej)
			}
			lines := strings.Split(string(file), "\n")
			for _, r := range gotRej {
				if lines[r.Line-1] != r.Raw {
					t.Errorf("reject at line %d: %q, the file's line is %q", r.Line, r.Raw, lines[r.Line-1])
				}
			}

			// A chunk redelivered after it was recorded, and one whose record is lost: neither counts
			// twice nor publishes anything new.
			if err := h.HandleChunk(ctx, msgs[1]); err != nil {
				t.Fatal(err)
			}
			if err := env.Streams.Chunks.Delete(ctx, natsx.ChunkKey(j.ID, 0, 2)); err != nil {
				t.Fatal(err)
			}
			if err := h.HandleChunk(ctx, msgs[2]); err != nil {
				t.Fatal(err)
			}
			if n := env.Count(events.JobsStream, events.JobSubject(j.ID, events.Transformed)); n != 1 {
				t.Errorf("%d transformed events, want 1", n)
			}
			if n := env.Count(events.RowsStream, events.RowsSubject(j.ID)); n != len(bs) {
				t.Errorf("%d batches after redeliveries, want %d", n, len(bs))
			}
			if again, _ := env.LastJob(j.ID); again.RowsParsed != got.RowsParsed || again.Batches != got.Batches {
				t.Errorf("after redeliveries: %d rows %d batches, want %d and %d", again.RowsParsed, again.Batches, got.RowsParsed, got.Batches)
			}
			// Chunks 1 to 4, and chunk 2 again once its record was lost, read from their offset.
			want := n
			if variant == "marks-without-openat" {
				want = 0
			}
			if got := offsetReads(rec); got != want {
				t.Errorf("%d chunks read from their offset, want %d", got, want)
			}
		})
	}
}

// A large file stored without marks (as earlier versions stored it, its event without marks
// too) is transformed in one piece: no chunk tasks, every batch from the handler of
// "collected".
func TestTransformerFileWithoutMarksInOnePiece(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx := context.Background()
	file := chunkedFile(t)
	h := chunkHandler(env, int64(len(file)/5+1))
	j := collected(t, env, "job-unmarked", file)
	j.FileSize = int64(len(file))
	if err := stage.Jobs(h.Pub, events.Decode, h).Handle(ctx, env.DeliverJob(&j)); err != nil {
		t.Fatal(err)
	}
	got, _ := env.LastJob(j.ID)
	if got.State != events.Transformed || got.RowsParsed == 0 {
		t.Fatalf("state %q, %d rows", got.State, got.RowsParsed)
	}
	if n := env.Count(events.ChunksStream, events.ChunkSubject(j.ID)); n != 0 {
		t.Errorf("%d chunk tasks for a file without marks", n)
	}
	for _, b := range batches(t, env, j.ID) {
		if b.Seq>>20 != 0 {
			t.Errorf("batch %d numbered as a chunk's", b.Seq)
		}
	}
}

// offsetReads counts the reads of a stored file from an offset among rec's spans.
func offsetReads(rec *tracetest.SpanRecorder) int {
	n := 0
	for _, s := range rec.Ended() {
		offset, read := false, true
		for _, a := range s.Attributes() {
			offset = offset || a.Key == "objectstore.offset"
			if a.Key == "objectstore.offset_read" {
				read = a.Value.AsBool()
			}
		}
		if s.Name() == "objectstore.get" && offset && read {
			n++
		}
	}
	return n
}

// stored stores file as the collector does, in chunks of 4 KiB (so that chunks start
// mid-chunk) with marks every 1/40 of it, and returns the job as collected, without marks in
// the event: the transformer finds them with the file.
func stored(t *testing.T, env *natstest.Env, id string, file []byte) events.Job {
	t.Helper()
	key := id + "/g0/file.bbg"
	raw := &rawstore.Store{Objects: env.Streams.Raw, ChunkSize: 4 << 10, MarkBytes: int64(len(file) / 40)}
	info, err := raw.Put(context.Background(), key, rawstore.Meta{}, bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Marks) < 20 {
		t.Fatalf("%d marks stored", len(info.Marks))
	}
	j := events.Job{ID: id, Version: 42, FileKey: key, FileSize: info.Size, Spec: events.Spec{Program: "gethistory"}}
	return j.Advance(events.Collected, time.Now())
}

// collectedAt stores file in a layout that rawstore.OpenObjectAt reads from an offset, in chunks
// of 4 KiB (so that chunks start mid-chunk): the full layout, or the S2 layout as the collector
// stores it. It returns the job as collected.
func collectedAt(t *testing.T, env *natstest.Env, id string, file []byte, layout string) events.Job {
	t.Helper()
	ctx := context.Background()
	key := id + "/g0/file.bbg"
	const chunkSize = 4 << 10
	meta := jetstream.ObjectMeta{Name: key, Opts: &jetstream.ObjectMetaOptions{ChunkSize: chunkSize},
		Headers: map[string][]string{rawstore.ChunkLayoutHeader: {layout}}}
	switch layout {
	case rawstore.ChunkLayoutFull:
		if _, err := env.Streams.Raw.Put(ctx, meta, bytes.NewReader(file)); err != nil {
			t.Fatal(err)
		}
	case rawstore.ChunkLayoutS2:
		meta.Opts.ChunkSize = uint32(rawstore.S2ChunkSize(chunkSize))
		r := rawstore.NewS2Chunks(bytes.NewReader(file), chunkSize)
		if _, err := env.Streams.Raw.Put(ctx, meta, r); err != nil {
			t.Fatal(err)
		}
		rawstore.SetPlainHeaders(meta.Headers, chunkSize, r.Size(), r.SHA256())
		if err := env.Streams.Raw.UpdateMeta(ctx, key, meta); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("layout %q", layout)
	}
	j := events.Job{ID: id, Version: 42, FileKey: key, Spec: events.Spec{Program: "gethistory"}}
	return j.Advance(events.Collected, time.Now())
}

func TestTransformerFailsOnABadChunk(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx := context.Background()
	file := chunkedFile(t)
	// Truncated: only the last chunk sees the data end without END-OF-DATA.
	file = file[:len(file)*9/10]
	const n = 4
	h := chunkHandler(env, int64(len(file)/n+1))
	j := stored(t, env, "job-bad-chunk", file)
	if err := stage.Jobs(h.Pub, events.Decode, h).Handle(ctx, env.DeliverJob(&j)); err != nil {
		t.Fatal(err)
	}
	handleChunks(t, env, h, j.ID, []int{3, 0, 1, 2})
	got, _ := env.LastJob(j.ID)
	if got.State != events.Failed || !strings.Contains(got.Error, j.FileKey) {
		t.Errorf("state %q error %q", got.State, got.Error)
	}
	if n := env.Count(events.JobsStream, events.JobSubject(j.ID, events.Transformed)); n != 0 {
		t.Errorf("%d transformed events for a job that failed", n)
	}

	// A store that fails mid-read: retried, the job not failed.
	j2 := collected(t, env, "job-chunk-read", file)
	j2.FileSize = int64(len(file))
	task := events.ChunkTask{Job: j2, Chunk: 1, Chunks: 2, Start: events.FileMark{Offset: 10, Line: 2}}
	data, _ := task.Encode()
	hf := chunkHandler(env, 1)
	hf.Raw = &rawstore.Store{Objects: failingStore{env.Streams.Raw}}
	err := hf.HandleChunk(ctx, env.Deliver(events.ChunksStream, events.ChunkSubject(j2.ID), data))
	if err == nil || stage.IsPermanent(err) || !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("HandleChunk = %v, want a transient error wrapping the read timeout", err)
	}
	if got, ok := env.LastJob(j2.ID); ok {
		t.Errorf("event %q published: a store read failure must not fail the job", got.State)
	}
}

// TestChunkReadsAreTraced: a chunk read from its offset is an "objectstore.get" span with the
// offset and exactly the chunk's bytes.
func TestChunkReadsAreTraced(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx := context.Background()
	file := chunkedFile(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	const n = 4
	h := chunkHandler(env, int64(len(file)/n+1))
	h.Raw.Tracer = tp.Tracer("test")
	j := stored(t, env, "job-traced", file)
	if err := stage.Jobs(h.Pub, events.Decode, h).Handle(ctx, env.DeliverJob(&j)); err != nil {
		t.Fatal(err)
	}
	msgs := handleChunks(t, env, h, j.ID, []int{0, 1, 2, 3})
	var want []string
	for _, m := range msgs[1:] {
		task, err := events.DecodeChunkTask(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		end := task.End
		if end == 0 {
			end = int64(len(file))
		}
		want = append(want, fmt.Sprintf("%d+%d", task.Start.Offset, end-task.Start.Offset))
	}
	var got []string
	for _, s := range rec.Ended() {
		attrs := map[attribute.Key]attribute.Value{}
		for _, a := range s.Attributes() {
			attrs[a.Key] = a.Value
		}
		if _, ok := attrs["objectstore.offset"]; s.Name() != "objectstore.get" || !ok {
			continue // reads from the start: each chunk's header
		}
		got = append(got, fmt.Sprintf("%d+%d", attrs["objectstore.offset"].AsInt64(), attrs["objectstore.bytes_read"].AsInt64()))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("objectstore.get spans (offset+bytes) %v, want %v", got, want)
	}
}

// TestSnapshotTimeAndWarnings: a getdata file's batches carry its TIMESTARTED (the snapshot's
// key), and "transformed" counts its unknown fields, return codes and rejected lines.
func TestSnapshotTimeAndWarnings(t *testing.T) {
	env := natstest.NewEnv(t)
	h := &transformer.Handler{Raw: &rawstore.Store{Objects: env.Streams.Raw}, Pub: stage.NewPublisher(env.JS), Now: time.Now}
	file := "START-OF-FILE\nPROGRAMNAME=getdata\nRUNDATE=20260105\nSTART-OF-FIELDS\nPX_LAST\nPX_NOPE\nEND-OF-FIELDS\n" +
		"TIMESTARTED=Mon Jan  5 14:30:05 EST 2026\nSTART-OF-DATA\nIBM US Equity|0|2|101.5|FLD UNKNOWN|\nBAD US Equity|10|2| | |\n" +
		"broken\nEND-OF-DATA\nEND-OF-FILE\n"
	j := collected(t, env, "job-snap", []byte(file))
	j.Spec.Program = events.GetData
	if err := stage.Jobs(h.Pub, events.Decode, h).Handle(context.Background(), env.DeliverJob(&j)); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 1, 5, 19, 30, 5, 0, time.UTC).Unix()
	for _, b := range batches(t, env, j.ID) {
		if b.SnapshotAt != want {
			t.Errorf("batch %d: SnapshotAt %d, want %d (TIMESTARTED in UTC)", b.Seq, b.SnapshotAt, want)
		}
	}
	got, _ := env.LastJob(j.ID)
	if w := got.Warnings.String(); w != "1 unknown field (PX_NOPE); 1 security with return codes (RC=10: 1); 1 rejected line" {
		t.Errorf("warnings %q", w)
	}
}

// A chunk task not cut at marks (only earlier versions, which scanned files, made them) fails
// its job with the reason, rather than being read some other way: a replay cuts the file again.
func TestChunkTaskWithoutMarksFailsTheJob(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx := context.Background()
	file := chunkedFile(t)
	j := stored(t, env, "job-old-task", file)
	task := events.ChunkTask{Job: j, Chunk: 1, Chunks: 3}
	data, err := task.Encode()
	if err != nil {
		t.Fatal(err)
	}
	h := chunkHandler(env, int64(len(file)/3+1))
	if err := h.HandleChunk(ctx, env.Deliver(events.ChunksStream, events.ChunkSubject(j.ID), data)); err != nil {
		t.Fatal(err)
	}
	got, _ := env.LastJob(j.ID)
	if got.State != events.Failed || !strings.Contains(got.Error, "not cut at marks") {
		t.Errorf("state %q error %q, want failed: not cut at marks", got.State, got.Error)
	}
	if n := env.Count(events.RowsStream, events.RowsSubject(j.ID)); n != 0 {
		t.Errorf("%d row batches published for the task", n)
	}
}

// TestTransformerParts: the files of a job of several parts are transformed as chunk tasks
// numbered across the files (a large file cut at its marks, a small one whole): every
// observation of every file is published once, under unique sequence numbers, and
// "transformed" carries the sums of all the parts.
func TestTransformerParts(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx := context.Background()
	big := chunkedFile(t)
	var small bytes.Buffer
	if err := simdata.WriteReply(&small, events.Spec{Program: "gethistory", Securities: []string{"S1 US Equity", "S2 US Equity"},
		Fields: []string{"PX_LAST"}, Start: "2025-01-01", End: "2025-03-31"}, obs.MakeDate(2026, 1, 5), 3); err != nil {
		t.Fatal(err)
	}
	var want []obs.Observation
	var wantRejects int64
	for _, f := range [][]byte{big, small.Bytes()} {
		ref := collected(t, env, fmt.Sprintf("job-ref-%d", len(want)), f)
		h := chunkHandler(env, 0)
		if err := stage.Jobs(h.Pub, events.Decode, h).Handle(ctx, env.DeliverJob(&ref)); err != nil {
			t.Fatal(err)
		}
		got, _ := env.LastJob(ref.ID)
		wantRejects += got.RowsRejected
		for _, b := range batches(t, env, ref.ID) {
			want = append(want, b.Obs...)
		}
	}
	const n = 5
	h := chunkHandler(env, int64(len(big)/n+1))
	p0 := stored(t, env, "job-parts-0", big)
	p1 := collected(t, env, "job-parts-1", small.Bytes()) // stored without marks: in one piece
	p1.FileSize = int64(small.Len())
	j := events.Job{ID: "job-parts", Version: 42, Spec: events.Spec{Program: "gethistory"}, Parts: []events.Part{
		{VendorRequestID: "mpa", FileKey: p0.FileKey, FileSize: p0.FileSize},
		{VendorRequestID: "mpb", FileKey: p1.FileKey, FileSize: p1.FileSize}}}
	j = j.Advance(events.Collected, time.Now())
	if err := stage.Jobs(h.Pub, events.Decode, h).Handle(ctx, env.DeliverJob(&j)); err != nil {
		t.Fatal(err)
	}
	msgs := handleChunks(t, env, h, j.ID, []int{5, 3, 0, 4, 1, 2})
	for _, m := range msgs {
		if task, err := events.DecodeChunkTask(m.Data()); err != nil || task.Parts != nil || task.PartFile != j.Parts[task.Part].FileKey {
			t.Errorf("chunk task %+v (%v): want its part's file, without the job's parts", task, err)
		}
	}
	got, _ := env.LastJob(j.ID)
	bs := batches(t, env, j.ID)
	if got.State != events.Transformed || got.Batches != len(bs) || got.RowsParsed != int64(len(want)) ||
		got.RowsRejected != wantRejects || got.FileKey != "" {
		t.Fatalf("transformed: state %q, %d batches (published %d), %d rows (want %d), %d rejects (want %d), file %q",
			got.State, got.Batches, len(bs), got.RowsParsed, len(want), got.RowsRejected, wantRejects, got.FileKey)
	}
	seqs := map[int]bool{}
	var gotObs []obs.Observation
	for _, b := range bs {
		if seqs[b.Seq] {
			t.Errorf("seq %d twice", b.Seq)
		}
		seqs[b.Seq] = true
		gotObs = append(gotObs, b.Obs...)
	}
	key := func(a, b obs.Observation) int {
		return cmp.Or(strings.Compare(a.Security, b.Security), strings.Compare(a.Field, b.Field), int(a.Date-b.Date))
	}
	slices.SortFunc(gotObs, key)
	slices.SortFunc(want, key)
	if len(gotObs) != len(want) {
		t.Fatalf("%d observations, the files hold %d", len(gotObs), len(want))
	}
	for i := range want {
		if !gotObs[i].Equal(&want[i]) {
			t.Fatalf("observation %d: %+v, want %+v", i, gotObs[i], want[i])
		}
	}
}
