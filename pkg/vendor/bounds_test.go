package vendor_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/bounds"
	"github.com/marketpipe/marketpipe/pkg/hostile"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// A download's Read fails, before the body is all read, once the file passes its listed size
// with the margin or a gzip body inflates past the ratio; within them it reads to the end.
func TestDownloadBounds(t *testing.T) {
	bomb, err := hostile.GzipBytes(hostile.ManyLinesFile(4 << 20))
	if err != nil {
		t.Fatal(err)
	}
	plain := func() io.Reader { return hostile.ManyLinesFile(1 << 20) } // 26 MiB and a little
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/bomb") {
			w.Header().Set("Content-Encoding", "gzip")
			io.Copy(w, bytes.NewReader(bomb))
			return
		}
		io.Copy(w, plain())
	}))
	t.Cleanup(srv.Close)
	c, err := vendor.New(vendor.Config{BaseURL: srv.URL + "/eap", Account: "acct", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	size, _ := io.Copy(io.Discard, plain())
	for _, tc := range []struct {
		name, key string
		listed    int64
		want      string // "" for none
	}{
		{"as listed", "file", size, ""},
		{"not listed", "file", -1, ""},
		{"within the margin", "file", size - size/20, ""},
		{"larger than listed", "file", 16 << 20, "download file: file larger than its listed 16 MiB + margin (18 MiB)"},
		{"gzip bomb", "bomb", -1, "download bomb: gzip inflated past 200x the compressed size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := c.Download(context.Background(), tc.key, "", tc.listed)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			n, err := io.Copy(io.Discard, rc)
			if tc.want == "" {
				if err != nil || n != size {
					t.Errorf("read %d bytes, %v; want %d", n, err, size)
				}
				return
			}
			if !errors.Is(err, bounds.ErrExceeded) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if n > 20<<20 {
				t.Errorf("read %d bytes before the bound", n)
			}
		})
	}
}
