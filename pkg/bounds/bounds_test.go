package bounds_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/marketpipe/marketpipe/pkg/bounds"
)

func TestFileLimit(t *testing.T) {
	for _, tc := range []struct{ listed, want int64 }{
		{-1, bounds.MaxFileBytes},
		{0, 1 << 20},
		{4 << 20, 4<<20 + 256<<10 + 1<<20},
		{bounds.MaxFileBytes, bounds.MaxFileBytes},
		{bounds.MaxFileBytes + 1, bounds.MaxFileBytes},
	} {
		if got := bounds.FileLimit(tc.listed); got != tc.want {
			t.Errorf("FileLimit(%d) = %d, want %d", tc.listed, got, tc.want)
		}
	}
	if err := bounds.CheckFileSize(5<<20, 4<<20); err != nil {
		t.Errorf("5 MiB listed as 4: %v, want within the margin", err)
	}
	err := bounds.CheckFileSize(6<<20, 4<<20)
	if !errors.Is(err, bounds.ErrExceeded) || err.Error() != "file larger than its listed 4 MiB + margin (5.25 MiB)" {
		t.Errorf("6 MiB listed as 4: %v", err)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{300: "300 bytes", 16 << 20: "16 MiB", 5<<20 + 256<<10: "5.25 MiB", 3 << 30: "3 GiB", 1536: "1.5 KiB"} {
		if got := bounds.Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

// InflateGuard lets an ordinary stream through and stops a bomb.
func TestInflateGuard(t *testing.T) {
	inflate := func(plain []byte) (int64, error) {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(plain)
		zw.Close()
		var g bounds.InflateGuard
		zr, err := gzip.NewReader(g.Compressed(&b))
		if err != nil {
			return 0, err
		}
		return io.Copy(io.Discard, g.Plain(zr))
	}
	var text strings.Builder
	for i := range 200000 {
		text.WriteString("S" + strings.Repeat("x", i%7) + " US Equity|20260105|123.45|\n")
	}
	if n, err := inflate([]byte(text.String())); err != nil || n != int64(text.Len()) {
		t.Errorf("ordinary file: %d bytes, %v", n, err)
	}
	n, err := inflate(make([]byte, 64<<20))
	if !errors.Is(err, bounds.ErrExceeded) || !strings.HasPrefix(err.Error(), "gzip inflated past 200x the compressed size") || n > 32<<20 {
		t.Errorf("64 MiB of zeros: %d bytes, %v", n, err)
	}
}
