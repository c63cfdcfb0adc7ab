package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// newParseCmd is `marketpipe parse FILE [--format jsonl|csv]`: read a reply file offline and print
// its observations, exactly as the transformer would produce them, to check a vendor file or the
// parser without NATS or ClickHouse.
func newParseCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "parse FILE",
		Short: "Print the normalized observations of a vendor reply file (plain or gzip; - reads stdin)",
		Long: `Print the normalized observations of a Bloomberg Data License reply file, plain or gzip
(detected by content), one per line: JSON Lines (security, field, date, value, flag, program) or CSV.
FILE "-" reads standard input.

Lines that cannot be turned into observations are reported on standard error as "line N: reason",
followed by their count; they do not make the command fail. The exit status is non-zero only when
the file cannot be read at all (I/O or gzip error, a truncated gzip stream, an empty file, no data
section, a data section cut short).

Observations are printed as they are read, so a file of any size takes little memory. When the
file turns out to be unreadable after some were printed, the command exits non-zero and its last
line says that the output is incomplete and how many observations it holds.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runParse(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], format)
		},
	}
	cmd.Flags().StringVar(&format, "format", "jsonl", "output format: jsonl or csv")
	return cmd
}

// countingReader counts the bytes read from the input, to say where it ended.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// obsWriter prints observations in one output format.
type obsWriter interface {
	write(o *obs.Observation, program string) error
	flush() error
}

func runParse(stdin io.Reader, stdout, stderr io.Writer, name, format string) (err error) {
	bout := bufio.NewWriterSize(stdout, 64<<10)
	var w obsWriter
	switch format {
	case "jsonl":
		w = newJSONLWriter(bout)
	case "csv":
		w = newCSVWriter(bout)
	default:
		return fmt.Errorf("--format %q: want jsonl or csv", format)
	}

	in := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("parse: %w", err)
		}
		defer f.Close()
		in = f
	} else {
		name = "stdin"
	}

	counted := &countingReader{r: in}
	bin := bufio.NewReaderSize(counted, 64<<10)
	magic, _ := bin.Peek(2) // a read error comes back from NewReader
	gzipped := dlformat.IsGzip(magic)
	var printed int64
	// explain makes an error of the reader say what it means for this file and its output.
	explain := func(err error) error {
		err = explainReadError(err, gzipped, counted.n)
		if printed > 0 {
			err = fmt.Errorf("%w; the output is incomplete: it stops after %d observation(s)", err, printed)
		}
		return fmt.Errorf("parse %s: %w", name, err)
	}

	r, err := dlformat.NewReader(bin)
	if err != nil {
		return explain(err)
	}
	// Rejects go to stderr as they come, buffered too: a file can have many.
	berr := bufio.NewWriter(stderr)
	r.OnReject = func(rj obs.Reject) error {
		_, err := fmt.Fprintf(berr, "line %d: %s\n", rj.Line, rj.Reason)
		return err
	}
	defer func() {
		var ferr error
		if err == nil || printed > 0 {
			// Not for a file that failed before its first observation: a CSV header alone
			// would look like a file without data.
			ferr = w.flush()
		}
		if n := r.Stats().Rejects; n > 0 {
			fmt.Fprintf(berr, "%s: %d line(s) rejected\n", name, n)
		}
		if e := berr.Flush(); ferr == nil {
			ferr = e
		}
		if err == nil && ferr != nil {
			err = fmt.Errorf("parse %s: write: %w", name, ferr)
		}
	}()

	for {
		o, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return explain(err)
		}
		if err := w.write(o, r.Program()); err != nil {
			return fmt.Errorf("parse %s: write: %w", name, err)
		}
		printed++
	}
}

// explainReadError names the two cases dlformat's errors leave unclear: a gzip stream that is
// cut short or corrupt (dlformat says "read: unexpected EOF" at the line it was on), and an
// empty file (dlformat says "line 0"). size is the number of bytes the file had. The result
// still wraps err.
func explainReadError(err error, gzipped bool, size int64) error {
	var de *dlformat.Error
	if !errors.As(err, &de) {
		return err
	}
	where := "before its first line"
	if de.Line > 0 {
		where = fmt.Sprintf("inside line %d", de.Line)
	}
	switch {
	case gzipped && errors.Is(err, io.ErrUnexpectedEOF):
		return &explainedError{err: err, msg: fmt.Sprintf(
			"gzip stream truncated: the file ends after %d bytes, %s of its decompressed text", size, where)}
	case gzipped && de.Err != nil:
		return &explainedError{err: err, msg: fmt.Sprintf(
			"gzip stream corrupt: %v (file of %d bytes, %s of its decompressed text)", de.Err, size, where)}
	case de.Line == 0 && de.Err == nil && gzipped:
		return &explainedError{err: err, msg: fmt.Sprintf("empty file: its gzip stream (%d bytes) holds no text", size)}
	case de.Line == 0 && de.Err == nil:
		return &explainedError{err: err, msg: "empty file"}
	}
	return err
}

// explainedError says what err means in other words, and wraps it.
type explainedError struct {
	msg string
	err error
}

func (e *explainedError) Error() string { return e.msg }
func (e *explainedError) Unwrap() error { return e.err }

type jsonlWriter struct {
	bw  *bufio.Writer
	enc *json.Encoder
}

func newJSONLWriter(bw *bufio.Writer) *jsonlWriter {
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false) // print "S&P" as written
	return &jsonlWriter{bw: bw, enc: enc}
}

func (j *jsonlWriter) write(o *obs.Observation, program string) error {
	return j.enc.Encode(o.ToJSON(program, ""))
}

func (j *jsonlWriter) flush() error { return j.bw.Flush() }

type csvWriter struct {
	bw     *bufio.Writer
	cw     *csv.Writer
	header bool
	rec    [6]string
}

func newCSVWriter(bw *bufio.Writer) *csvWriter { return &csvWriter{bw: bw, cw: csv.NewWriter(bw)} }

func (c *csvWriter) write(o *obs.Observation, program string) error {
	if !c.header {
		c.header = true
		if err := c.cw.Write([]string{"security", "field", "date", "value", "flag", "program"}); err != nil {
			return err
		}
	}
	value := ""
	switch o.Kind {
	case obs.Number:
		value = formatNumber(o.Num)
	case obs.String, obs.Bulk:
		value = o.Str
	}
	c.rec = [6]string{o.Security, o.Field, o.Date.String(), value, o.Flag, program}
	return c.cw.Write(c.rec[:])
}

func (c *csvWriter) flush() error {
	if !c.header { // an empty result still says what its columns are
		c.header = true
		if err := c.cw.Write([]string{"security", "field", "date", "value", "flag", "program"}); err != nil {
			return err
		}
	}
	c.cw.Flush()
	if err := c.cw.Error(); err != nil {
		return err
	}
	return c.bw.Flush()
}

// formatNumber writes a number as encoding/json does, so that CSV and JSON Lines agree.
func formatNumber(f float64) string {
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		s := strconv.FormatFloat(f, 'e', -1, 64)
		// clean up e-09 to e-9, as encoding/json does
		if n := len(s); n >= 4 && s[n-4] == 'e' && s[n-3] == '-' && s[n-2] == '0' {
			s = s[:n-2] + s[n-1:]
		}
		return s
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}
