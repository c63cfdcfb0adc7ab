package rawstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go/jetstream"
)

// ChunkLayoutS2 (a value of ChunkLayoutHeader) means that each chunk of the object is one
// complete S2 stream (github.com/klauspost/compress/s2, framed, with CRCs) of exactly the
// PlainChunkSizeHeader bytes of the file, the last of the rest. The object's bytes are the
// concatenation of those streams, which any S2 stream reader (s2d) decodes to the file. The
// chunk holding a byte of the file follows from its offset, as in the full layout, and each
// chunk decodes alone, so OpenObjectAt reads from an offset too.
//
// Put stores raw files so: nats-server then stores, replicates and serves a
// quarter of the bytes, and spends no CPU compressing and decompressing its blocks (the raw
// store's stream is not compressed by the server).
const ChunkLayoutS2 = "s2"

// Headers of an object in the S2 layout. PlainSizeHeader and PlainSHA256Header describe the
// file (the decoded bytes) and are set once the whole file is stored; an object without them is
// incomplete.
const (
	PlainChunkSizeHeader = "Plain-Chunk-Size"
	PlainSizeHeader      = "Plain-Size"
	PlainSHA256Header    = "Plain-SHA-256"
)

// maxS2Block is the largest block of an S2 stream (s2.WriterBlockSize), so the largest plain
// chunk of the layout.
const maxS2Block = 4 << 20

// s2StreamOverhead bounds what an S2 stream of one block adds to the block: the stream
// identifier (10 bytes) and a chunk header with its CRC (8). A block that does not compress is
// stored as it is.
const s2StreamOverhead = 10 + 8

// S2ChunkSize is the object chunk size (ObjectMetaOptions.ChunkSize) to store a file in plain
// chunks of plainChunk bytes in the S2 layout: room for one S2 stream of plainChunk bytes that do
// not compress.
func S2ChunkSize(plainChunk int) int { return plainChunk + s2StreamOverhead }

// S2Chunks reads a file from r and returns it in the S2 layout: each Read returns one S2
// stream of plainChunk bytes of the file (fewer for the last), so that the object store, which
// stores what one Read returns as one chunk, stores one stream per chunk. Read's buffer must hold
// S2ChunkSize(plainChunk) bytes. Size and SHA256 describe the file read so far.
type S2Chunks struct {
	r          io.Reader
	plainChunk int
	block      []byte
	out        bytes.Buffer
	w          *s2.Writer
	sum        hash.Hash
	size       int64
	err        error
}

// NewS2Chunks returns an S2Chunks reading r in blocks of plainChunk bytes (at least 4 KiB, at
// most 4 MiB: S2's block sizes).
func NewS2Chunks(r io.Reader, plainChunk int) *S2Chunks {
	return &S2Chunks{r: r, plainChunk: plainChunk, block: make([]byte, plainChunk), sum: sha256.New(),
		w: s2.NewWriter(nil, s2.WriterConcurrency(1), s2.WriterBlockSize(plainChunk))}
}

// Read returns the next chunk, a whole S2 stream, or the error that ended r (io.EOF at its end).
func (c *S2Chunks) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if len(p) < S2ChunkSize(c.plainChunk) {
		return 0, fmt.Errorf("s2 chunks: read buffer of %d bytes, want %d", len(p), S2ChunkSize(c.plainChunk))
	}
	n, err := io.ReadFull(c.r, c.block)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	if n == 0 {
		c.err = err
		if err == nil {
			c.err = io.EOF
		}
		return 0, c.err
	}
	c.sum.Write(c.block[:n])
	c.size += int64(n)
	c.out.Reset()
	c.w.Reset(&c.out)
	if _, werr := c.w.Write(c.block[:n]); werr != nil {
		c.err = fmt.Errorf("s2 chunks: compress: %w", werr)
		return 0, c.err
	}
	if werr := c.w.Close(); werr != nil {
		c.err = fmt.Errorf("s2 chunks: compress: %w", werr)
		return 0, c.err
	}
	if c.out.Len() > len(p) {
		c.err = fmt.Errorf("s2 chunks: a stream of %d bytes for %d plain bytes, more than %d", c.out.Len(), n, len(p))
		return 0, c.err
	}
	c.err = err // io.EOF after a short block: the next Read returns it
	return copy(p, c.out.Bytes()), nil
}

// Size is the plain bytes read so far.
func (c *S2Chunks) Size() int64 { return c.size }

// SHA256 is the hex SHA-256 of the plain bytes read so far.
func (c *S2Chunks) SHA256() string { return hex.EncodeToString(c.sum.Sum(nil)) }

// SetPlainHeaders records on meta what an S2 layout of plainChunk-byte chunks needs to be read
// and describes the stored file: its size and SHA-256.
func SetPlainHeaders(h map[string][]string, plainChunk int, size int64, sha string) {
	h[ChunkLayoutHeader] = []string{ChunkLayoutS2}
	h[PlainChunkSizeHeader] = []string{strconv.Itoa(plainChunk)}
	h[PlainSizeHeader] = []string{strconv.FormatInt(size, 10)}
	h[PlainSHA256Header] = []string{sha}
}

