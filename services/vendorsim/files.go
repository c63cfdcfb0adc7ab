package vendorsim

import (
	"bufio"
	"cmp"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/marketpipe/marketpipe/pkg/simdata"
)

// prepared is a request's reply file as written once: stored gzipped, with the size and digest
// of the decoded file.
type prepared struct {
	gzPath string
	size   int64
	digest string // sha512=<base64>
}

// prepare writes the request's reply file on first need, as a vendor prepares its output once
// and then serves it, and returns it. A failed preparation is not kept: the next call retries.
// Concurrent callers wait for the one preparing.
func (s *Server) prepare(req *request) (*prepared, error) {
	req.prepMu.Lock()
	defer req.prepMu.Unlock()
	if req.prep == nil {
		p, err := s.writeReply(req)
		if err != nil {
			return nil, err
		}
		req.prep = p
	}
	return req.prep, nil
}

// writeReply generates the reply file once, computing its size and SHA-512 while another
// goroutine compresses it into a file of the store. Only the gzip form is stored, as a server
// storing compressed content does: the plain file would cost more to write (the kernel's
// copy of 4 to 5 times the bytes) than decoding costs the rare client that does not take gzip.
func (s *Server) writeReply(req *request) (p *prepared, err error) {
	gz, err := s.files.create(req.key() + ".*.gz")
	if err != nil {
		return nil, err
	}
	p = &prepared{gzPath: gz.Name()}
	pr, pw := io.Pipe()
	zdone := make(chan error, 1)
	go func() { zdone <- compressTo(gz, pr) }()
	h := sha512.New()
	cw := &countWriter{w: io.MultiWriter(h, pw)}
	werr := simdata.WriteReplyLayout(cw, req.spec, req.runDate, req.seed, req.layout)
	pw.CloseWithError(werr) // nil: the compressor reads EOF
	if err = cmp.Or(werr, <-zdone); err != nil {
		os.Remove(p.gzPath)
		return nil, err
	}
	p.size, p.digest = cw.n, "sha512="+base64.StdEncoding.EncodeToString(h.Sum(nil))
	return p, nil
}

// compressTo writes the gzip form of what r gives into f and closes f. It stops r's writer
// when it fails.
func compressTo(f *os.File, r *io.PipeReader) error {
	bw := bufio.NewWriterSize(f, 64<<10)
	zw := newGzip(bw)
	_, err := io.CopyBuffer(zw, r, make([]byte, 64<<10))
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	err = cmp.Or(err, f.Close())
	if err != nil {
		r.CloseWithError(err)
	}
	return err
}

// newGzip compresses at BestSpeed with klauspost/compress, about twice as fast as compress/gzip
// at its BestSpeed: the default level would make the simulator, not the client, the
// bottleneck of every large-file test.
func newGzip(w io.Writer) *gzip.Writer {
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	return zw
}

// serveFile answers with a stored file as it is: a plain copy, which the connection makes with
// sendfile when it can. It handles HEAD, conditional and range requests.
func serveFile(w http.ResponseWriter, r *http.Request, path string, modified time.Time) {
	f, err := os.Open(path)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, "opening the reply: "+err.Error())
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, "opening the reply: "+err.Error())
		return
	}
	// ServeContent leaves Content-Length out when Content-Encoding is set, which would make a
	// gzip download chunked (and unable to use sendfile); the file's length is right.
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	http.ServeContent(w, r, "", modified, f)
}

// errClosed is the error of a preparation after Close.
var errClosed = errors.New("vendorsim: server closed")

// fileStore holds the prepared files: in Options.Dir, or in a temporary directory made when the
// first file is prepared. It refers to no Server, so that a cleanup attached to one can remove
// the files.
type fileStore struct {
	mu     sync.Mutex
	dir    string   // "": no temporary directory yet
	temp   bool     // dir is ours, removed whole
	paths  []string // files made in a caller's Dir
	closed bool
}

// create makes a new file in the store, named by pattern as os.CreateTemp does.
func (st *fileStore) create(pattern string) (*os.File, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return nil, errClosed
	}
	if st.dir == "" {
		d, err := os.MkdirTemp("", "vendorsim-")
		if err != nil {
			return nil, err
		}
		st.dir, st.temp = d, true
	}
	f, err := os.CreateTemp(st.dir, pattern)
	if err != nil {
		return nil, err
	}
	if !st.temp {
		st.paths = append(st.paths, f.Name())
	}
	return f, nil
}

// close removes every file of the store, and the store's directory when it is temporary. Later
// preparations fail.
func (st *fileStore) close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return nil
	}
	st.closed = true
	if st.temp {
		return os.RemoveAll(st.dir)
	}
	var errs []error
	for _, p := range st.paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
