package dlformat

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// genHistory writes a vertical gethistory reply: secs securities x fields fields x days dates.
func genHistory(secs, fields, days int) []byte {
	var b bytes.Buffer
	names := make([]string, fields)
	for i := range names {
		names[i] = fmt.Sprintf("FIELD_%02d", i)
	}
	b.WriteString("START-OF-FILE\nRUNDATE=20240716\nPROGRAMNAME=gethistory\nDATERANGE=20230101|20240715\n\nSTART-OF-FIELDS\n")
	b.WriteString(strings.Join(names, "\n"))
	b.WriteString("\nEND-OF-FIELDS\n\nTIMESTARTED=Tue Jul 16 09:00:00 EDT 2024\nSTART-OF-DATA\n")
	for s := 0; s < secs; s++ {
		sec := fmt.Sprintf("SEC%04d US Equity", s)
		for _, f := range names {
			fmt.Fprintf(&b, "START SECURITY|%s|%s|\n", sec, f)
			for d := 0; d < days; d++ {
				fmt.Fprintf(&b, "%s|%02d/%02d/%d|%d.%02d|\n", sec, d%12+1, d%28+1, 2023+d/336, 100+(s*7+d)%900, d%100)
			}
			fmt.Fprintf(&b, "END SECURITY|%s|%s|0|\n", sec, f)
		}
	}
	b.WriteString("END-OF-DATA\nTIMEFINISHED=Tue Jul 16 09:00:05 EDT 2024\nEND-OF-FILE\n")
	return b.Bytes()
}

// genData writes a getdata reply with a mix of numbers, markers, dates and text.
func genData(secs int) []byte {
	var b bytes.Buffer
	cells := []string{"105.230000", "N.A.", " ", "20240715", "US", ".25", "FLD UNKNOWN", "1500000000.00", "Apple Inc", "-38169.00"}
	b.WriteString("START-OF-FILE\nRUNDATE=20240716\nPROGRAMNAME=getdata\nDATEFORMAT=yyyymmdd\nSTART-OF-FIELDS\n")
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "F%03d\n", i)
	}
	b.WriteString("END-OF-FIELDS\nTIMESTARTED=Tue Jul 16 09:00:00 EDT 2024\nSTART-OF-DATA\n")
	for s := 0; s < secs; s++ {
		fmt.Fprintf(&b, "SEC%05d Corp|0|100|", s)
		for i := 0; i < 100; i++ {
			b.WriteString(cells[(i+s)%len(cells)])
			b.WriteByte('|')
		}
		b.WriteByte('\n')
	}
	b.WriteString("END-OF-DATA\nEND-OF-FILE\n")
	return b.Bytes()
}

func benchReader(b *testing.B, in []byte) {
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	var n int64
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(in))
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "obs/s")
}

// BenchmarkReaderGetHistory reads a ~4 MB vertical gethistory file (120,000 observations).
func BenchmarkReaderGetHistory(b *testing.B) { benchReader(b, genHistory(200, 2, 300)) }

// BenchmarkReaderGetData reads a ~5 MB getdata file of 100-field rows (1,000,000 cells... of
// which a tenth are text and a tenth dates, which must allocate their strings).
func BenchmarkReaderGetData(b *testing.B) { benchReader(b, genData(10000)) }