// PlainFile describes the file stored as info: its size, its hex SHA-256 (decoded from the
// object's digest when the object is the file itself), and whether it is compressed in the S2
// layout. An S2 object without its plain headers was not completely stored: an error.
func PlainFile(info *jetstream.ObjectInfo) (size int64, sha string, compressed bool, err error) {
	if info.Headers.Get(ChunkLayoutHeader) != ChunkLayoutS2 {
		sha, err := objectSHA256(info.Digest)
		return int64(info.Size), sha, false, err
	}
	lay, err := s2Layout(info)
	if err != nil {
		return 0, "", true, err
	}
	sha = info.Headers.Get(PlainSHA256Header)
	if len(sha) != sha256.Size*2 {
		return 0, "", true, fmt.Errorf("object %s: header %s is %q, not a SHA-256", info.Name, PlainSHA256Header, sha)
	}
	return lay.size, sha, true, nil
}

// objectSHA256 turns the object store's "SHA-256=<base64url>" digest into hex.
func objectSHA256(digest string) (string, error) {
	b64, ok := strings.CutPrefix(digest, "SHA-256=")
	if !ok {
		return "", fmt.Errorf("unexpected object digest %q", digest)
	}
	raw, err := base64.URLEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("object digest %q: %w", digest, err)
	}
	return hex.EncodeToString(raw), nil
}

// plainLayout is an S2 object's chunking of the file.
type plainLayout struct {
	chunk uint64 // plain bytes of each chunk but the last
	size  int64  // the file's bytes
}

// s2Layout reads an S2 object's plain headers and checks them against its chunk count.
func s2Layout(info *jetstream.ObjectInfo) (plainLayout, error) {
	if len(info.Headers.Values(PlainSizeHeader)) == 0 {
		return plainLayout{}, fmt.Errorf("object %s was not completely stored: it has no header %s", info.Name, PlainSizeHeader)
	}
	chunk, err := strconv.ParseUint(info.Headers.Get(PlainChunkSizeHeader), 10, 32)
	// A chunk is one S2 block, which S2 bounds; the readers allocate a chunk's size.
	if err != nil || chunk == 0 || chunk > maxS2Block {
		return plainLayout{}, fmt.Errorf("object %s: header %s is %q, not a chunk size (1 to %d)", info.Name,
			PlainChunkSizeHeader, info.Headers.Get(PlainChunkSizeHeader), maxS2Block)
	}
	size, err := strconv.ParseInt(info.Headers.Get(PlainSizeHeader), 10, 64)
	if err != nil || size < 0 {
		return plainLayout{}, fmt.Errorf("object %s: header %s is %q, not a size",
			info.Name, PlainSizeHeader, info.Headers.Get(PlainSizeHeader))
	}
	if want := (uint64(size) + chunk - 1) / chunk; uint64(info.Chunks) != want {
		return plainLayout{}, fmt.Errorf("object %s: %d chunks, but %d bytes in chunks of %d make %d",
			info.Name, info.Chunks, size, chunk, want)
	}
	return plainLayout{chunk: chunk, size: size}, nil
}

// PlainReader returns a reader of the file stored as info, whose stored bytes r yields from
// the object's start: r itself, or for the S2 layout r decoded, with an error at the end if
// the file is not of the size recorded.
func PlainReader(info *jetstream.ObjectInfo, r io.Reader) (io.Reader, error) {
	if info.Headers.Get(ChunkLayoutHeader) != ChunkLayoutS2 {
		return r, nil
	}
	lay, err := s2Layout(info)
	if err != nil {
		return nil, err
	}
	return &sizedReader{r: s2.NewReader(r, s2.ReaderMaxBlockSize(int(lay.chunk))), want: lay.size, name: info.Name}, nil
}

// sizedReader fails at the end of a stream that is not of the size expected.
type sizedReader struct {
	r    io.Reader
	want int64
	n    int64
	name string
}

func (s *sizedReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if s.n > s.want {
		return n, fmt.Errorf("object %s decodes to more than its %d bytes", s.name, s.want)
	}
	if err == io.EOF && s.n != s.want {
		return n, fmt.Errorf("object %s decodes to %d bytes, want %d", s.name, s.n, s.want)
	}
	if err != nil && err != io.EOF {
		return n, fmt.Errorf("decode object %s: %w", s.name, err)
	}
	return n, err
}

// s2Chunk decodes one chunk of an S2 object, which must hold want plain bytes, into buf.
type s2Chunk struct {
	dec *s2.Reader
	src bytes.Reader
	buf []byte
}

func newS2Chunk(plainChunk uint64) *s2Chunk {
	c := &s2Chunk{buf: make([]byte, plainChunk)}
	c.dec = s2.NewReader(nil, s2.ReaderMaxBlockSize(int(plainChunk)))
	return c
}

func (c *s2Chunk) decode(data []byte, want uint64) ([]byte, error) {
	if want > uint64(len(c.buf)) {
		return nil, fmt.Errorf("a chunk of %d plain bytes, more than the layout's %d", want, len(c.buf))
	}
	c.src.Reset(data)
	c.dec.Reset(&c.src)
	if _, err := io.ReadFull(c.dec, c.buf[:want]); err != nil {
		return nil, fmt.Errorf("decode: %w (want %d plain bytes)", err, want)
	}
	var one [1]byte
	if n, err := c.dec.Read(one[:]); n != 0 || err != io.EOF {
		return nil, fmt.Errorf("decode: more than %d plain bytes", want)
	}
	return c.buf[:want], nil
}
