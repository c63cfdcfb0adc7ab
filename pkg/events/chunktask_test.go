package events

import (
	"strings"
	"testing"
)

// TestDecodeChunkTask: tasks with and without a range decode; a range that does not fit the
// chunk's place (a first chunk with a start, a last one with an end, an end before the start)
// is refused with the job and the chunk named.
func TestDecodeChunkTask(t *testing.T) {
	job := Job{ID: "j1", FileKey: "j1/g0/f"}
	mark := FileMark{Offset: 1000, Line: 20}
	for _, tc := range []struct {
		name string
		task ChunkTask
		ok   bool
	}{
		{"scanned", ChunkTask{Job: job, Chunk: 1, Chunks: 3}, true},
		{"first at marks", ChunkTask{Job: job, Chunk: 0, Chunks: 3, End: 1000}, true},
		{"middle at marks", ChunkTask{Job: job, Chunk: 1, Chunks: 3, Start: mark, End: 2000}, true},
		{"last at marks", ChunkTask{Job: job, Chunk: 2, Chunks: 3, Start: mark}, true},
		{"first with a start", ChunkTask{Job: job, Chunk: 0, Chunks: 3, Start: mark, End: 2000}, false},
		{"middle without an end", ChunkTask{Job: job, Chunk: 1, Chunks: 3, Start: mark}, false},
		{"last with an end", ChunkTask{Job: job, Chunk: 2, Chunks: 3, Start: mark, End: 2000}, false},
		{"end before start", ChunkTask{Job: job, Chunk: 1, Chunks: 3, Start: mark, End: 900}, false},
		{"start without a line", ChunkTask{Job: job, Chunk: 1, Chunks: 3, Start: FileMark{Offset: 1000}, End: 2000}, false},
		{"chunk out of range", ChunkTask{Job: job, Chunk: 3, Chunks: 3}, false},
		// A job of several parts: chunks numbered across the files, each in its place in its own.
		{"part's file whole", ChunkTask{Job: job, Chunk: 4, Chunks: 6, Part: 1, PartFile: "j1/g0/p1/o", FileChunks: 1}, true},
		{"part's first chunk", ChunkTask{Job: job, Chunk: 2, Chunks: 6, Part: 1, PartFile: "j1/g0/p1/o", FileChunks: 3, End: 1000}, true},
		{"part's last chunk", ChunkTask{Job: job, Chunk: 4, Chunks: 6, Part: 1, PartFile: "j1/g0/p1/o", FileChunk: 2, FileChunks: 3, Start: mark}, true},
		{"part's first chunk with a start", ChunkTask{Job: job, Chunk: 2, Chunks: 6, Part: 1, PartFile: "j1/g0/p1/o", FileChunks: 3, Start: mark, End: 2000}, false},
		{"part's chunk out of its file", ChunkTask{Job: job, Chunk: 2, Chunks: 6, Part: 1, PartFile: "j1/g0/p1/o", FileChunk: 3, FileChunks: 3}, false},
		{"part without its file", ChunkTask{Job: job, Chunk: 2, Chunks: 6, Part: 1, FileChunks: 1}, false},
	} {
		data, err := tc.task.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeChunkTask(data)
		if tc.ok {
			if err != nil || got.Start != tc.task.Start || got.End != tc.task.End || got.Chunk != tc.task.Chunk {
				t.Errorf("%s: %+v, %v", tc.name, got, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), `"j1"`) {
			t.Errorf("%s: error %v, want one naming the job", tc.name, err)
		}
	}
}
