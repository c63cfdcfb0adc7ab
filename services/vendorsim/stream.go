package vendorsim

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/klauspost/compress/gzip"
)

// errCut stops the copy where an injected truncation cuts the file.
var errCut = errors.New("vendorsim: injected truncation")

// streamReply sends the stored reply decoded, applying the download faults drawn for this
// request (cutAt, flipAt: -1 for none; Faults.SlowBody), through gzip again when asked. Faults
// act on the decoded bytes, so they land at the same place in the file whether or not it is
// compressed.
func (s *Server) streamReply(w http.ResponseWriter, r *http.Request, req *request, p *prepared, gz bool, cutAt, flipAt int64) {
	f, err := os.Open(p.gzPath)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, "opening the reply: "+err.Error())
		return
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, "reading the reply: "+err.Error())
		return
	}
	if gz {
		w.Header().Set("Content-Encoding", "gzip")
	} else {
		w.Header().Set("Content-Length", strconv.FormatInt(p.size, 10))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	var out io.Writer = w
	if slow := s.opts.Faults.SlowBody; slow > 0 {
		out = &slowWriter{w: w, rc: http.NewResponseController(w), pause: slow, done: r.Context().Done()}
	}
	var zw *gzip.Writer
	if gz {
		zw = newGzip(out)
		out = zw
	}
	_, err = io.Copy(&faultWriter{w: out, cutAt: cutAt, flipAt: flipAt}, zr)
	if errors.Is(err, errCut) {
		if zw != nil {
			zw.Flush() // what was copied reaches the client, without the gzip trailer
		}
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // close the connection: the body ends short
	}
	if err == nil && zw != nil {
		err = zw.Close()
	}
	if err != nil {
		// The status line is sent; all that is left is to cut the body so the client sees it.
		s.log.Warn("vendorsim download failed", "key", req.key(), "error", err)
		panic(http.ErrAbortHandler)
	}
}

// faultWriter cuts the stream at cutAt and changes the byte at flipAt (-1: never).
type faultWriter struct {
	w             io.Writer
	n             int64
	cutAt, flipAt int64
}

func (f *faultWriter) Write(p []byte) (int, error) {
	if f.cutAt >= 0 && f.n+int64(len(p)) > f.cutAt {
		k := int(f.cutAt - f.n)
		n, err := f.w.Write(p[:k])
		f.n += int64(n)
		if err != nil {
			return n, err
		}
		return n, errCut
	}
	if f.flipAt >= f.n && f.flipAt < f.n+int64(len(p)) {
		q := append([]byte(nil), p...) // p belongs to the caller
		q[f.flipAt-f.n] ^= 0x01        // a digit stays a digit-like byte: only the digest notices
		p = q
	}
	n, err := f.w.Write(p)
	f.n += int64(n)
	return n, err
}

// slowWriter pauses after every 64 KiB, flushing first so the client sees a trickle.
type slowWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	pause   time.Duration
	pending int
	done    <-chan struct{}
}

func (s *slowWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.pending += n
	if err != nil || s.pending < 64<<10 {
		return n, err
	}
	s.pending = 0
	s.rc.Flush()
	t := time.NewTimer(s.pause)
	defer t.Stop()
	select {
	case <-s.done:
		return n, errors.New("client went away")
	case <-t.C:
	}
	return n, nil
}
